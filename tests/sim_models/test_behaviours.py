"""sim_models.behaviours: one spelling, one schedule per behaviour, one collection loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sim_models.behaviours import (
    BEHAVIOURS,
    REPLAY_GAIN_START,
    REPLAY_NOISE_START,
    Behaviour,
    UnknownBehaviourError,
    canonical_behaviour,
    collect,
    episode_seed,
)
from sim_models.controller import DETUNED_GAIN, LQR_GAIN
from sim_models.envs import make_env


def test_d4rl_hyphen_spelling_is_an_alias_and_unknown_names_list_the_valid_ones() -> None:
    assert canonical_behaviour("medium-replay") == "medium_replay"
    assert canonical_behaviour("medium-expert") == "medium_expert"
    assert all(canonical_behaviour(b) == b for b in BEHAVIOURS)
    with pytest.raises(UnknownBehaviourError) as err:
        canonical_behaviour("perfect")
    assert "'perfect'" in str(err.value) and all(b in str(err.value) for b in BEHAVIOURS)
    with pytest.raises(ValueError, match="noise"):
        Behaviour("medium", "stand_still", noise=-0.1)


def test_schedules_medium_expert_alternates_and_medium_replay_ramps_gain_and_noise() -> None:
    mixed = Behaviour("medium-expert", "stand_still")
    plans = [mixed.plan(ep, 0.5) for ep in range(4)]
    assert [p.controller.detuned for p in plans] == [True, False, True, False]
    assert {p.noise for p in plans} == {0.3}
    replay = Behaviour("medium_replay", "stand_still", noise=0.2)
    first, last = replay.plan(0, 0.0), replay.plan(9, 1.0)
    np.testing.assert_allclose(first.controller.gain, REPLAY_GAIN_START * DETUNED_GAIN)
    np.testing.assert_allclose(last.controller.gain, DETUNED_GAIN)
    assert first.noise == pytest.approx(REPLAY_NOISE_START) and last.noise == pytest.approx(0.2)
    expert = Behaviour("expert", "stand_still").plan(0, 0.0)
    assert expert.noise == 0.1 and np.array_equal(expert.controller.gain, LQR_GAIN)
    assert Behaviour("random", "gym:Pendulum-v1").plan(0, 0.0).controller is None  # no controller needed


def test_episodes_start_from_their_seeds_and_the_budget_cut_is_a_timeout() -> None:
    env = make_env("stand_still", "moderate", seed=5)
    got = collect(env, Behaviour("medium", "stand_still"), 700, seed=5)
    data = got.data
    assert len(data["rewards"]) == 700 == sum(got.episode_lengths) and got.episodes >= 2
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    assert ends[-1] == 699 and data["timeouts"][-1] and not data["terminals"][-1]
    assert not np.any(data["terminals"] & data["timeouts"])
    assert len(ends) == got.episodes and data["terminals"][ends[:-1]].all()  # medium falls on "moderate"
    starts = np.concatenate([[0], ends[:-1] + 1])
    fresh = make_env("stand_still", "moderate")
    for k, row in enumerate(starts):
        np.testing.assert_array_equal(data["observations"][row], fresh.reset(seed=episode_seed(5, k))[0])


def test_max_episode_steps_cuts_episodes_with_timeouts() -> None:
    env = make_env("stand_still", "nominal", seed=0)
    got = collect(env, Behaviour("expert", "stand_still"), 130, seed=0, max_episode_steps=50)
    assert got.episode_lengths == [50, 50, 30]
    assert np.flatnonzero(got.data["timeouts"]).tolist() == [49, 99, 129] and not got.data["terminals"].any()


def test_random_actions_are_stored_in_unit_range_and_scaled_to_the_env_bounds() -> None:
    env = gym.make("Pendulum-v1")  # torque bounds [-2, 2]
    got = collect(env, Behaviour("random", "gym:Pendulum-v1"), 20, seed=3)
    actions = got.data["actions"]
    assert np.all(np.abs(actions) <= 1.0) and np.abs(actions).max() > 0.5
    replay = gym.make("Pendulum-v1")
    replay.reset(seed=episode_seed(3, 0))
    for a, nxt in zip(actions, got.data["next_observations"]):
        np.testing.assert_allclose(replay.step(2.0 * a)[0], nxt, rtol=1e-6)

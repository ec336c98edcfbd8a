"""Task-dependent learner defaults: one step pays at most ~1 where measured to help, user overrides win,
gym keeps the paper's scale."""

from __future__ import annotations

import numpy as np
import pytest

from learner import algorithms
from learner.task_defaults import TASK_REWARD_SCALE, algorithm_config, task_algo_defaults
from sim_models.tasks import TASKS


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_robot_task_has_a_scale_that_makes_its_best_step_pay_about_one(task):
    spec = TASKS[task]
    zero_obs, zero_act = np.zeros(spec.obs_dim, np.float32), np.zeros(spec.act_dim, np.float32)
    best_step = spec.reward(zero_obs, zero_act, zero_obs)  # at rest, on target: the constant term
    assert TASK_REWARD_SCALE[task] * best_step == pytest.approx(1.0, abs=0.01)


def test_user_overrides_beat_task_defaults_which_beat_dataclass_defaults():
    cfg = algorithm_config("cql", "stand_still", hidden="32-32", seed=3)
    assert cfg["reward_scale"] == pytest.approx(1 / 30) and cfg["hidden"] == "32-32" and cfg["seed"] == 3
    cfg = algorithm_config("cql", "stand_still", hidden="32-32", seed=3, overrides={"reward_scale": 1.0})
    assert cfg["reward_scale"] == 1.0
    algo = algorithms.make("cql", 4, 1, algorithm_config("cql", "move_straight", hidden="8-8", seed=0))
    assert algo.cfg.reward_scale == pytest.approx(1 / 15)


def test_algorithms_the_scale_did_not_help_keep_the_paper_scale():
    for name in ("h2o", "darc", "darc_plus"):
        assert "reward_scale" not in algorithm_config(name, "stand_still", hidden="8-8", seed=0)
    assert algorithms.make("h2o", 4, 1, algorithm_config("h2o", "stand_still", hidden="8-8", seed=0)).cfg.reward_scale == 1.0


def test_h2o_on_the_robot_tasks_has_no_penalty_clip_and_gym_keeps_the_references():
    import math

    cfg = algorithm_config("h2o", "move_straight:action_history=2", hidden="8-8", seed=0)
    assert math.isinf(cfg["penalty_clip"])
    assert algorithms.make("h2o", 4, 1, algorithm_config("h2o", "gym:HalfCheetah-v5", hidden="8-8",
                                                         seed=0)).cfg.penalty_clip == 1000.0
    assert "penalty_clip" not in algorithm_config("darc", "stand_still", hidden="8-8", seed=0)
    assert algorithm_config("h2o", "stand_still", hidden="8-8", seed=0,
                            overrides={"penalty_clip": 1000.0})["penalty_clip"] == 1000.0


def test_sac_gets_the_scale_it_needs_with_the_normalised_observation():
    assert algorithm_config("sac", "stand_still:action_history=2", hidden="8-8", seed=0)["reward_scale"] == pytest.approx(1 / 30)
    assert "reward_scale" not in algorithm_config("sac", "gym:HalfCheetah-v5", hidden="8-8", seed=0)


def test_gym_tasks_keep_the_paper_defaults():
    assert task_algo_defaults("gym:HalfCheetah-v5", "h2o") == {}
    cfg = algorithm_config("h2o", "gym:HalfCheetah-v5", hidden="256-256", seed=0, disc_hidden="256-256")
    assert "reward_scale" not in cfg and cfg["disc_hidden"] == "256-256"


def test_disc_hidden_only_goes_to_algorithms_with_classifiers():
    assert "disc_hidden" not in algorithm_config("sac", "stand_still", hidden="8-8", seed=0, disc_hidden="8-8")
    assert algorithm_config("darc", "stand_still", hidden="8-8", seed=0, disc_hidden="16-16")["disc_hidden"] == "16-16"


# ---- observation normalisation -------------------------------------------------------------------
def test_obs_normalisation_scales_each_field_and_its_history_and_keeps_actions_at_one():
    from learner.task_defaults import FIELD_SCALES, obs_normalisation

    mean = np.array([0.1, -0.05, -0.16, 0.0, 0.1, -0.05, -0.15, 0.01, 0.3, -0.2], np.float32)
    centre, scale = obs_normalisation("stand_still:obs_history=1,action_history=2", mean)
    np.testing.assert_array_equal(centre, mean)
    paper = [FIELD_SCALES[f] for f in ("x", "v", "pitch", "pitch_rate")]
    np.testing.assert_array_equal(scale, np.array(paper + paper + [1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="entries"):
        obs_normalisation("stand_still:action_history=2", mean)


def test_obs_normalisation_is_the_identity_where_no_scale_was_measured():
    from learner.task_defaults import obs_normalisation

    assert obs_normalisation("gym:Pendulum-v1", np.zeros(3)) is None
    assert obs_normalisation("turn", np.zeros(5)) is None
    assert obs_normalisation("locomotion", np.zeros(19)) is None
    assert obs_normalisation("move_straight", np.zeros(4)) is not None


@pytest.mark.parametrize("name", ["sac", "cql", "h2o", "h2o_plus", "bc"])
def test_a_normalised_learner_on_raw_obs_is_an_identity_learner_on_normalised_obs(name):
    """set_obs_normalisation changes what every network reads, nothing else: policy, critics and
    their targets of a normalised learner on obs equal an untouched copy's on (obs - m) / s."""
    import torch

    obs_dim, act_dim = 6, 1
    plain = algorithms.make(name, obs_dim, act_dim, {"hidden": "32-32", "seed": 3})
    normed = algorithms.make(name, obs_dim, act_dim, {"hidden": "32-32", "seed": 3})
    m = np.array([0.1, 0.0, -0.16, 0.02, 0.0, 0.0], np.float32)
    s = np.array([0.5, 0.5, 0.05, 0.5, 1.0, 1.0], np.float32)
    normed.set_obs_normalisation(m, s)
    assert normed.obs_normalised and not plain.obs_normalised
    obs = np.random.default_rng(0).normal(m, 3 * s, (64, obs_dim)).astype(np.float32)
    np.testing.assert_allclose(normed.act(obs, deterministic=True), plain.act((obs - m) / s, deterministic=True),
                               rtol=1e-5, atol=1e-6)
    if hasattr(plain, "critic"):
        x, xn = torch.as_tensor(obs)[None], torch.as_tensor((obs - m) / s)[None]
        a = torch.zeros(1, 64, act_dim)
        for net in ("critic", "critic_target"):
            torch.testing.assert_close(getattr(normed, net)(x, a), getattr(plain, net)(xn, a), rtol=1e-5, atol=1e-5)
    # the exported policy carries it (the robot feeds raw observations)
    exported = normed.policy_for_export()
    torch.testing.assert_close(exported(torch.as_tensor(obs), deterministic=True)[0],
                               torch.as_tensor(normed.act(obs, deterministic=True)), rtol=1e-5, atol=1e-6)
    # checkpoints keep it, and a checkpoint from before the critics had it still loads (identity)
    again = algorithms.make(name, obs_dim, act_dim, {"hidden": "32-32", "seed": 3})
    again.load_state_dict(normed.state_dict())
    assert again.obs_normalised
    np.testing.assert_array_equal(again.act(obs, deterministic=True), normed.act(obs, deterministic=True))
    if hasattr(plain, "critic"):
        old = plain.state_dict()
        for net in ("critic", "critic_target"):
            old[net] = {k: v for k, v in old[net].items() if k not in ("obs_mean", "obs_std")}
        del old["obs_normalised"]
        normed.load_state_dict(old)
        assert not normed.obs_normalised
        torch.testing.assert_close(normed.critic(x, a), plain.critic(x, a))

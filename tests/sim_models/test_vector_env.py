"""The batched env gives, step for step and bit for bit, what N single envs give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim_models.envs import InvalidActionError, WheelLeggedEnv
from sim_models.tasks import TASKS
from sim_models.vector_env import WheelLeggedVectorEnv

N = 3


def _actions(rng: np.random.Generator, act_dim: int, t: int) -> np.ndarray:
    """Small actions for most robots; robot 1 pushes hard now and then (falls, clipping)."""
    a = rng.uniform(-0.2, 0.2, (N, act_dim)).astype(np.float32)
    if t % 40 > 25:
        a[1] = rng.uniform(-1.5, 1.5, act_dim)
    if t % 7 == 3:  # signed zeros and the clip bounds, where float rounding could tell paths apart
        a[2] = rng.choice(np.array([-0.0, 0.0, -1.0, 1.0], np.float32), act_dim)
    return a


@pytest.mark.parametrize("profile", ["nominal", "severe"])  # ctrl written directly / per-robot steps
@pytest.mark.parametrize("task", list(TASKS))
def test_batch_matches_single_envs_step_for_step(task, profile):
    venv = WheelLeggedVectorEnv(task, N, profile)
    singles = [WheelLeggedEnv(task, profile) for _ in range(N)]
    # Short episodes, so truncation and the autoreset happen inside the test.
    short = dataclasses.replace(TASKS[task], max_episode_steps=50)
    venv.task = short
    for e in singles:
        e.task = short
    obs_v, info_v = venv.reset(seed=10)
    for i, e in enumerate(singles):
        o, info = e.reset(seed=10 + i)
        assert obs_v[i].tobytes() == o.tobytes()
        assert np.array_equal(info_v["command"][i], info["command"])
    rng = np.random.default_rng(0)
    dones = 0
    for t in range(120):
        actions = _actions(rng, TASKS[task].act_dim, t)
        obs_v, rew_v, term_v, trunc_v, infos = venv.step(actions)
        assert obs_v.dtype == np.float32 and rew_v.dtype == np.float64
        for i, e in enumerate(singles):
            o, r, term, trunc, info = e.step(actions[i])
            assert float(rew_v[i]).hex() == r.hex(), (t, i)
            assert (bool(term_v[i]), bool(trunc_v[i])) == (term, trunc), (t, i)
            assert int(infos["faults"][i]) == info["faults"], (t, i)
            if term or trunc:
                dones += 1
                assert infos["_final_obs"][i] and infos["final_obs"][i].tobytes() == o.tobytes()
                o, _ = e.reset()
            elif "_final_obs" in infos:
                assert not infos["_final_obs"][i]
            assert obs_v[i].tobytes() == o.tobytes(), (t, i)
    assert dones >= N  # every robot's episode ended at least once (truncation at 50 steps)


def test_vector_env_spaces_and_invalid_actions():
    venv = WheelLeggedVectorEnv("turn", 4)
    assert venv.observation_space.shape == (4, 5) and venv.action_space.shape == (4, 2)
    assert venv.single_action_space.shape == (2,)
    venv.reset(seed=0)
    with pytest.raises(InvalidActionError):
        venv.step(np.zeros((3, 2)))
    bad = np.zeros((4, 2), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(InvalidActionError):
        venv.step(bad)
    assert venv.invalid_actions == 2
    obs, *_ = venv.step(np.zeros((4, 2)))  # still usable
    assert obs.shape == (4, 5)
    venv.close()


def test_seed_list_and_unknown_task():
    venv = WheelLeggedVectorEnv("stand_still", 2)
    a, _ = venv.reset(seed=[5, 5])
    assert a[0].tobytes() == a[1].tobytes()
    b, _ = venv.reset(seed=5)  # robots get 5 and 6
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() != b[1].tobytes()
    with pytest.raises(ValueError):
        WheelLeggedVectorEnv("stand_still", 0)


def test_a_copied_batch_steps_its_own_robots_identically():
    import pickle

    venv = WheelLeggedVectorEnv("turn", 2)
    venv.reset(seed=0)
    actions = np.full((2, 2), 0.1, np.float32)
    venv.step(actions)
    twin = pickle.loads(pickle.dumps(venv))
    for _ in range(5):
        a, b = venv.step(actions), twin.step(actions)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert twin.envs[0].sim.data.time == venv.envs[0].sim.data.time

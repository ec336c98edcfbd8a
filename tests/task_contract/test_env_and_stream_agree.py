"""The simulator's env and the robot's episode rules (TaskStream) give the same numbers, bit for
bit, on the same sensor stream: observation with history, reward, termination, truncation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim_models.envs import WheelLeggedEnv
from sim_models.vector_env import WheelLeggedVectorEnv
from task_contract.controller import BalanceController
from task_contract.episodes import TaskStream
from task_contract.history import ObsLayout, TaskOptionsError
from task_contract.state import state_values

TASK_IDS = ["stand_still", "move_straight:action_history=2", "turn:action_history=1,obs_history=2",
            "locomotion:action_history=2,obs_history=1"]


@pytest.mark.parametrize("profile", ["nominal", "moderate"])
@pytest.mark.parametrize("task_id", TASK_IDS)
def test_env_and_robot_stream_build_the_same_episode(task_id, profile):
    env = WheelLeggedEnv(task_id, profile)
    assert env.observation_space.shape == (env.layout.dim,) and env.task_id == task_id
    env.task = dataclasses.replace(env.task, max_episode_steps=150)  # episode ends inside the test
    layout = ObsLayout(env.task, env.options)
    ctl = BalanceController(task_id, detuned=True)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=4)
    stream = TaskStream(layout, info["command"])
    assert stream.start(state_values(env.sim.state())).tobytes() == obs.tobytes()
    episodes = 0
    for _ in range(400):
        action = (ctl.act(obs) + rng.normal(0, 0.4, env.task.act_dim)).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        res = stream.step(action, state_values(env.sim.state()))
        assert res.obs.tobytes() == obs.tobytes()
        assert res.reward.hex() == reward.hex() and res.terminated == terminated
        assert res.truncated == (truncated and not terminated) and res.flags == 0
        if terminated or truncated:
            episodes += 1
            obs, info = env.reset()
            ctl.reset()
            stream = TaskStream(layout, info["command"])
            assert stream.start(state_values(env.sim.state())).tobytes() == obs.tobytes()
    assert episodes >= 2


def test_history_layout_and_reset_rule():
    env = WheelLeggedEnv("stand_still", options="action_history=2,obs_history=1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10,) and np.array_equal(obs[:4], obs[4:8]) and not obs[8:].any()
    assert obs[0] == 0.0  # x counts from the episode start
    nxt, *_ = env.step(np.array([0.5], np.float32))
    np.testing.assert_array_equal(nxt[4:8], obs[:4])  # the previous raw observation
    np.testing.assert_array_equal(nxt[8:], [0.5, 0.0])  # newest action first
    nxt2, *_ = env.step(np.array([2.0], np.float32))
    np.testing.assert_array_equal(nxt2[8:], [1.0, 0.5])  # applied (clipped) actions
    assert ObsLayout.of("stand_still:action_history=2,obs_history=1").names()[4:] == [
        "x@-1", "v@-1", "pitch@-1", "pitch_rate@-1", "action0@-1", "action0@-2"]
    with pytest.raises(TaskOptionsError):
        ObsLayout.of("stand_still:action_histroy=2")


def test_batched_env_with_history_matches_single_envs():
    n, options = 3, "action_history=2,obs_history=1"
    venv = WheelLeggedVectorEnv("turn", n, "moderate", options=options)
    singles = [WheelLeggedEnv("turn", "moderate", options=options) for _ in range(n)]
    obs_v, _ = venv.reset(seed=1)
    for i, e in enumerate(singles):
        assert obs_v[i].tobytes() == e.reset(seed=1 + i)[0].tobytes()
    rng = np.random.default_rng(2)
    for t in range(150):
        actions = rng.uniform(-0.6, 0.6, (n, 2)).astype(np.float32)
        obs_v, rew_v, term_v, trunc_v, infos = venv.step(actions)
        for i, e in enumerate(singles):
            o, r, term, trunc, _ = e.step(actions[i])
            assert rew_v[i].hex() == r.hex() and bool(term_v[i]) == term
            if term or trunc:
                assert infos["final_obs"][i].tobytes() == o.tobytes()
                o, _ = e.reset()
            assert obs_v[i].tobytes() == o.tobytes(), (t, i)

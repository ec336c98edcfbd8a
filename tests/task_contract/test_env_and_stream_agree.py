"""The simulator's env and the robot's episode rules (TaskStream) give the same numbers, bit for
bit, on the same sensor stream: observation with history, reward, termination, truncation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim_models.envs import WheelLeggedEnv
from sim_models.vector_env import WheelLeggedVectorEnv
from task_contract.controller import BalanceController
from task_contract.episodes import RowFlag, TaskStream
from task_contract.history import ObsLayout, TaskOptionsError
from task_contract.state import state_values

TASK_IDS = ["stand_still", "move_straight:action_history=2", "turn:action_history=1,obs_history=2",
            "locomotion:action_history=2,obs_history=1", "stand_still:action_history=2,max_pitch=0.1"]


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


def test_max_pitch_tightens_the_termination_everywhere():
    layout = ObsLayout.of("stand_still:max_pitch=0.25,action_history=2")
    assert layout.id == "stand_still:action_history=2,max_pitch=0.25"  # canonical order
    assert layout.dim == 6 and layout.task.max_pitch == 0.25
    assert layout.task.terminated_values([0.0, 0.0, 0.26, 0.0]) and not layout.task.terminated_values([0.0, 0.0, 0.24, 0.0])
    assert not ObsLayout.of("stand_still").task.terminated_values([0.0, 0.0, 0.26, 0.0])  # pi/6 by default
    assert ObsLayout.of("turn:max_pitch=0.2").task.terminated_values([0.0, -0.21, 0.0, 0.0, 0.0])  # pitch at o[1]
    for bad in ("max_pitch=0.6", "max_pitch=-0.1", "max_pitch=abc"):
        with pytest.raises(TaskOptionsError):
            ObsLayout.of(f"stand_still:{bad}")
    env = WheelLeggedEnv("stand_still:max_pitch=0.05", "nominal")
    env.reset(seed=0)
    for t in range(200):  # full torque one way: past 0.05 rad quickly, far from pi/6
        obs, _, terminated, _, _ = env.step(np.array([1.0], np.float32))
        if terminated:
            break
    assert terminated and 0.05 < abs(obs[2]) < 0.3, (t, obs)


def test_stream_starts_a_new_episode_when_the_same_driver_brings_the_robot_back():
    """A controller swinging past a tight max_pitch and back: the episode ends at the termination,
    the rows outside the bounds are flagged, and the next episode starts where it is back inside."""
    env = WheelLeggedEnv("stand_still:action_history=2,max_pitch=0.1", "moderate")
    layout = ObsLayout(env.task, env.options)
    env.task = dataclasses.replace(env.task, terminated_values=lambda o: False)  # the env keeps going
    ctl = BalanceController("stand_still")
    obs, _ = env.reset(seed=1)
    stream = TaskStream(layout)
    stream.start(state_values(env.sim.state()))
    inside, ended, restarted, outside = True, 0, 0, 0
    for _ in range(800):
        action = np.asarray(ctl.act(obs), np.float32).reshape(1)
        obs, *_ = env.step(action)
        res = stream.step(action, state_values(env.sim.state()))
        pitch = abs(float(obs[2]))
        if inside:
            assert res.flags == 0 and res.terminated == (pitch > 0.1)
            ended += res.terminated
            inside = not res.terminated
        elif pitch <= 0.1:  # back inside: this row is still outside; a new episode starts here
            assert res.flags & RowFlag.PAST_TERMINATION and not res.terminated
            assert res.obs[0] == 0.0 and np.array_equal(res.obs[4:], [np.clip(action[0], -1, 1), obs[5]])
            restarted += 1
            inside = True
        else:
            assert res.flags & RowFlag.PAST_TERMINATION  # its own `terminated` is the raw rule's
            outside += 1
    assert ended >= 2 and restarted >= 1 and outside > 50  # the controller swings past 0.1 rad on moderate

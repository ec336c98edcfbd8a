"""The env's fast step path gives bit-identical outputs to the reference path (TaskSpec functions
on the simulator's RobotState, what the robot computes), on every task and profile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocol.robot_types import MotorCommand
from sim_models.controller import BalanceController
from sim_models.envs import InvalidActionError, WheelLeggedEnv
from sim_models.tasks import TASKS

PROFILES = ["nominal", "moderate", "severe"]  # moderate: latency + noise; severe: + bias, pushes


def _same(a, b) -> bool:
    """Exact equality, bit for bit, of nested env outputs (arrays by dtype, shape and bytes)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))


def _actions(task: str, obs: np.ndarray, ctl: BalanceController, rng: np.random.Generator):
    """Controller actions with noise, out-of-range values (clipping), signed zeros, plain lists."""
    a = ctl.act(obs)
    r = rng.random()
    if r < 0.1:
        return rng.uniform(-2.0, 2.0, a.shape)  # float64, beyond [-1, 1]
    if r < 0.15:  # signed zeros and the clip bounds, where float rounding could tell paths apart
        return rng.choice(np.array([-0.0, 0.0, -1.0, 1.0], np.float32), a.shape)
    if r < 0.2:
        return a.astype(np.float64).tolist()
    return a + rng.normal(0.0, 0.3, a.shape).astype(np.float32)


def _assert_states_equal(a: WheelLeggedEnv, b: WheelLeggedEnv) -> None:
    sa, sb = a.sim.state(), b.sim.state()
    for f in dataclasses.fields(sa):
        assert _same(getattr(sa, f.name), getattr(sb, f.name)), f.name


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("task", list(TASKS))
def test_fast_path_is_bit_identical_to_the_reference_path(task, profile):
    fast, ref = WheelLeggedEnv(task, profile), WheelLeggedEnv(task, profile)
    ref.fast = False
    rng = np.random.default_rng(3)
    ctl = BalanceController(task, detuned=True)
    out_f, out_r = fast.reset(seed=5), ref.reset(seed=5)
    assert _same(out_f, out_r)
    obs, episodes = out_f[0], 0
    for t in range(250):
        action = _actions(task, obs, ctl, rng)
        out_f, out_r = fast.step(action), ref.step(action)
        assert _same(out_f, out_r), f"step {t}: {out_f} != {out_r}"
        obs = out_f[0]
        if out_f[2] or out_f[3] or t % 90 == 89:
            _assert_states_equal(fast, ref)
            episodes += 1
            options = {"pitch_rad": 0.03} if episodes % 2 else None
            out_f, out_r = fast.reset(options=options), ref.reset(options=options)
            assert _same(out_f, out_r)
            obs = out_f[0]
            ctl.reset()
    assert episodes >= 2
    _assert_states_equal(fast, ref)
    assert fast.sim.bad_commands == ref.sim.bad_commands == 0


@pytest.mark.parametrize("profile", ["nominal", "moderate"])  # ctrl written directly / via _advance
@pytest.mark.parametrize("task", ["stand_still", "turn", "locomotion"])
def test_robot_io_contract_path_agrees_after_fast_steps(task, profile):
    """Fast steps leave the simulator as the contract path does: a later sim.step (the virtual
    firmware's call), including a rejected non-finite command, gives the same RobotState."""
    fast, ref = WheelLeggedEnv(task, profile), WheelLeggedEnv(task, profile)
    ref.fast = False
    fast.reset(seed=1), ref.reset(seed=1)
    action = np.full(TASKS[task].act_dim, 0.3, np.float32)
    for _ in range(20):
        fast.step(action), ref.step(action)
    bad = MotorCommand(tau_ff=np.full(6, np.nan, np.float32))
    sa, sb = fast.sim.step(bad), ref.sim.step(bad)  # re-applies the last env command
    assert sa.joint_vel.tobytes() == sb.joint_vel.tobytes() and sa.faults == sb.faults
    good = MotorCommand(q_des=np.full(6, 0.1, np.float32), kp=np.full(6, 20.0, np.float32),
                        kd=np.ones(6, np.float32), tau_ff=np.full(6, 0.2, np.float32))
    for cmd in (bad, good, bad, MotorCommand.torque(np.ones(6))):
        sa, sb = fast.sim.step(cmd), ref.sim.step(cmd)
        for f in dataclasses.fields(sa):
            assert _same(getattr(sa, f.name), getattr(sb, f.name)), f.name
    assert fast.sim.bad_commands == ref.sim.bad_commands == 3
    # And the env keeps stepping identically after the contract calls changed the gains.
    for _ in range(5):
        assert _same(fast.step(action), ref.step(action))


@pytest.mark.parametrize("fast", [True, False])
def test_a_custom_task_function_is_what_both_paths_call(fast):
    """The fast path binds the task's own functions (no copy of their arithmetic to go stale)."""
    env = WheelLeggedEnv("stand_still")
    env.fast = fast
    calls = []

    def reward(action, next_obs):
        calls.append(1)
        return 1.0

    env.task = dataclasses.replace(env.task, reward_values=reward)
    env.reset(seed=0)
    assert env.step(np.zeros(1))[1] == 1.0 and calls == [1]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the 3e38 sum, on purpose
@pytest.mark.parametrize("bad", [np.array([np.nan], np.float32), np.array([np.inf]), np.zeros(2),
                                 np.array([3e38, 3e38, 3e38, 3e38, 3e38, 3e38], np.float32)])
def test_fast_path_rejects_invalid_actions_like_the_reference(bad):
    task = "locomotion" if bad.shape == (6,) else "stand_still"
    env = WheelLeggedEnv(task)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(bad)  # the 3e38 action is finite but its float32 sum is not: rejected as before
    assert env.invalid_actions == 1


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_env_steps_its_own_simulator_identically(how):
    """The fast path keeps views of MjData arrays: a copy must bind its own data's."""
    import copy
    import pickle

    env = WheelLeggedEnv("locomotion")
    env.reset(seed=0)
    action = np.full(6, 0.1, np.float32)
    for _ in range(3):
        env.step(action)
    twin = copy.deepcopy(env) if how == "deepcopy" else pickle.loads(pickle.dumps(env))
    for _ in range(5):
        assert _same(env.step(2 * action), twin.step(2 * action))
    assert twin.sim.data is not env.sim.data and twin.sim.data.time == env.sim.data.time


@pytest.mark.parametrize("task", ["turn", "locomotion"])
def test_command_draw_matches_the_array_draw(task):
    """sample_command draws component by component; the values are those of one array draw."""
    spec = TASKS[task]
    for seed in range(20):
        a = spec.sample_command(np.random.default_rng(seed))
        b = np.random.default_rng(seed).uniform(spec.command_low, spec.command_high).astype(np.float32)
        assert a.dtype == np.float32 and a.tobytes() == b.tobytes()

"""Tasks: paper-exact rewards on hand-computed cases, observations from RobotState, numpy-only."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from protocol.robot_types import RobotState
from sim_models import model as sim_model
from sim_models.robot import WheelLeggedSim
from sim_models.tasks import TASKS, UnknownTaskError, base_height, get_task


def _state(pitch=0.0, pitch_rate=0.0, wheel=(0.0, 0.0), wheel_vel=(0.0, 0.0), yaw_rate=0.0):
    s = RobotState()
    s.imu_quat = np.array([math.cos(pitch / 2), 0, math.sin(pitch / 2), 0], np.float32)
    s.imu_gyro = np.array([0.0, pitch_rate, yaw_rate], np.float32)
    s.joint_pos[[2, 5]] = wheel
    s.joint_vel[[2, 5]] = wheel_vel
    return s


def test_paper_observation_from_robot_state():
    obs = TASKS["stand_still"].observe(_state(pitch=0.1, pitch_rate=0.5, wheel=(2.0, 4.0),
                                              wheel_vel=(1.0, 3.0)))
    r = 0.065
    np.testing.assert_allclose(obs, [r * (3.0 + 0.1), r * (2.0 + 0.5), 0.1, 0.5], rtol=1e-5)
    assert obs.dtype == np.float32 and obs.shape == (4,)


def test_stand_still_reward_is_the_paper_formula():
    spec = TASKS["stand_still"]
    s_next = np.array([0.1, -0.2, 0.05, 0.3])
    # tau = 0.5 * 3 = 1.5 N·m: 30 - 2.25 - (0.01 + 0.04 + 0.0025 + 0.09) = 27.6075
    assert spec.reward(np.zeros(4), np.array([0.5]), s_next) == pytest.approx(27.6075)
    # actions are clipped to [-1, 1] first: tau = 3
    assert spec.reward(np.zeros(4), np.array([2.0]), np.zeros(4)) == pytest.approx(21.0)


def test_move_straight_reward_is_the_paper_formula():
    spec = TASKS["move_straight"]
    # v = 0.5: 15 - ((0.5 - 0.2)^2 + (-0.2 * 3)^2) = 15 - (0.09 + 0.36) = 14.55
    got = spec.reward(np.zeros(4), np.array([-0.2]), np.array([9.0, 0.5, 0.1, 0.1]))
    assert got == pytest.approx(14.55)


def test_paper_action_and_termination():
    spec = TASKS["move_straight"]
    cmd = spec.action_to_command(np.array([0.5]))
    np.testing.assert_allclose(cmd.tau_ff, [0, 0, 1.5, 0, 0, 1.5])
    assert not cmd.kp.any() and not cmd.kd.any()
    assert (spec.obs_dim, spec.act_dim, spec.control_hz, spec.max_episode_steps) == (4, 1, 200.0, 1000)
    assert spec.variant == "legs_locked"
    assert not spec.terminated(np.array([0, 0, math.pi / 6 - 1e-3, 0]))
    assert spec.terminated(np.array([0, 0, -(math.pi / 6 + 1e-3), 0]))
    assert spec.terminated(np.array([0, 0, np.nan, 0]))


def test_turn_task_uses_two_torques_and_a_yaw_command():
    spec = TASKS["turn"]
    obs = spec.observe(_state(yaw_rate=0.4), np.array([0.5]))
    assert obs[3] == pytest.approx(0.4) and obs[4] == pytest.approx(0.5)
    cmd = spec.action_to_command(np.array([0.2, -0.4]))
    np.testing.assert_allclose(cmd.tau_ff[[2, 5]], [0.6, -1.2], rtol=1e-6)
    # 15 - (0 + (0.4 - 0.5)^2 + (0.36 + 1.44) / 2)
    assert spec.reward(obs, np.array([0.2, -0.4]), obs) == pytest.approx(15 - 0.01 - 0.9, rel=1e-5)
    low, high = np.array(spec.command_low), np.array(spec.command_high)
    c = spec.sample_command(np.random.default_rng(0))
    assert np.all(low <= c) and np.all(c <= high)


def test_locomotion_commands_legs_by_position_and_wheels_by_torque():
    spec = TASKS["locomotion"]
    cmd = spec.action_to_command(np.array([1, -1, 0.5, 0, 0, -0.5]))
    np.testing.assert_allclose(cmd.q_des[[0, 1]], [0.5, -0.5])
    assert cmd.kp[0] > 0 and cmd.kd[0] > 0 and cmd.kp[2] == 0
    np.testing.assert_allclose(cmd.tau_ff[[2, 5]], [2.5, -2.5])
    obs = spec.observe(RobotState(), np.array([0.3, 0.28]))
    assert obs.shape == (spec.obs_dim,) and obs[-2:] == pytest.approx([0.3, 0.28])
    assert spec.variant == "full" and spec.act_dim == 6


def test_geometry_constants_match_the_mjcf():
    from sim_models import tasks

    assert tasks.WHEEL_RADIUS_M == sim_model.WHEEL_RADIUS_M
    sim = WheelLeggedSim("full", seed=0)
    for pitch in (0.0, 0.15):
        state = sim.reset(pitch_rad=pitch)
        assert base_height(state) == pytest.approx(sim.data.qpos[2], abs=5e-4)


def test_unknown_task_is_a_typed_error():
    with pytest.raises(UnknownTaskError, match="unknown task 'backflip'"):
        get_task("backflip")


def test_tasks_and_controller_import_without_mujoco():
    code = (
        "import sys\n"
        "sys.modules['mujoco'] = None\n"
        "sys.modules['gymnasium'] = None\n"
        "sys.modules['torch'] = None\n"
        "import sim_models.tasks, sim_models.controller\n"
        "import numpy as np\n"
        "c = sim_models.controller.BalanceController('stand_still')\n"
        "print(c.act(np.zeros(4, np.float32)).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1,)"


@pytest.mark.parametrize("name", ["turn", "locomotion"])
def test_observation_without_a_command_uses_the_default_command(name):
    spec = TASKS[name]
    state = RobotState()
    np.testing.assert_array_equal(spec.observe(state), spec.observe(state, np.array(spec.default_command)))


@pytest.mark.parametrize("name", ["stand_still", "turn", "locomotion"])
def test_non_finite_actions_stay_non_finite_for_the_robot_to_reject(name):
    spec = TASKS[name]
    cmd = spec.action_to_command(np.full(spec.act_dim, np.nan))
    assert not cmd.is_finite()


def test_importing_the_package_registers_ids_without_importing_mujoco():
    code = (
        "import sys\n"
        "import sim_models, gymnasium\n"
        "assert 'mujoco' not in sys.modules, 'import sim_models pulled in mujoco'\n"
        "print(sorted(k for k in gymnasium.registry if k.startswith('h2o/')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "h2o/StandStill-v0" in out.stdout and "h2o/HalfCheetah-jointnoise-v0" in out.stdout

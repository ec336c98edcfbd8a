"""WheelLeggedSim behind the robot I/O contract: impedance law, clipping, latency, bad commands."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.robot_types import FaultFlags, MotorCommand, MotorMode, RobotState
from sim_models.profiles import DynamicsProfile
from sim_models.robot import CommandShapeError, WheelLeggedSim


def _torque(tau: float) -> MotorCommand:
    return MotorCommand.torque([0, 0, tau, 0, 0, tau])


def test_reset_returns_home_state_with_the_requested_pitch():
    sim = WheelLeggedSim("legs_locked", seed=0)
    state = sim.reset(pitch_rad=0.1)
    assert isinstance(state, RobotState) and state.mode == MotorMode.ENABLED
    w, x, y, z = state.imu_quat
    assert 2 * np.arcsin(y) == pytest.approx(0.1, abs=1e-6)
    # Tilted about the axle: the wheels keep their world angle, so odometry starts at zero.
    assert state.joint_pos[2] == pytest.approx(-0.1, abs=1e-6)
    assert sim.control_dt == 0.005 and sim.n_substeps == 5
    assert state.t_us == 0
    assert sim.step(_torque(0.0)).t_us == 5000


def test_state_is_a_copy_of_the_last_reading():
    sim = WheelLeggedSim("legs_locked", profile=DynamicsProfile(sensor_noise_std=0.01), seed=1)
    reading = sim.step(_torque(0.1))
    again = sim.state()
    np.testing.assert_array_equal(reading.joint_vel, again.joint_vel)  # same noise sample
    again.joint_vel[:] = 99.0
    assert sim.state().joint_vel[2] != 99.0


def test_impedance_law_holds_a_leg_and_reports_applied_torque():
    held = WheelLeggedSim("full", seed=0)
    held.reset(pitch_rad=0.0)
    cmd = MotorCommand()
    cmd.q_des[:] = 0.3
    cmd.kp[[0, 1, 3, 4]] = 60.0
    cmd.kd[[0, 1, 3, 4]] = 2.0
    for _ in range(40):
        state = held.step(cmd)
    # Tracking toward 0.3 rad against gravity; applied torque = kp*(q_des-q) + kd*(0-qd).
    assert state.joint_pos[0] > 0.15
    expected = 60.0 * (0.3 - held.data.qpos[7]) - 2.0 * held.data.qvel[6]
    assert state.joint_torque[0] == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_torque_is_clipped_to_the_motor_limit_and_flagged():
    sim = WheelLeggedSim("legs_locked", seed=0)
    state = sim.step(_torque(50.0))
    assert state.joint_torque[2] == pytest.approx(5.0)
    assert state.faults & FaultFlags.TORQUE_LIMITED
    weak = WheelLeggedSim("legs_locked", DynamicsProfile(motor_strength_scale=0.5), seed=0)
    assert weak.step(_torque(50.0)).joint_torque[2] == pytest.approx(2.5)
    assert not sim.step(_torque(1.0)).faults & FaultFlags.TORQUE_LIMITED


def test_non_finite_command_is_rejected_counted_and_previous_kept():
    sim = WheelLeggedSim("legs_locked", seed=0)
    sim.step(_torque(1.0))
    bad = _torque(float("nan"))
    state = sim.step(bad)
    assert sim.bad_commands == 1
    assert state.faults & FaultFlags.BAD_COMMAND
    assert state.joint_torque[2] == pytest.approx(1.0)  # the previous valid command still applies
    assert np.all(np.isfinite(sim.data.qpos))
    assert not sim.step(_torque(0.5)).faults & FaultFlags.BAD_COMMAND


def test_wrong_shape_command_raises_typed_error():
    sim = WheelLeggedSim("legs_locked", seed=0)
    with pytest.raises(CommandShapeError, match=r"tau_ff has shape \(3,\)"):
        sim.step(MotorCommand(tau_ff=np.zeros(3, np.float32)))


@pytest.mark.parametrize("latency", [1, 3])
def test_latency_delays_the_action_by_the_configured_steps(latency):
    def wheel_torques(profile):
        sim = WheelLeggedSim("legs_locked", profile, seed=0)
        sim.reset(pitch_rad=0.0)
        return [sim.step(_torque(1.0 if k == 2 else 0.0)).joint_torque[2] for k in range(8)]

    prompt = wheel_torques(DynamicsProfile())
    late = wheel_torques(DynamicsProfile(latency_steps=latency))
    assert np.flatnonzero(np.abs(prompt) > 0.5).tolist() == [2]
    assert np.flatnonzero(np.abs(late) > 0.5).tolist() == [2 + latency]


def test_same_seed_gives_identical_trajectories_on_a_noisy_profile():
    def run(seed):
        sim = WheelLeggedSim("legs_locked", "severe", seed=seed)
        states = [sim.reset()]
        states += [sim.step(_torque(0.3 * np.sin(k))) for k in range(50)]
        return np.array([np.concatenate([s.joint_vel, s.imu_quat, s.imu_gyro]) for s in states])

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_legs_locked_reports_legs_at_zero():
    sim = WheelLeggedSim("legs_locked", seed=0)
    state = sim.step(MotorCommand(kp=np.full(6, 50, np.float32), q_des=np.ones(6, np.float32)))
    np.testing.assert_array_equal(state.joint_pos[[0, 1, 3, 4]], 0.0)
    np.testing.assert_array_equal(state.joint_torque[[0, 1, 3, 4]], 0.0)


def test_torque_limits_are_the_motor_spec_for_firmware_clipping():
    for variant in ("legs_locked", "full"):
        sim = WheelLeggedSim(variant, DynamicsProfile(motor_strength_scale=0.5), seed=0)
        np.testing.assert_array_equal(sim.torque_limits, [27, 27, 5, 27, 27, 5])


def test_pending_commands_replace_the_latency_queue():
    sim = WheelLeggedSim("legs_locked", DynamicsProfile(latency_steps=2), seed=0)
    sim.reset(pitch_rad=0.0)
    sim.set_pending_commands([_torque(1.0), _torque(-1.0)])
    torques = [sim.step(_torque(0.0)).joint_torque[2] for _ in range(3)]
    np.testing.assert_allclose(torques, [1.0, -1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="need 2 pending commands"):
        sim.set_pending_commands([_torque(0.0)])


def test_apply_command_sets_the_actuators_without_stepping():
    sim = WheelLeggedSim("legs_locked", DynamicsProfile(latency_steps=3), seed=0)
    sim.reset(pitch_rad=0.0)
    t0 = sim.data.time
    sim.apply_command(_torque(2.0))
    assert sim.data.time == t0
    np.testing.assert_allclose(sim.data.ctrl, [2.0, 2.0])

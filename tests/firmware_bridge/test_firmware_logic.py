"""The firmware's rules, driven directly with explicit firmware times (no pty, no MuJoCo)."""

import numpy as np

from firmware_bridge.virtual_robot.firmware import FirmwareConfig, FirmwareLogic
from protocol.robot_types import FaultFlags, MotorCommand, MotorMode, RobotState

LIMITS = (27.0, 27.0, 5.0, 27.0, 27.0, 5.0)


def make_fw(watchdog_ms: float = 50.0) -> FirmwareLogic:
    return FirmwareLogic(FirmwareConfig(watchdog_ms=watchdog_ms, torque_limit_nm=LIMITS))


def test_boots_disabled_and_outputs_no_torque_until_enabled():
    fw = make_fw()
    assert fw.mode == MotorMode.DISABLED
    fw.on_command(MotorCommand.torque([1, 1, 1, 1, 1, 1]), 0.0)
    out = fw.output(0.0, RobotState())
    assert not np.any(out.tau_ff) and not np.any(out.kp) and not np.any(out.kd)
    fw.on_enable(0.0)
    fw.on_command(MotorCommand.torque([1, 1, 1, 1, 1, 1]), 0.001)
    assert np.allclose(fw.output(0.002, RobotState()).tau_ff, 1.0)


def test_watchdog_switches_motors_off_after_its_time_and_enable_clears_flag():
    fw = make_fw(watchdog_ms=50.0)
    fw.on_enable(0.0)
    fw.on_command(MotorCommand.torque([0, 0, 1, 0, 0, 1]), 0.010)
    fw.output(0.055, RobotState())  # 45 ms after the command: still on
    assert fw.mode == MotorMode.ENABLED
    out = fw.output(0.061, RobotState())  # 51 ms: off
    assert fw.mode == MotorMode.DISABLED and fw.faults & FaultFlags.WATCHDOG
    assert not np.any(out.tau_ff)
    assert fw.counters.watchdog_trips == 1
    fw.on_enable(0.1)
    assert fw.mode == MotorMode.ENABLED and not fw.faults & FaultFlags.WATCHDOG
    # The old command is not resumed after the gap.
    assert not np.any(fw.output(0.101, RobotState()).tau_ff)


def test_estop_latches_until_cleared_then_needs_a_fresh_enable():
    fw = make_fw()
    fw.on_enable(0.0)
    fw.on_estop(0.01)
    fw.on_enable(0.02)
    assert fw.mode == MotorMode.ESTOP and fw.counters.enables_refused == 1
    fw.on_disable(0.03)
    assert fw.mode == MotorMode.ESTOP  # DISABLE does not release the latch
    fw.on_estop_clear(0.04)
    assert fw.mode == MotorMode.DISABLED and not fw.faults & FaultFlags.ESTOP_LATCHED
    fw.on_enable(0.05)
    assert fw.mode == MotorMode.ENABLED


def test_non_finite_or_out_of_range_gain_command_rejected_and_does_not_feed_watchdog():
    fw = make_fw(watchdog_ms=50.0)
    fw.on_enable(0.0)
    assert not fw.on_command(MotorCommand.torque([np.nan, 0, 0, 0, 0, 0]), 0.01)
    for field_name, value in (("kp", -1.0), ("kp", 1e6), ("kd", -0.1), ("kd", 1e6)):
        bad_gain = MotorCommand()
        getattr(bad_gain, field_name)[0] = value
        assert not fw.on_command(bad_gain, 0.02)
    assert fw.faults & FaultFlags.BAD_COMMAND and fw.counters.commands_rejected == 5
    fw.output(0.051, RobotState())
    assert fw.mode == MotorMode.DISABLED  # only the ENABLE at t=0 fed it
    fw.on_enable(0.06)
    assert fw.on_command(MotorCommand(), 0.07) and not fw.faults & FaultFlags.BAD_COMMAND


def test_feed_forward_clipped_and_torque_limited_flag_tracks_the_condition():
    fw = make_fw()
    fw.on_enable(0.0)
    fw.on_command(MotorCommand.torque([100, -100, 9, 0, 0, -9]), 0.0)
    out = fw.output(0.001, RobotState())
    assert np.allclose(out.tau_ff, [27, -27, 5, 0, 0, -5])
    assert fw.faults & FaultFlags.TORQUE_LIMITED
    fw.on_command(MotorCommand.torque([1, 0, 0, 0, 0, 0]), 0.002)
    fw.output(0.003, RobotState())
    assert not fw.faults & FaultFlags.TORQUE_LIMITED
    # Impedance part counts too: kp * error beyond the limit.
    cmd = MotorCommand()
    cmd.kp[2], cmd.q_des[2] = 100.0, 1.0
    fw.on_command(cmd, 0.004)
    fw.output(0.005, RobotState())
    assert fw.faults & FaultFlags.TORQUE_LIMITED


def test_jammed_actuator_is_held_where_it_jammed_and_flagged():
    fw = make_fw()
    measured = RobotState()
    measured.joint_pos[1] = 0.3
    out = fw.output(0.0, measured, stuck_index=1)
    assert out.q_des[1] == np.float32(0.3) and out.kp[1] > 0
    measured.joint_pos[1] = 0.5  # it jammed at 0.3, later readings do not move the hold point
    assert fw.output(0.01, measured, stuck_index=1).q_des[1] == np.float32(0.3)
    assert fw.faults & FaultFlags.MOTOR_STUCK

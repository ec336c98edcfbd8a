"""Whatever bytes the host sends, the virtual firmware keeps running and its states stay finite."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig
from protocol.frames import FrameDecoder, FrameType, encode_control, encode_frame, unpack_state

FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)
CONTROL = st.sampled_from([FrameType.ENABLE, FrameType.DISABLE, FrameType.ESTOP, FrameType.ESTOP_CLEAR])
# Valid-CRC frames with arbitrary contents (NaN, inf, 1e38 gains...) mixed with raw garbage.
FRAMES = st.one_of(
    st.lists(FLOATS, min_size=30, max_size=30).map(
        lambda v: encode_frame(FrameType.COMMAND, 1, struct.pack("<30f", *v))),
    CONTROL.map(lambda t: encode_control(t, 1)),
    st.binary(max_size=300),
)

_robot: VirtualRobot | None = None


def lockstep_robot() -> VirtualRobot:
    """One lock-step robot for all examples (building MuJoCo per example would dominate)."""
    global _robot
    if _robot is None:
        _robot = VirtualRobot(VirtualRobotConfig(device_link=None, lockstep=True, variant="full"))
    return _robot


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, max_size=12))
def test_random_host_bytes_never_crash_firmware_and_states_stay_finite(chunks):
    robot = lockstep_robot()
    robot._receive(b"".join(chunks), robot.firmware_time_s())
    robot._receive(encode_control(FrameType.ENABLE, 2), robot.firmware_time_s())  # keep it live
    out = FrameDecoder().feed(drain(robot))
    for frame in out:
        if frame.type == FrameType.STATE:
            s = unpack_state(frame.payload)
            for arr in (s.joint_pos, s.joint_vel, s.joint_torque, s.imu_quat, s.imu_gyro, s.imu_acc):
                assert np.all(np.isfinite(arr))
            limit = 27.0 * robot.plant.profile.motor_strength_scale  # the plant's force range
            assert np.all(np.abs(s.joint_torque) <= limit + 1e-3)


def drain(robot: VirtualRobot) -> bytes:
    """Read what the firmware wrote to the pty (from the slave end, as a host would)."""
    import os
    import select

    data = bytearray()
    while select.select([robot.pty.slave_fd], [], [], 0)[0]:
        data += os.read(robot.pty.slave_fd, 65536)
    return bytes(data)


def teardown_module(module) -> None:
    if _robot is not None:
        _robot.stop()


def test_fuzz_reached_both_command_paths():
    """The examples above must have exercised accepted and rejected COMMANDs, not only garbage."""
    counters = lockstep_robot().firmware.counters
    assert counters.commands_accepted > 0 and counters.commands_rejected > 0
    assert sum(lockstep_robot().decoder.dropped.values()) > 0

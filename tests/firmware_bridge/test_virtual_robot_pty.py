"""Host link <-> virtual robot firmware over a real pty, real MuJoCo, both clocks."""

from __future__ import annotations

import os
import select
import socket
import threading

import numpy as np

from firmware_bridge.virtual_robot.faults import FaultConfig
from firmware_bridge.link import LinkState, WriteStatus
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from protocol.frames import FrameType, encode_command
from protocol.robot_types import FaultFlags, MotorCommand, MotorMode

from .conftest import ListRecorder

WHEEL_TORQUE = MotorCommand.torque([0, 0, 2.0, 0, 0, 2.0])


def drive_lockstep(link, cmd: MotorCommand, n: int):
    """Send n COMMANDs, one at a time, each answered by exactly one STATE."""
    sample = None
    for _ in range(n):
        index = link.states_received
        assert link.send_command(cmd) == WriteStatus.OK
        sample = link.wait_for_state(timeout_s=2.0, after_index=index)
        assert sample is not None, "lock-step firmware did not answer a COMMAND"
    return sample


def test_enable_command_state_reflects_wheel_motion_real_time(start_robot, open_link):
    robot = start_robot(lockstep=False, profile="nominal")
    link = open_link(robot.device)
    first = link.wait_for_state(timeout_s=2.0)
    assert first is not None and first.state.mode == MotorMode.DISABLED
    assert link.send_command(WHEEL_TORQUE) == WriteStatus.NOT_ACTIVE  # not before activate()
    assert link.activate() and link.lifecycle == LinkState.ACTIVE
    for _ in range(60):  # keep commanding (watchdog) until the wheels clearly spin
        link.send_command(WHEEL_TORQUE)
        sample = link.wait_for_state(timeout_s=2.0)
        assert sample is not None
        if np.all(sample.state.joint_vel[[2, 5]] > 1.0):
            break
    state = link.latest_state().state
    assert state.mode == MotorMode.ENABLED
    assert np.all(state.joint_vel[[2, 5]] > 1.0), state.joint_vel
    assert np.allclose(state.joint_torque[[2, 5]], 2.0, atol=0.5)
    stats = link.stats()
    assert stats["counters"].frames_in["STATE"] >= 2 and stats["counters"].seq_lost == 0
    assert stats["command_to_state"]["count"] > 0
    assert link.send_heartbeat() == WriteStatus.OK
    link.wait_for_state(timeout_s=1.0)
    link.wait_for_state(timeout_s=1.0)
    assert link.stats()["heartbeat_rtt"]["count"] == 1


def test_watchdog_disables_motors_when_host_stops_commanding(start_robot, open_link):
    robot = start_robot(lockstep=False, watchdog_ms=40.0)
    link = open_link(robot.device)
    assert link.activate()
    for _ in range(5):
        link.wait_for_state(timeout_s=2.0)
        link.send_command(WHEEL_TORQUE)
    last_seen = link.latest_state().state.t_us  # the last command went out after this STATE
    # Host goes quiet.
    tripped = link.wait_for_state(lambda s: bool(s.state.faults & FaultFlags.WATCHDOG), timeout_s=3.0)
    assert tripped is not None
    assert tripped.state.mode == MotorMode.DISABLED
    # Within the watchdog time, in firmware time (STATE clocks, not the test's wall clock):
    # 40 ms + one tick of granularity + at most two catch-up ticks + the tick the command waited.
    assert tripped.state.t_us - last_seen <= (40 + 4 * 5) * 1000
    after = link.wait_for_state(timeout_s=2.0)
    assert np.allclose(after.state.joint_torque, 0.0)  # motors off
    assert robot.firmware.counters.watchdog_trips == 1
    assert link.last_fault is not None and link.last_fault.faults & FaultFlags.WATCHDOG


def test_estop_latches_until_cleared_lockstep(start_robot, open_link):
    robot = start_robot(lockstep=True)
    link = open_link(robot.device)
    assert link.activate()
    drive_lockstep(link, WHEEL_TORQUE, 3)
    index = link.states_received
    assert link.estop() == WriteStatus.OK
    s = link.wait_for_state(timeout_s=2.0, after_index=index)
    assert s.state.mode == MotorMode.ESTOP and s.state.faults & FaultFlags.ESTOP_LATCHED
    assert not link.activate()  # ENABLE refused while latched
    assert robot.firmware.counters.enables_refused == 1
    index = link.states_received
    link.clear_estop()
    s = link.wait_for_state(timeout_s=2.0, after_index=index)
    assert s.state.mode == MotorMode.DISABLED and not s.state.faults & FaultFlags.ESTOP_LATCHED
    assert link.activate()
    s = drive_lockstep(link, WHEEL_TORQUE, 1)
    assert s.state.mode == MotorMode.ENABLED


def test_one_percent_corrupt_bytes_no_bad_frame_accepted_link_keeps_up(start_robot, open_link):
    faults = FaultConfig(corrupt_byte_prob=0.01, directions="both", seed=11)
    robot = start_robot(lockstep=False, faults=faults)
    link = open_link(robot.device, state_queue_size=4096)
    # ENABLE itself may be corrupted on the way in: retry like a host would (bounded).
    assert any(link.activate() for _ in range(5))
    accepted = []
    for _ in range(150):  # ~0.75 s of commanding through a damaged line
        link.send_command(MotorCommand.torque([0, 0, 0.2, 0, 0, 0.2]))
        s = link.wait_for_state(timeout_s=2.0)
        assert s is not None, "link stopped delivering states"
    while not link.states.empty():
        accepted.append(link.states.get_nowait())
    counters = link.stats()["counters"]
    assert sum(counters.bad_frames.values()) > 0, "corruption never reached the decoder"
    assert robot.decoder.dropped_total > 0, "host->firmware corruption never reached the firmware"
    assert link.lifecycle in (LinkState.ACTIVE, LinkState.INACTIVE)
    # Every accepted frame is one the firmware sent: t_us on the 5 ms grid, finite values,
    # mode/faults from the known sets, unit quaternion.
    assert len(accepted) > 30
    for s in accepted:
        st = s.state
        assert st.t_us % 5000 == 0 and st.t_us > 0
        for arr in (st.joint_pos, st.joint_vel, st.joint_torque, st.imu_quat, st.imu_gyro, st.imu_acc):
            assert np.all(np.isfinite(arr))
        assert abs(float(np.linalg.norm(st.imu_quat)) - 1.0) < 1e-3
        assert st.mode in (0, 1, 2) and st.faults < (1 << 6)
    t = [s.state.t_us for s in accepted]
    assert t == sorted(t)


def lockstep_bytes(start_robot, open_link, seed: int, direct_write: bool = False) -> dict[str, bytes]:
    recorder = ListRecorder()
    faults = FaultConfig(sensor_dropout_prob=0.2, duplicate_frame_prob=0.05, seed=seed)
    robot = start_robot(lockstep=True, seed=seed, profile="moderate", faults=faults, recorder=recorder)
    link = open_link(robot.device, direct_write=direct_write)
    assert link.activate()
    rng = np.random.default_rng(0)
    for _ in range(40):
        drive_lockstep(link, MotorCommand.torque(rng.uniform(-1, 1, 6)), 1)
    index = link.states_received
    link.deactivate()  # answered by one STATE; after it nothing more crosses the line
    assert link.wait_for_state(lambda s: s.state.mode == MotorMode.DISABLED, 2.0, index) is not None
    link.close()
    robot.stop()
    return {ch: recorder.joined(ch) for ch in (HOST_TO_FW, FW_TO_HOST)}


def test_lockstep_byte_streams_bit_identical_for_same_seed(start_robot, open_link):
    a = lockstep_bytes(start_robot, open_link, seed=7)
    b = lockstep_bytes(start_robot, open_link, seed=7, direct_write=True)  # other write path, same bytes
    c = lockstep_bytes(start_robot, open_link, seed=8)
    assert len(a[FW_TO_HOST]) > 40 * 130
    assert a[HOST_TO_FW] == b[HOST_TO_FW] == c[HOST_TO_FW]
    assert a[FW_TO_HOST] == b[FW_TO_HOST]
    assert a[FW_TO_HOST] != c[FW_TO_HOST]


def test_sensor_dropout_holds_values_and_flags_it(start_robot, open_link):
    robot = start_robot(lockstep=True, faults=FaultConfig(sensor_dropout_prob=0.5, seed=1))
    link = open_link(robot.device)
    assert link.activate()
    prev = link.latest_state().state
    held = 0
    for _ in range(20):
        s = drive_lockstep(link, WHEEL_TORQUE, 1).state
        if s.faults & FaultFlags.SENSOR_DROPOUT:
            held += 1
            assert np.array_equal(s.joint_vel, prev.joint_vel) and np.array_equal(s.imu_quat, prev.imu_quat)
            assert s.t_us > prev.t_us  # the clock still moves
        prev = s
    assert held > 0 and robot._sensors.dropouts == held


def test_stuck_motor_is_flagged_and_does_not_follow_commands(start_robot, open_link):
    robot = start_robot(lockstep=True, variant="full", faults=FaultConfig(stuck_motor=2, stuck_after_s=0.0))
    link = open_link(robot.device)
    assert link.activate()
    s = drive_lockstep(link, WHEEL_TORQUE, 40).state
    assert s.faults & FaultFlags.MOTOR_STUCK
    assert abs(float(s.joint_vel[2])) < 0.5 < float(s.joint_vel[5])  # left wheel jammed, right spins


def test_non_finite_command_rejected_by_link_and_by_firmware(start_robot, open_link):
    robot = start_robot(lockstep=True)
    link = open_link(robot.device)
    assert link.activate()
    assert link.send_command(MotorCommand.torque([np.nan] * 6)) == WriteStatus.INVALID
    bad = MotorCommand.torque([np.inf, 0, 0, 0, 0, 0])
    index = link.states_received
    link.send_raw(encode_command(bad, seq=1))  # bypass the host check: the firmware must refuse
    s = link.wait_for_state(timeout_s=2.0, after_index=index)
    assert s.state.faults & FaultFlags.BAD_COMMAND
    assert robot.firmware.counters.commands_rejected == 1
    assert link.stats()["counters"].writes_rejected_invalid == 1
    assert link.stats()["counters"].frames_out.get(FrameType.COMMAND.name, 0) == 0


def test_socket_url_reaches_the_firmware_through_a_tcp_relay(start_robot, open_link):
    """socket://host:port (ser2net-style serial over TCP) works with the same link code."""
    robot = start_robot(lockstep=True)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def relay() -> None:  # TCP <-> the pty, as ser2net does for a real UART
        conn, _ = server.accept()
        fd = os.open(robot.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            while not stop.is_set():
                ready, _, _ = select.select([conn, fd], [], [], 0.05)
                if conn in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    os.write(fd, data)
                if fd in ready:
                    conn.sendall(os.read(fd, 4096))
        finally:
            os.close(fd)
            conn.close()

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    try:
        link = open_link(f"socket://127.0.0.1:{port}")
        assert link.activate()
        s = drive_lockstep(link, WHEEL_TORQUE, 10).state
        assert s.mode == MotorMode.ENABLED and s.joint_vel[2] > 0
        assert link.stats()["counters"].frames_in["STATE"] == 11
        link.close()
    finally:
        stop.set()
        relay_thread.join(timeout=5.0)
        server.close()


def test_duplicated_and_late_frames_are_dropped_so_states_only_move_forward(start_robot, open_link):
    faults = FaultConfig(duplicate_frame_prob=0.1, delay_frame_prob=0.1, delay_ms=12.0, seed=4)
    robot = start_robot(lockstep=False, faults=faults)
    link = open_link(robot.device, state_queue_size=1000)
    for _ in range(120):
        assert link.wait_for_state(timeout_s=2.0) is not None
    got = []
    while not link.states.empty():
        got.append(link.states.get_nowait())
    c = link.stats()["counters"]
    assert c.duplicate_frames > 0 and c.stale_frames > 0
    seqs = [s.seq for s in got]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), "a duplicate or late STATE was delivered"
    t_us = [s.state.t_us for s in got]
    assert all(b > a for a, b in zip(t_us, t_us[1:]))


def test_respawn_puts_a_fallen_robot_back_up_and_keeps_the_clock_running(start_robot, open_link):
    """Motors off (never enabled), the robot topples; after respawn_after_s down it is home again."""
    from firmware_bridge.virtual_robot import base_tilt_rad

    robot = start_robot(lockstep=True, profile="nominal", respawn_after_s=0.5)
    link = open_link(robot.device)
    assert link.activate() and link.disable() == WriteStatus.OK  # link open, motors off
    t_prev, fell, respawned = -1, False, False
    for _ in range(400):  # 2 s of firmware time: fall (~0.3 s) + 0.5 s down + margin
        s = drive_lockstep(link, MotorCommand(), 1).state
        assert s.t_us > t_prev, "firmware clock went backwards across a respawn"
        t_prev = s.t_us
        tilt = base_tilt_rad(s.imu_quat)
        fell = fell or tilt > 1.0
        if fell and tilt < 0.3:
            respawned = True
            break
    assert fell and respawned
    assert robot.counters.respawns == 1


def test_respawn_is_off_by_default(start_robot, open_link):
    robot = start_robot(lockstep=True, profile="nominal")
    link = open_link(robot.device)
    assert link.activate() and link.disable() == WriteStatus.OK
    s = drive_lockstep(link, MotorCommand(), 300).state
    from firmware_bridge.virtual_robot import base_tilt_rad

    assert base_tilt_rad(s.imu_quat) > 1.0 and robot.counters.respawns == 0

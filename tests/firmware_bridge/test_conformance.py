"""Firmware conformance: the same checks against the Python firmware and the C skeleton.

Each firmware runs in real time at 200 Hz behind a real pty, over a robot on a stand (joints
held still, so the torques the rules produce show unchanged in STATE):
- "python": firmware_bridge/virtual_robot/firmware.py inside VirtualRobot, with firmware_bridge.virtual_robot.stand_plant;
- "c": firmware_bridge/c/h2o_firmware.c compiled as host/h2o_fw_host (compiled by the fixture).
The test is the host: it writes frames to the pty and reads every frame back. Timing is checked
on the firmware's own clock (STATE t_us), so a loaded machine delays the test, not the verdict.

Barrier: frames are handled in order and a HEARTBEAT is echoed as it is handled, so every STATE
after the echo of a HEARTBEAT sent behind some frames was produced after those frames took effect
(`Host.sync`). docs/protocol.md "Firmware behaviour" states each rule tested here.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

from firmware_bridge.virtual_robot.faults import FaultConfig
from firmware_bridge.virtual_robot.stand_plant import StandPlant
from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig
from protocol.cobs import cobs_encode
from protocol.crc import crc32
from protocol.frames import (
    HEADER,
    FaultReport,
    Frame,
    FrameDecoder,
    FrameType,
    SeqTracker,
    encode_command,
    encode_control,
    encode_fault,
    encode_heartbeat,
    encode_state,
    unpack_fault,
    unpack_heartbeat,
    unpack_state,
)
from protocol.robot_types import FaultFlags, MotorCommand, MotorMode, RobotState

WATCHDOG_US = 100_000
TICK_US = 5_000  # 200 Hz
LOAD_SLACK_US = 60_000  # how late a loaded 2-core machine may run a tick (upper bounds only)
TIMEOUT_S = 5.0  # any single wait for a frame
W = FaultFlags.WATCHDOG
E = FaultFlags.ESTOP_LATCHED
B = FaultFlags.BAD_COMMAND
T = FaultFlags.TORQUE_LIMITED
NAN_COMMAND = MotorCommand.torque([np.nan, 0, 0, 0, 0, 0])


def wheel_torque(tau: float) -> MotorCommand:
    return MotorCommand.torque([0, 0, tau, 0, 0, tau])


# ---------------------------------------------------------------------------- the two firmwares


class PythonFirmware:
    """firmware.py's rules in VirtualRobot (real time), driving a StandPlant."""

    def __init__(self, watchdog_ms: float, faults: FaultConfig) -> None:
        plant = StandPlant(control_dt=TICK_US / 1e6)
        cfg = VirtualRobotConfig(device_link=None, watchdog_ms=watchdog_ms, faults=faults)
        self.robot = VirtualRobot(cfg, plant=plant)
        plant.clock = self.robot.firmware_time_s
        self.device = self.robot.device
        self.robot.start()

    def stop(self) -> dict[str, int]:
        self.robot.stop()
        r = self.robot
        counters = dataclasses.asdict(r.firmware.counters)
        counters.update(ticks=r.counters.ticks, states_sent=r.counters.states_sent,
                        fault_frames_sent=r.counters.fault_frames_sent,
                        heartbeats_echoed=r.counters.heartbeats_echoed, host_seq_lost=r.counters.host_seq_lost)
        counters.update({f"frames_in.{k}": v for k, v in r.counters.frames_in.items()})
        counters.update({f"dropped.{k}": v for k, v in r.decoder.dropped.items()})
        return counters


class CFirmware:
    """h2o_firmware.c in host/h2o_fw_host (the stand in sim_hal.c) as a child process."""

    def __init__(self, exe, watchdog_ms: float, faults: FaultConfig) -> None:
        cmd = [str(exe), "--rate-hz", str(1e6 / TICK_US), "--watchdog-ms", str(watchdog_ms),
               "--sensor-dropout", str(faults.sensor_dropout_prob), "--seed", str(faults.seed + 1),
               "--stuck-motor", str(faults.stuck_motor), "--stuck-after-s", str(faults.stuck_after_s)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        assert ready, "h2o_fw_host did not print its device"
        self.device = self.proc.stdout.readline().decode().strip()
        assert self.device.startswith("/dev/"), self.device
        self._counters: dict[str, int] | None = None

    def stop(self) -> dict[str, int]:
        if self._counters is None:
            self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=TIMEOUT_S)
            assert self.proc.returncode == 0, err.decode()
            self._counters = {k: int(v) for k, v in (line.split("=") for line in out.decode().split())}
        return self._counters


class Host:
    """The test's end of the line: the pty slave, raw bytes out, every frame in (logged)."""

    def __init__(self, device: str) -> None:
        # The firmware already made the pty raw; no tcsetattr here (TCSAFLUSH would drop input).
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.decoder = FrameDecoder()
        self.log: list[Frame] = []
        self.seq = 0
        self.sent = bytearray()  # every byte written, to compute what the firmware's decoder saw
        self._marker = 1000

    def close(self) -> None:
        os.close(self.fd)

    def frame(self, frame_type: FrameType, cmd: MotorCommand | None = None) -> bytes:
        self.seq += 1
        if frame_type == FrameType.COMMAND:
            return encode_command(cmd, self.seq)
        return encode_control(frame_type, self.seq)

    def send(self, *wires: bytes) -> None:
        data = b"".join(wires)  # one write: the firmware reads it in one go, between two ticks
        assert os.write(self.fd, data) == len(data)
        self.sent += data

    def poll(self, timeout_s: float) -> None:
        """Read whatever is there (waiting at most timeout_s for the first byte)."""
        if select.select([self.fd], [], [], timeout_s)[0]:
            try:
                self.log += self.decoder.feed(os.read(self.fd, 65536))
            except BlockingIOError:
                pass

    def wait_for(self, predicate, start: int = 0, timeout_s: float = TIMEOUT_S) -> int:
        """Index in the log of the first frame at or after `start` satisfying predicate."""
        deadline = time.monotonic() + timeout_s
        i = start
        while True:
            while i < len(self.log):
                if predicate(self.log[i]):
                    return i
                i += 1
            left = deadline - time.monotonic()
            assert left > 0, f"no such frame within {timeout_s} s"
            self.poll(min(left, 0.05))

    def sync(self, *wires: bytes) -> int:
        """Send `wires` then a HEARTBEAT; index of its echo: later STATEs show their effect."""
        self._marker += 1
        marker = self._marker
        self.seq += 1
        self.send(*wires, encode_heartbeat(marker, self.seq))
        return self.wait_for(lambda f: f.type == FrameType.HEARTBEAT and unpack_heartbeat(f.payload) == marker)

    def states(self, start: int, n: int) -> list[RobotState]:
        """The first n STATEs after log index `start` (waiting for them)."""
        out, i = [], start
        while len(out) < n:
            i = self.wait_for(lambda f: f.type == FrameType.STATE, i + 1)
            out.append(unpack_state(self.log[i].payload))
        return out

    def faults_sent(self, start: int = 0) -> list[FaultReport]:
        return [unpack_fault(f.payload) for f in self.log[start:] if f.type == FrameType.FAULT]


@pytest.fixture(params=["python", "c"])
def boot(request):
    """boot(watchdog_ms=100, **FaultConfig fields) -> (firmware, host); stopped after the test."""
    started: list = []

    def _boot(watchdog_ms: float = WATCHDOG_US / 1000, **faults):
        fault_cfg = FaultConfig(**faults)
        if request.param == "python":
            fw = PythonFirmware(watchdog_ms, fault_cfg)
        else:
            fw = CFirmware(request.getfixturevalue("c_programs").h2o_fw_host, watchdog_ms, fault_cfg)
        started.append(fw)
        host = Host(fw.device)
        started.append(host)
        return fw, host

    yield _boot
    for thing in reversed(started):
        thing.close() if isinstance(thing, Host) else thing.stop()


def first_state(host: Host, start: int, predicate) -> tuple[int, RobotState]:
    i = host.wait_for(lambda f: f.type == FrameType.STATE and predicate(unpack_state(f.payload)), start)
    return i, unpack_state(host.log[i].payload)


def last_state_before(host: Host, index: int) -> RobotState:
    return next(unpack_state(f.payload) for f in reversed(host.log[:index]) if f.type == FrameType.STATE)


# ---------------------------------------------------------------------------- boot and stream


def test_boots_disabled_streams_states_at_its_rate_seq_from_zero(boot):
    fw, host = boot()
    states = host.states(-1, 20)
    assert host.log[0].type == FrameType.STATE and host.log[0].seq == 0  # seq starts at 0
    assert [f.seq for f in host.log[:20]] == list(range(20))  # +1 per frame
    assert all(s.mode == MotorMode.DISABLED and s.faults == 0 for s in states)
    assert all(not np.any(s.joint_torque) for s in states)
    steps = np.diff([s.t_us for s in states])
    assert np.all(steps > 0) and abs(np.median(steps) - TICK_US) < 1000, steps
    counters = fw.stop()
    assert counters["states_sent"] >= 20 and counters["fault_frames_sent"] == 0


def test_heartbeat_is_echoed_at_once_with_the_firmwares_own_seq(boot):
    fw, host = boot()
    host.states(-1, 2)
    value = 2**63 + 12345
    host.send(encode_heartbeat(value, 4321))
    i = host.wait_for(lambda f: f.type == FrameType.HEARTBEAT)
    echo = host.log[i]
    assert unpack_heartbeat(echo.payload) == value  # the host's value, unchanged
    assert echo.seq != 4321 and echo.seq == host.log[i - 1].seq + 1  # numbered in the firmware's stream
    host.states(i, 2)
    tracker = SeqTracker()
    for f in host.log:
        tracker.update(f.seq)
    assert tracker.lost == 0 and tracker.resets == 0
    assert fw.stop()["heartbeats_echoed"] == 1


# ---------------------------------------------------------------------------- power rules, watchdog


def test_enable_without_command_trips_the_watchdog_after_100_ms(boot):
    fw, host = boot()
    host.states(-1, 1)
    host.send(host.frame(FrameType.ENABLE))
    i_on, on = first_state(host, 0, lambda s: s.mode == MotorMode.ENABLED)
    before = last_state_before(host, i_on)
    assert before.mode == MotorMode.DISABLED and not on.faults & W
    i_trip, trip = first_state(host, i_on, lambda s: s.mode != MotorMode.ENABLED)
    last_on = last_state_before(host, i_trip)
    # ENABLE took effect between `before` and `on`; the trip is the first tick > 100 ms after it.
    assert trip.mode == MotorMode.DISABLED and trip.faults & W
    assert trip.t_us - before.t_us > WATCHDOG_US
    assert last_on.t_us - on.t_us <= WATCHDOG_US + 1000  # still on at <= 100 ms (1 ms: stamp jitter)
    assert trip.t_us - on.t_us <= WATCHDOG_US + LOAD_SLACK_US
    # One FAULT frame, just before the trip's STATE, with the same clock and only the risen bit.
    assert host.log[i_trip - 1].type == FrameType.FAULT
    assert unpack_fault(host.log[i_trip - 1].payload) == FaultReport(trip.t_us, int(W), 0)
    # WATCHDOG stays set while DISABLED; no more FAULT frames for it.
    assert all(s.faults & W and s.mode == MotorMode.DISABLED for s in host.states(i_trip, 5))
    assert len(host.faults_sent()) == 1
    # ENABLE clears it at once; with no COMMAND it trips again and is reported again.
    mark = host.sync(host.frame(FrameType.ENABLE))
    (again,) = host.states(mark, 1)
    assert again.mode == MotorMode.ENABLED and not again.faults & W
    first_state(host, mark, lambda s: s.mode == MotorMode.DISABLED)
    assert [r.faults for r in host.faults_sent()] == [int(W), int(W)]
    counters = fw.stop()
    assert counters["watchdog_trips"] == 2 and counters["enables"] == 2


def test_commands_keep_it_enabled_and_silence_trips_100_ms_after_the_last(boot):
    fw, host = boot()
    mark = host.sync(host.frame(FrameType.ENABLE), host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # a COMMAND every ~10 ms, far inside the 100 ms
        host.send(host.frame(FrameType.COMMAND, wheel_torque(1.0)))
        host.poll(0.01)
    host.poll(0.0)
    seen_before_last = last_state_before(host, len(host.log))  # sent before the last COMMAND was read
    host.send(host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    i_trip, trip = first_state(host, mark, lambda s: s.mode != MotorMode.ENABLED)
    on = [unpack_state(f.payload) for f in host.log[mark:i_trip] if f.type == FrameType.STATE]
    assert len(on) >= 0.3 * 1e6 / TICK_US * 0.5  # stayed ENABLED throughout the commanding
    assert all(np.allclose(s.joint_torque, [0, 0, 1, 0, 0, 1]) for s in on[1:])
    assert trip.faults & W and not np.any(trip.joint_torque)
    assert trip.t_us - seen_before_last.t_us > WATCHDOG_US
    assert trip.t_us - seen_before_last.t_us <= WATCHDOG_US + LOAD_SLACK_US
    assert fw.stop()["watchdog_trips"] == 1


def test_heartbeats_do_not_feed_the_watchdog(boot):
    fw, host = boot()
    mark = host.sync(host.frame(FrameType.ENABLE))
    on = host.states(mark, 1)[0]
    deadline = time.monotonic() + 0.25
    while time.monotonic() < deadline and host.states(len(host.log) - 1, 1)[0].mode == MotorMode.ENABLED:
        host.sync()  # a HEARTBEAT, echoed, every tick or so
    i_trip, trip = first_state(host, mark, lambda s: s.mode != MotorMode.ENABLED)
    assert trip.faults & W and trip.t_us - on.t_us <= WATCHDOG_US + LOAD_SLACK_US
    counters = fw.stop()
    assert counters["heartbeats_echoed"] >= 5 and counters["watchdog_trips"] == 1


def test_command_while_disabled_is_ignored_and_not_resumed_by_enable(boot):
    fw, host = boot()
    mark = host.sync(host.frame(FrameType.COMMAND, wheel_torque(2.0)))
    s = host.states(mark, 2)[-1]
    assert s.mode == MotorMode.DISABLED and not np.any(s.joint_torque) and s.faults == 0
    mark = host.sync(host.frame(FrameType.ENABLE))
    s = host.states(mark, 2)[-1]
    assert s.mode == MotorMode.ENABLED and not np.any(s.joint_torque)  # ENABLE zeroes the command
    mark = host.sync(host.frame(FrameType.COMMAND, wheel_torque(2.0)))
    s = host.states(mark, 1)[0]
    assert np.allclose(s.joint_torque, [0, 0, 2, 0, 0, 2])
    mark = host.sync(host.frame(FrameType.DISABLE))
    s = host.states(mark, 1)[0]
    assert s.mode == MotorMode.DISABLED and not np.any(s.joint_torque) and s.faults == 0
    assert not host.faults_sent()
    counters = fw.stop()
    assert counters["commands_accepted"] == 2 and counters["commands_rejected"] == 0


def test_estop_latches_enable_refused_without_fault_frame_clear_needs_fresh_enable(boot):
    fw, host = boot()
    host.sync(host.frame(FrameType.ENABLE), host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    mark = host.sync(host.frame(FrameType.ESTOP))
    i, s = first_state(host, mark, lambda s: True)
    assert s.mode == MotorMode.ESTOP and s.faults == E and not np.any(s.joint_torque)
    assert host.log[i - 1].type == FrameType.FAULT
    assert unpack_fault(host.log[i - 1].payload) == FaultReport(s.t_us, int(E), 0)
    # ENABLE, DISABLE, COMMAND, ESTOP again: still latched, motors off, no FAULT frame.
    mark = host.sync(host.frame(FrameType.ENABLE), host.frame(FrameType.DISABLE),
                     host.frame(FrameType.COMMAND, wheel_torque(1.0)), host.frame(FrameType.ENABLE),
                     host.frame(FrameType.ESTOP))
    for s in host.states(mark, 3):
        assert s.mode == MotorMode.ESTOP and s.faults == E and not np.any(s.joint_torque)
    assert len(host.faults_sent()) == 1
    mark = host.sync(host.frame(FrameType.ESTOP_CLEAR))
    s = host.states(mark, 1)[0]
    assert s.mode == MotorMode.DISABLED and s.faults == 0  # cleared: DISABLED, not back to ENABLED
    mark = host.sync(host.frame(FrameType.ESTOP_CLEAR), host.frame(FrameType.ENABLE),
                     host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    s = host.states(mark, 1)[0]
    assert s.mode == MotorMode.ENABLED and np.allclose(s.joint_torque, [0, 0, 1, 0, 0, 1])
    counters = fw.stop()
    assert counters["enables_refused"] == 2 and counters["estops"] == 2
    assert counters["estop_clears"] == 1 and counters["fault_frames_sent"] == 1


def test_state_and_fault_frames_sent_to_the_firmware_are_counted_and_ignored(boot):
    fw, host = boot()
    enabled = RobotState(mode=int(MotorMode.ENABLED), faults=int(E | W))
    mark = host.sync(encode_state(enabled, 50), encode_fault(FaultReport(1, int(E), 7), 51))
    for s in host.states(mark, 3):
        assert s.mode == MotorMode.DISABLED and s.faults == 0
    assert not host.faults_sent()
    counters = fw.stop()
    assert counters["frames_in.STATE"] == 1 and counters["frames_in.FAULT"] == 1


# ---------------------------------------------------------------------------- limits and bad commands


def test_torques_clipped_per_actuator_and_torque_limited_sends_no_fault_frame(boot):
    fw, host = boot()
    host.sync(host.frame(FrameType.ENABLE))
    mark = host.sync(host.frame(FrameType.COMMAND, MotorCommand.torque([100, -100, 9, 0, 0, -9])))
    s = host.states(mark, 1)[0]
    assert np.array_equal(s.joint_torque, np.float32([27, -27, 5, 0, 0, -5]))
    assert s.faults == T
    # tau = clip(kp (q_des - q) + kd (qd_des - qd) + clip(tau_ff)); the flag looks at the unclipped sum.
    cmd = MotorCommand()
    cmd.kp[0], cmd.q_des[0], cmd.tau_ff[0] = 10.0, -2.0, 40.0  # -20 + clip(40) = 7; sum 20 is in range
    cmd.kd[1], cmd.qd_des[1] = 2.0, 3.0  # 6
    mark = host.sync(host.frame(FrameType.COMMAND, cmd))
    s = host.states(mark, 1)[0]
    assert np.allclose(s.joint_torque, [7, 6, 0, 0, 0, 0]) and s.faults == 0
    cmd.kp[2], cmd.q_des[2] = 100.0, 1.0  # the wheel's servo alone asks 100 N·m of 5
    mark = host.sync(host.frame(FrameType.COMMAND, cmd))
    s = host.states(mark, 1)[0]
    assert np.allclose(s.joint_torque, [7, 6, 5, 0, 0, 0]) and s.faults == T
    mark = host.sync(host.frame(FrameType.DISABLE))
    assert host.states(mark, 1)[0].faults == 0  # not ENABLED: no torque, flag cleared
    assert not host.faults_sent()
    assert fw.stop()["torque_limited_ticks"] >= 2


def test_bad_command_keeps_the_last_good_one_reports_once_and_does_not_feed_the_watchdog(boot):
    fw, host = boot()
    host.sync(host.frame(FrameType.ENABLE), host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    mark = host.sync(host.frame(FrameType.COMMAND, NAN_COMMAND))
    i, s = first_state(host, mark, lambda s: True)
    assert s.faults == B and np.allclose(s.joint_torque, [0, 0, 1, 0, 0, 1])  # previous command applies
    assert unpack_fault(host.log[i - 1].payload) == FaultReport(s.t_us, int(B), 0)
    for kp, kd in ((600.0, 0.0), (-1.0, 0.0), (0.0, 51.0), (0.0, -0.1)):  # gains outside [0, 500] / [0, 50]
        bad = wheel_torque(1.0)
        bad.kp[3], bad.kd[3] = kp, kd
        host.send(host.frame(FrameType.COMMAND, bad))
        host.poll(0.02)
    i_trip, trip = first_state(host, mark, lambda s: s.mode != MotorMode.ENABLED)  # only good ones feed it
    assert trip.faults == W | B
    assert [r.faults for r in host.faults_sent()] == [int(B), int(W)]
    # A good COMMAND clears BAD_COMMAND even while DISABLED; the next bad one is reported again.
    mark = host.sync(host.frame(FrameType.COMMAND, wheel_torque(1.0)))
    s = host.states(mark, 1)[0]
    assert s.faults == W and s.mode == MotorMode.DISABLED and not np.any(s.joint_torque)
    mark = host.sync(host.frame(FrameType.COMMAND, NAN_COMMAND))
    host.states(mark, 1)
    assert [r.faults for r in host.faults_sent()] == [int(B), int(W), int(B)]  # only the risen bit
    counters = fw.stop()
    assert counters["commands_rejected"] == 6 and counters["commands_accepted"] == 2


def test_only_the_ticks_last_command_decides_bad_command(boot):
    fw, host = boot()
    host.sync(host.frame(FrameType.ENABLE))
    # Three NaN COMMANDs then a good one, all between two ticks: no BAD_COMMAND ever shows.
    mark = host.sync(*(host.frame(FrameType.COMMAND, NAN_COMMAND) for _ in range(3)),
                     host.frame(FrameType.COMMAND, wheel_torque(2.0)))
    for s in host.states(mark, 3):
        assert s.faults == 0 and np.allclose(s.joint_torque, [0, 0, 2, 0, 0, 2])
    assert not host.faults_sent()
    # A good one then a NaN one: BAD_COMMAND (reported), the good one is what the motors get.
    mark = host.sync(host.frame(FrameType.COMMAND, wheel_torque(3.0)), host.frame(FrameType.COMMAND, NAN_COMMAND))
    s = host.states(mark, 1)[0]
    assert s.faults == B and np.allclose(s.joint_torque, [0, 0, 3, 0, 0, 3])
    assert [r.faults for r in host.faults_sent()] == [int(B)]
    counters = fw.stop()
    assert counters["commands_rejected"] == 4 and counters["commands_accepted"] == 2


def test_bits_rising_in_one_tick_share_one_fault_frame(boot):
    fw, host = boot()
    mark = host.sync(host.frame(FrameType.ESTOP), host.frame(FrameType.COMMAND, NAN_COMMAND))
    i, s = first_state(host, mark, lambda s: True)
    assert s.faults == E | B and s.mode == MotorMode.ESTOP
    assert host.faults_sent() == [FaultReport(s.t_us, int(E | B), 0)]
    fw.stop()


# ---------------------------------------------------------------------------- malformed frames


def raw_wire(version: int, frame_type: int, payload: bytes, length: int | None = None, crc_xor: int = 0) -> bytes:
    body = HEADER.pack(version, frame_type, 9, len(payload) if length is None else length) + payload
    return cobs_encode(body + struct.pack("<I", crc32(body) ^ crc_xor)) + b"\x00"


def test_malformed_frames_are_dropped_counted_by_reason_and_the_link_resyncs(boot):
    fw, host = boot()
    bad = {
        "crc": raw_wire(1, FrameType.ENABLE, b"", crc_xor=0x00010000),
        "bad_version": raw_wire(2, FrameType.ENABLE, b""),
        "unknown_type": raw_wire(1, 0x09, b""),
        "bad_length": raw_wire(1, FrameType.ENABLE, b"\x01"),
        "short": cobs_encode(b"\x01\x03\x00\x00") + b"\x00",
        "cobs": b"\x05\x01\x03\x00",  # a block announcing 4 bytes, the frame ends after 2
        "oversized": bytes([0x03]) * 300 + b"\x00",
    }
    mark = host.sync(*bad.values(), b"\x00\x00")  # empty frames are ignored, not counted
    for s in host.states(mark, 3):
        assert s.mode == MotorMode.DISABLED and s.faults == 0
    assert [f.type for f in host.log if f.type != FrameType.STATE] == [FrameType.HEARTBEAT]
    # Half a frame, then a good ENABLE: with no 0x00 between them they are one bad piece (one
    # drop) and the ENABLE is lost; a 0x00 sent first ends the half frame and the ENABLE works.
    mark = host.sync(host.frame(FrameType.ENABLE)[:7], host.frame(FrameType.ENABLE))
    assert host.states(mark, 1)[0].mode == MotorMode.DISABLED
    mark = host.sync(host.frame(FrameType.ENABLE)[:7], b"\x00", host.frame(FrameType.ENABLE))
    assert host.states(mark, 1)[0].mode == MotorMode.ENABLED
    counters = fw.stop()
    dropped = {k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("dropped.")}
    assert all(dropped[reason] >= 1 for reason in bad), dropped
    assert sum(dropped.values()) == len(bad) + 2, dropped
    reference = FrameDecoder()
    reference.feed(bytes(host.sent))
    assert dropped == reference.dropped  # what protocol/frames.py counts for the same bytes
    assert counters["frames_in.ENABLE"] == 1


# ---------------------------------------------------------------------------- sensor and motor faults


def test_sensor_dropout_is_flagged_per_state_without_a_fault_frame(boot):
    fw, host = boot(sensor_dropout_prob=1.0)
    states = host.states(-1, 10)
    assert not states[0].faults & FaultFlags.SENSOR_DROPOUT  # nothing to hold on the first read
    assert all(s.faults == FaultFlags.SENSOR_DROPOUT for s in states[1:])
    assert all(s.mode == MotorMode.DISABLED for s in states)
    assert not host.faults_sent()
    fw.stop()


def test_stuck_motor_is_reported_once_and_stays_set(boot):
    fw, host = boot(stuck_motor=2, stuck_after_s=0.05)
    i, s = first_state(host, 0, lambda s: s.faults & FaultFlags.MOTOR_STUCK)
    assert s.t_us >= 50_000
    assert host.faults_sent() == [FaultReport(s.t_us, int(FaultFlags.MOTOR_STUCK), 0)]
    mark = host.sync(host.frame(FrameType.ENABLE), host.frame(FrameType.DISABLE), host.frame(FrameType.ESTOP),
                     host.frame(FrameType.ESTOP_CLEAR), host.frame(FrameType.ENABLE))
    for s in host.states(mark, 3):
        assert s.faults & FaultFlags.MOTOR_STUCK and s.mode == MotorMode.ENABLED
    # ESTOP was set and cleared between two ticks: no STATE showed it, so no FAULT frame either.
    assert [r.faults for r in host.faults_sent()] == [int(FaultFlags.MOTOR_STUCK)]
    fw.stop()

"""Hardware-in-the-loop replay: record what a host program saw on its serial line, play it back.

(replay.py, by the firmware_bridge owner, summarises recordings and plays the firmware side at the
recorded pace without listening; this module adds the lock-step replayer that answers the host,
records what it sends back, and compares the two command streams.)

Three pieces, all outside the host program (onboard/run.py runs unchanged; it only opens a
different device path):

`SerialTap` sits between the host and a firmware (the virtual robot's pty, or a real board at
/dev/ttyUSB0): it owns a pty the host opens, forwards bytes both ways and records them as the
host saw them (channels serial/host_to_fw and serial/fw_to_host). In lock-step it can drop a
firmware STATE that repeats the previous one exactly (same tick, same values, same mode: the
virtual robot's answer to a redundant ENABLE). Why: the onboard lock-step loop takes the newest
STATE, and two STATEs for one tick make which one it sees a thread race; without the repeat the
host sees exactly one STATE per COMMAND and a run is deterministic.

`SensorReplayer` owns a pty too and plays a recording's firmware->host frames into it:
- lock-step: one recorded STATE (with any FAULT recorded before it) per COMMAND received; a
  control frame (ENABLE, DISABLE, ESTOP, ESTOP_CLEAR) gets the answer the recorded host frame at
  the same position got (the start-up ENABLE is answered with the first STATE);
- timed: every frame at its recorded time offset, whatever the host sends (from the host's
  first byte on: a host opening the port flushes what was sent before).
Frames are replayed as decoded: bytes the recording holds that do not form a valid frame (line
noise) are not replayed; replay.py `--serve` plays the raw bytes, damage included.
HEARTBEATs are echoed live (their payload is the host's clock, different in every run). The
replayer records what the host sends back, so the result is itself a recording.

`compare_host_streams` lines up the original and replayed host frames: identical byte for byte,
or a `CommandDiff` naming the first divergent tick, the action deltas and the state-machine
frames (ENABLE/DISABLE/ESTOP/ESTOP_CLEAR) of each side.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import serial

from firmware_bridge.virtual_robot.pty_port import PtyPort
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW, SerialByteRecorder
from firmware_bridge.hil.recordings import CONTROL_TYPES, DecodedRecording, TimedFrame, decode_recording
from protocol.frames import (
    Frame,
    FrameDecoder,
    FrameError,
    MAX_ENCODED_FRAME,
    FrameType,
    decode_frame,
    encode_frame,
    encode_heartbeat,
    unpack_command,
    unpack_heartbeat,
)
from protocol.recording import CLOCK_ELAPSED
from protocol.robot_types import ACTUATOR_NAMES

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often the forwarding/replay threads look at their stop flag
WRITE_STALL_S = 0.5  # tap: a firmware that stops reading for this long fails the write (logged)
COMMAND_FIELDS = ("q_des", "qd_des", "kp", "kd", "tau_ff")


def _open_sink(path: str | os.PathLike[str]) -> SerialByteRecorder:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SerialByteRecorder(path, clock=CLOCK_ELAPSED)  # times since the tool's start (_ns_since)


def _ns_since(t0: float) -> int:
    return int((time.monotonic() - t0) * 1e9)


# ---------------------------------------------------------------------------- recording tap


@dataclass
class TapCounters:
    host_bytes: int = 0
    firmware_bytes: int = 0
    states_forwarded: int = 0
    repeated_states_dropped: int = 0


class SerialTap:
    """A recording pty in front of a serial device. `device` is the path the host opens.

    Usage:
        with SerialTap(robot.device, "run.mcap", drop_repeated_states=True) as tap:
            ... run the host against tap.device ...
    """

    def __init__(self, firmware_url: str, record_path: str | os.PathLike[str],
                 drop_repeated_states: bool = False, link_path: str | None = None) -> None:
        self.sink = _open_sink(record_path)
        try:
            self.firmware = serial.serial_for_url(firmware_url, baudrate=1_000_000, timeout=POLL_S,
                                                  write_timeout=WRITE_STALL_S)
        except (serial.SerialException, OSError, ValueError):
            self.sink.close()
            raise
        self.pty = PtyPort(link_path)
        self.drop_repeated_states = drop_repeated_states
        self.counters = TapCounters()
        self._pending = b""
        self._last_state_payload: bytes | None = None
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._host_to_fw, name="tap-host", daemon=True),
            threading.Thread(target=self._fw_to_host, name="tap-firmware", daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def device(self) -> str:
        return self.pty.device

    def _host_to_fw(self) -> None:
        while not self._stop.is_set():
            data = self.pty.read(timeout_s=POLL_S)
            if not data:
                continue
            self.counters.host_bytes += len(data)
            self.sink.record_ns(HOST_TO_FW, _ns_since(self._t0), data)
            try:
                self.firmware.write(data)
            except (serial.SerialException, OSError) as exc:
                log.error("tap: firmware write failed: %s", exc)
                return

    def _fw_to_host(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.firmware.read(max(1, self.firmware.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                if not self._stop.is_set():
                    log.error("tap: firmware read failed: %s", exc)
                return
            if not data:
                continue
            self.counters.firmware_bytes += len(data)
            # Frame by frame, so a dropped repeat never takes a neighbour's bytes with it.
            out = bytearray()
            for frame, raw in self._frames_with_bytes(data):
                if frame is not None and frame.type == FrameType.STATE:
                    if self.drop_repeated_states and frame.payload == self._last_state_payload:
                        self.counters.repeated_states_dropped += 1
                        continue
                    self._last_state_payload = frame.payload
                    self.counters.states_forwarded += 1
                out += raw
            if out:
                self.sink.record_ns(FW_TO_HOST, _ns_since(self._t0), bytes(out))
                self.pty.write(bytes(out))

    def _frames_with_bytes(self, data: bytes) -> list[tuple[Frame | None, bytes]]:
        """Split the stream into (frame, its wire bytes); a damaged frame passes as (None, bytes)."""
        buf = self._pending + data
        pieces = buf.split(b"\x00")
        self._pending = pieces.pop()  # no delimiter yet: wait for the rest
        out: list[tuple[Frame | None, bytes]] = []
        if len(self._pending) > MAX_ENCODED_FRAME:  # garbage without delimiters: pass it on, bounded
            overflow, self._pending = self._pending, b""
        else:
            overflow = b""
        for piece in pieces:
            try:
                frame = decode_frame(piece) if piece else None
            except FrameError:
                frame = None
            out.append((frame, piece + b"\x00"))
        if overflow:
            out.append((None, overflow))
        return out

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self.firmware.close()
        self.pty.close()
        self.sink.close()

    def __enter__(self) -> "SerialTap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- replayer


@dataclass
class ReplayCounters:
    host_frames: dict[str, int] = field(default_factory=dict)
    states_sent: int = 0
    frames_sent: int = 0
    heartbeats_echoed: int = 0
    commands_after_end: int = 0  # COMMANDs received when the recording had no STATE left


class SensorReplayer:
    """Plays a recording's firmware->host frames into a pty; see the module docstring.

    `done` is set when every recorded STATE has been sent (lock-step) or played (timed).
    `record_path` (optional) receives what the host sent and what was played, as a recording.
    """

    def __init__(self, recording: str | os.PathLike[str] | DecodedRecording, lockstep: bool = True,
                 record_path: str | os.PathLike[str] | None = None, link_path: str | None = None,
                 speed: float = 1.0, wait_for_host: bool = True) -> None:
        self.recording = recording if isinstance(recording, DecodedRecording) else decode_recording(recording)
        if not self.recording.of(FW_TO_HOST, FrameType.STATE):
            raise ValueError(f"{self.recording.path}: no firmware STATE frames to replay")
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.lockstep = lockstep
        self.speed = speed
        self.wait_for_host = wait_for_host  # timed: start on the host's first byte (opening a port flushes it)
        self.pty = PtyPort(link_path)
        self.sink = _open_sink(record_path) if record_path else None
        self.counters = ReplayCounters()
        self.done = threading.Event()
        self._decoder = FrameDecoder()
        self._groups = self._answer_groups(self.recording)
        self._next_group = 0
        self._answers = self._recorded_answers(self.recording)
        self._host_index = 0
        self._hb_seq = 0
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None

    @property
    def device(self) -> str:
        return self.pty.device

    # ------------------------------------------------------------------ schedule from the recording
    @staticmethod
    def _answer_groups(rec: DecodedRecording) -> list[list[TimedFrame]]:
        """Recorded firmware frames (heartbeat echoes left out) cut into groups ending at a STATE."""
        groups: list[list[TimedFrame]] = []
        cur: list[TimedFrame] = []
        for tf in rec.of(FW_TO_HOST):
            if tf.frame.type == FrameType.HEARTBEAT:
                continue
            cur.append(tf)
            if tf.frame.type == FrameType.STATE:
                groups.append(cur)
                cur = []
        return groups

    @staticmethod
    def _recorded_answers(rec: DecodedRecording) -> list[tuple[FrameType, bool]]:
        """Per recorded host frame: its type and whether a STATE answered it before the next one.

        Frames of one recorded chunk count as one step: only the chunk's last frame is answered.
        """
        host = [f for f in rec.of(HOST_TO_FW) if f.frame.type != FrameType.HEARTBEAT]
        state_orders = [f.order for f in rec.of(FW_TO_HOST, FrameType.STATE)]
        out: list[tuple[FrameType, bool]] = []
        si = 0
        for i, f in enumerate(host):
            nxt = host[i + 1].order if i + 1 < len(host) else None
            if nxt == f.order:  # same chunk: the answer belongs to a later frame of it
                out.append((f.frame.type, False))
                continue
            while si < len(state_orders) and state_orders[si] <= f.order:
                si += 1
            answered = si < len(state_orders) and (nxt is None or state_orders[si] < nxt)
            out.append((f.frame.type, answered))
        return out

    # ------------------------------------------------------------------ running
    def start(self) -> "SensorReplayer":
        self._t0 = time.monotonic()
        target = self._run_lockstep if self.lockstep else self._run_timed
        self._thread = threading.Thread(target=target, name="sensor-replayer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.pty.close()
        if self.sink is not None:
            self.sink.close()

    def __enter__(self) -> "SensorReplayer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_lockstep(self) -> None:
        while not self._stop.is_set():
            data = self.pty.read(timeout_s=POLL_S)
            if data:
                self._receive(data)

    def _run_timed(self) -> None:
        frames = [f for f in self.recording.of(FW_TO_HOST) if f.frame.type != FrameType.HEARTBEAT]
        t_first = frames[0].t_ns if frames else 0
        while self.wait_for_host and not self._stop.is_set():
            data = self.pty.read(timeout_s=POLL_S)
            if data:
                self._t0 = time.monotonic()
                self._receive(data)
                break
        i = 0
        while not self._stop.is_set():
            due = frames[i].t_ns - t_first if i < len(frames) else None
            wait = POLL_S if due is None else min(POLL_S, max(0.0, due / 1e9 / self.speed - (time.monotonic() - self._t0)))
            data = self.pty.read(timeout_s=wait) if wait > 0 else self.pty.read()
            if data:
                self._receive(data)
            now_ns = (time.monotonic() - self._t0) * 1e9 * self.speed
            while i < len(frames) and frames[i].t_ns - t_first <= now_ns:
                self._send([frames[i]])
                i += 1
            if i >= len(frames):
                self.done.set()

    def _receive(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.record_ns(HOST_TO_FW, _ns_since(self._t0), data)
        for frame in self._decoder.feed(data):
            name = frame.type.name
            self.counters.host_frames[name] = self.counters.host_frames.get(name, 0) + 1
            if frame.type == FrameType.HEARTBEAT:
                self._echo(frame)
                continue
            if not self.lockstep:
                continue
            index = self._host_index
            self._host_index += 1
            recorded = self._answers[index] if index < len(self._answers) else None
            if frame.type == FrameType.COMMAND:
                answer = True
            elif frame.type in CONTROL_TYPES:
                answer = recorded is not None and recorded[0] == frame.type and recorded[1]
                if self._next_group == 0:
                    answer = True  # the start-up handshake (activate() waits for a STATE)
            else:
                answer = False
            if answer:
                self._answer(frame.type)

    def _answer(self, frame_type: FrameType) -> None:
        if self._next_group >= len(self._groups):
            if frame_type == FrameType.COMMAND:
                self.counters.commands_after_end += 1
            self.done.set()
            return
        self._send(self._groups[self._next_group])
        self._next_group += 1
        if self._next_group >= len(self._groups):
            self.done.set()

    def _send(self, frames: list[TimedFrame]) -> None:
        data = b"".join(encode_frame(tf.frame.type, tf.frame.seq, tf.frame.payload) for tf in frames)
        self.counters.frames_sent += len(frames)
        self.counters.states_sent += sum(tf.frame.type == FrameType.STATE for tf in frames)
        if self.sink is not None:
            self.sink.record_ns(FW_TO_HOST, _ns_since(self._t0), data)
        self.pty.write(data)

    def _echo(self, frame: Frame) -> None:
        data = encode_heartbeat(unpack_heartbeat(frame.payload), self._hb_seq)
        self._hb_seq = (self._hb_seq + 1) & 0xFFFF
        self.counters.heartbeats_echoed += 1
        if self.sink is not None:
            self.sink.record_ns(FW_TO_HOST, _ns_since(self._t0), data)
        self.pty.write(data)

    @property
    def states_total(self) -> int:
        return len(self._groups)


# ---------------------------------------------------------------------------- comparison


@dataclass
class CommandDiff:
    """How a replayed host stream differs from the original one."""

    identical: bool  # every original host frame came back byte for byte, in order
    frames_compared: int
    original_frames: int
    replayed_frames: int
    first_divergent_frame: int | None  # index among host frames (heartbeats excluded)
    first_divergent_tick: int | None  # index among COMMAND frames (= control tick)
    ticks_compared: int
    divergent_ticks: int
    max_abs_delta: dict[str, list[float]]  # command field -> per-actuator max |replayed - original|
    deltas_at_first: dict[str, list[float]]  # command field -> per-actuator delta at the first divergent tick
    transitions_original: list[tuple[int, str]]  # (tick, ENABLE/DISABLE/ESTOP/ESTOP_CLEAR)
    transitions_replayed: list[tuple[int, str]]
    # (tick, kind) where the kind of COMMAND changes: DRIVE (torques/targets), DAMPING (kd only),
    # ZERO (all zero: onboard PASSIVE). How onboard's safety FSM shows on the wire.
    command_kinds_original: list[tuple[int, str]]
    command_kinds_replayed: list[tuple[int, str]]
    extra_replayed_frames: int  # frames the host sent after the recording ran out

    def report(self) -> str:
        lines = [
            f"host frames: original {self.original_frames}, replayed {self.replayed_frames}, compared {self.frames_compared}",
            f"commands compared: {self.ticks_compared}, divergent: {self.divergent_ticks}",
        ]
        if self.identical:
            lines.append("IDENTICAL: every original host frame was reproduced byte for byte")
        else:
            lines.append(f"DIVERGED at host frame {self.first_divergent_frame}, "
                         f"first divergent tick {self.first_divergent_tick}")
            for name, delta in self.deltas_at_first.items():
                if any(delta):
                    lines.append(f"  at tick {self.first_divergent_tick}: d{name} = "
                                 + " ".join(f"{a}:{d:+.4g}" for a, d in zip(ACTUATOR_NAMES, delta) if d))
            for name, delta in self.max_abs_delta.items():
                if any(delta):
                    lines.append(f"  max |d{name}| = " + " ".join(f"{a}:{d:.4g}" for a, d in zip(ACTUATOR_NAMES, delta) if d))
        if self.transitions_original != self.transitions_replayed:
            lines.append(f"  state-machine frames original: {self.transitions_original}")
            lines.append(f"  state-machine frames replayed: {self.transitions_replayed}")
        else:
            lines.append(f"state-machine frames (same on both sides): {self.transitions_original}")
        if self.command_kinds_original != self.command_kinds_replayed:
            lines.append(f"  command kinds original: {self.command_kinds_original}")
            lines.append(f"  command kinds replayed: {self.command_kinds_replayed}")
        else:
            lines.append(f"command kinds (same on both sides): {self.command_kinds_original}")
        if self.extra_replayed_frames:
            lines.append(f"host sent {self.extra_replayed_frames} frames after the recording ran out (not compared)")
        return "\n".join(lines)


def _host_stream(rec: DecodedRecording) -> list[Frame]:
    return [f.frame for f in rec.of(HOST_TO_FW) if f.frame.type != FrameType.HEARTBEAT]


def command_kind(payload: bytes) -> str:
    """DRIVE, DAMPING (damping gains only: onboard's soft landing) or ZERO (onboard PASSIVE)."""
    cmd = unpack_command(payload)
    if not (np.any(cmd.tau_ff) or np.any(cmd.kp) or np.any(cmd.q_des) or np.any(cmd.qd_des)):
        return "DAMPING" if np.any(cmd.kd) else "ZERO"
    return "DRIVE"


def _command_kinds(frames: list[Frame]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    tick = 0
    for f in frames:
        if f.type != FrameType.COMMAND:
            continue
        kind = command_kind(f.payload)
        if not out or out[-1][1] != kind:
            out.append((tick, kind))
        tick += 1
    return out


def _transitions(frames: list[Frame]) -> list[tuple[int, str]]:
    out, tick = [], 0
    for f in frames:
        if f.type == FrameType.COMMAND:
            tick += 1
        elif f.type in CONTROL_TYPES:
            out.append((tick, f.type.name))
    return out


def compare_host_streams(original: str | os.PathLike[str] | DecodedRecording,
                         replayed: str | os.PathLike[str] | DecodedRecording,
                         max_frames: int | None = None) -> CommandDiff:
    """Compare what the host sent in two recordings (heartbeats excluded: their clock differs).

    Frames are compared byte for byte (type, seq, payload). Ticks are the COMMAND frames; action
    deltas are per command field and actuator. Only as many frames as the original has are
    compared (after its last STATE the replay host keeps running on stale data).
    """
    a = _host_stream(original if isinstance(original, DecodedRecording) else decode_recording(original))
    b = _host_stream(replayed if isinstance(replayed, DecodedRecording) else decode_recording(replayed))
    n = min(len(a), len(b)) if max_frames is None else min(len(a), len(b), max_frames)
    first_frame = next((i for i in range(n) if a[i] != b[i]), None)
    if first_frame is None and len(b) < len(a) and (max_frames is None or n < max_frames):
        first_frame = n  # the replay stopped early
    ca = [unpack_command(f.payload) for f in a[:n] if f.type == FrameType.COMMAND]
    cb = [unpack_command(f.payload) for f in b[:n] if f.type == FrameType.COMMAND]
    m = min(len(ca), len(cb))
    max_abs = {k: np.zeros(len(ACTUATOR_NAMES)) for k in COMMAND_FIELDS}
    first_tick, at_first, divergent = None, {k: [0.0] * len(ACTUATOR_NAMES) for k in COMMAND_FIELDS}, 0
    for t in range(m):
        deltas = {k: np.asarray(getattr(cb[t], k), np.float64) - np.asarray(getattr(ca[t], k), np.float64)
                  for k in COMMAND_FIELDS}
        if any(np.any(d != 0) for d in deltas.values()):
            divergent += 1
            if first_tick is None:
                first_tick = t
                at_first = {k: [float(x) for x in d] for k, d in deltas.items()}
        for k, d in deltas.items():
            max_abs[k] = np.maximum(max_abs[k], np.abs(d))
    if first_frame is not None and first_tick is None:
        first_tick = sum(f.type == FrameType.COMMAND for f in a[:first_frame])  # a control frame or seq differs
    return CommandDiff(
        identical=first_frame is None,
        frames_compared=n,
        original_frames=len(a),
        replayed_frames=len(b),
        first_divergent_frame=first_frame,
        first_divergent_tick=first_tick,
        ticks_compared=m,
        divergent_ticks=divergent,
        max_abs_delta={k: [float(x) for x in v] for k, v in max_abs.items()},
        deltas_at_first=at_first,
        transitions_original=_transitions(a[:n]),
        transitions_replayed=_transitions(b[:n]),
        command_kinds_original=_command_kinds(a[:n]),
        command_kinds_replayed=_command_kinds(b[:n]),
        extra_replayed_frames=max(0, len(b) - len(a)),
    )

"""Hardware-in-the-loop replay: answer a host program from a recording of its serial line.

(summary.py plays the firmware side's raw bytes at the recorded pace without listening; this
module answers the host, in lock-step if asked, and records what it sends back.)

`SensorReplayer` owns a pty (the host program opens it unchanged) and plays a recording's
firmware->host frames into it:
- lock-step: one recorded STATE (with any FAULT recorded before it) per COMMAND received; a
  control frame (ENABLE, DISABLE, ESTOP, ESTOP_CLEAR) gets the answer the recorded host frame at
  the same position got (the start-up ENABLE is answered with the first STATE);
- timed: every frame at its recorded time offset, whatever the host sends (from the host's
  first byte on: a host opening the port flushes what was sent before).
Frames are replayed as decoded: bytes the recording holds that do not form a valid frame (line
noise) are not replayed; `summary.serve` plays the raw bytes, damage included.
HEARTBEATs are echoed live (their payload is the host's clock, different in every run). The
replayer records what the host sends back, so the result is itself a recording, which
compare.py lines up against the original.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from firmware_bridge.virtual_robot.pty_port import PtyPort
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from firmware_bridge.hil.recordings import CONTROL_TYPES, DecodedRecording, TimedFrame, decode_recording
from firmware_bridge.hil.tap import POLL_S, ns_since, open_sink
from protocol.frames import (
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
    encode_heartbeat,
    unpack_heartbeat,
)

log = logging.getLogger(__name__)


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
        self.sink = open_sink(record_path) if record_path else None
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
            self.sink.record_ns(HOST_TO_FW, ns_since(self._t0), data)
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
            self.sink.record_ns(FW_TO_HOST, ns_since(self._t0), data)
        self.pty.write(data)

    def _echo(self, frame: Frame) -> None:
        data = encode_heartbeat(unpack_heartbeat(frame.payload), self._hb_seq)
        self._hb_seq = (self._hb_seq + 1) & 0xFFFF
        self.counters.heartbeats_echoed += 1
        if self.sink is not None:
            self.sink.record_ns(FW_TO_HOST, ns_since(self._t0), data)
        self.pty.write(data)

    @property
    def states_total(self) -> int:
        return len(self._groups)

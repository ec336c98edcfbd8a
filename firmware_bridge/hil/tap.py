"""Hardware-in-the-loop recording tap: record what a host program sees on its serial line.

`SerialTap` sits between the host and a firmware (the virtual robot's pty, or a real board at
/dev/ttyUSB0): it owns a pty the host opens, forwards bytes both ways and records them as the
host saw them (channels serial/host_to_fw and serial/fw_to_host). The host program runs unchanged
(onboard/run.py only opens a different device path). In lock-step it can drop a firmware STATE
that repeats the previous one exactly (same tick, same values, same mode: the virtual robot's
answer to a redundant ENABLE). Why: the onboard lock-step loop takes the newest STATE, and two
STATEs for one tick make which one it sees a thread race; without the repeat the host sees
exactly one STATE per COMMAND and a run is deterministic.

Its recording is what the replayer (replayer.py) plays back and the comparer (compare.py) lines
up against a replayed run; `open_sink` and `ns_since` are the recording helpers both tools use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import serial

from firmware_bridge.virtual_robot.pty_port import PtyPort
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW, SerialByteRecorder
from protocol.frames import MAX_ENCODED_FRAME, Frame, FrameError, FrameType, decode_frame
from protocol.recording import CLOCK_ELAPSED

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often the forwarding/replay threads look at their stop flag
WRITE_STALL_S = 0.5  # tap: a firmware that stops reading for this long fails the write (logged)


def open_sink(path: str | os.PathLike[str]) -> SerialByteRecorder:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SerialByteRecorder(path, clock=CLOCK_ELAPSED)  # times since the tool's start (ns_since)


def ns_since(t0: float) -> int:
    return int((time.monotonic() - t0) * 1e9)


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
        self.sink = open_sink(record_path)
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
            self.sink.record_ns(HOST_TO_FW, ns_since(self._t0), data)
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
                self.sink.record_ns(FW_TO_HOST, ns_since(self._t0), bytes(out))
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

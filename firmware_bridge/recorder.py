"""Byte-level recording of the serial line, both directions, timestamped (protocol.recording, MCAP).

Why bytes and not decoded frames: a recording is for finding out what went wrong on the wire,
so it keeps exactly what was read and written, corrupt bytes included; the HIL tools
(firmware_bridge/hil/) decode it later with the same FrameDecoder the link uses.

Why a thread: `record()` is called from the control loop's side (the link's sender and reader,
or the virtual firmware tick), and nothing in that path may wait on disk. It only appends to a
bounded in-memory queue (drops are counted); a background thread writes the MCAP file and
flushes it to the OS every `flush_interval_s`, so a killed process loses at most that much.

Channels: "serial/host_to_fw" and "serial/fw_to_host" (encoding "cobs-frames", schema
"h2o_robot.serial.RawBytes"). `clock` names the clock of the times given to `record`: the link's
time.monotonic_ns() ("monotonic", the default: the file holds exact wall-clock times) or a clock
counting from the start ("elapsed": the virtual robot's firmware time, the HIL tools' time since
their start); the file holds nanoseconds since the Unix epoch either way (protocol.recording).

Why the MCAP library is imported only when a recorder is made: the serial link imports this
module for the channel names, and a robot that does not record must not load mcap, lz4 and
zstandard (start-up time, memory, and installs that leave them out).
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

HOST_TO_FW = "serial/host_to_fw"
FW_TO_HOST = "serial/fw_to_host"
DEFAULT_MAX_PENDING = 100_000  # chunks held in memory before new ones are dropped


class SerialByteRecorder:
    """record(channel, t_s, data) from any thread; the file is written by a background thread."""

    def __init__(
        self,
        path: str | Path,
        flush_interval_s: float = 0.5,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: str = "monotonic",
    ) -> None:
        from protocol.recording import ENCODING_SERIAL, Writer  # not at import: see the module docstring

        self.path = Path(path)
        self._writer = Writer(self.path, default_encoding=ENCODING_SERIAL, clock=clock)
        self._pending: collections.deque[tuple[str, int, bytes]] = collections.deque()
        self._max_pending = max_pending
        self._wake = threading.Event()
        self._closing = False
        self.flush_interval_s = flush_interval_s
        self.records_written = 0
        self.records_dropped = 0
        self._thread = threading.Thread(target=self._run, name="serial-recorder", daemon=True)
        self._thread.start()

    def record(self, channel: str, t_s: float, data: bytes) -> None:
        self.record_ns(channel, int(round(t_s * 1e9)), data)

    def record_ns(self, channel: str, t_ns: int, data: bytes) -> None:
        if self._closing or not data:
            return
        if len(self._pending) >= self._max_pending:
            self.records_dropped += 1
            return
        self._pending.append((channel, t_ns, bytes(data)))  # deque.append is atomic

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            channel, t_ns, data = pending.popleft()
            self._writer.write(channel, t_ns, data)
            self.records_written += 1

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_interval_s)
            self._drain()
            self._writer.flush()

    def close(self) -> None:
        """Write what is pending, finish the MCAP file (footer, fsync) and stop the thread."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=10.0)
        self._drain()
        self._writer.close()
        if self.records_dropped:
            log.warning("serial recording %s: %d chunks dropped (writer behind)", self.path, self.records_dropped)

    def __enter__(self) -> "SerialByteRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

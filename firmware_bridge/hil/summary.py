"""Read back a serial byte recording: summarise it, or play the firmware's side into a pty.

Why: when a robot misbehaves, the recording answers "what was on the wire": which frames, how
many were damaged or lost, and when. Serving the firmware->host bytes back over a pty (at the
recorded pace) lets the exact same host code re-read the exact same bytes, corruption included.

The library half of the one replay CLI, `python -m firmware_bridge.hil` (`inspect` prints
`summarise`; `replay --timed` plays the firmware side at the recorded pace).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.virtual_robot.pty_port import PtyPort
from firmware_bridge.recorder import FW_TO_HOST
from protocol.frames import FrameDecoder, SeqTracker
from protocol.recording import Reader

log = logging.getLogger(__name__)


@dataclass
class ChannelSummary:
    chunks: int = 0
    bytes: int = 0
    first_t_s: float = 0.0
    last_t_s: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    seq_lost: int = 0


def read_chunks(path: str | Path) -> dict[str, list[tuple[int, bytes]]]:
    """channel -> [(t_ns, bytes)] in file order (a crash-truncated file reads up to the cut)."""
    out: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for rec in Reader(path):
        out[rec.channel].append((rec.t_ns, rec.data))
    return dict(out)


def summarise(path: str | Path) -> dict[str, ChannelSummary]:
    summaries: dict[str, ChannelSummary] = {}
    for channel, chunks in read_chunks(path).items():
        decoder, seq = FrameDecoder(), SeqTracker()
        s = ChannelSummary(chunks=len(chunks), first_t_s=chunks[0][0] * 1e-9, last_t_s=chunks[-1][0] * 1e-9)
        for _, data in chunks:
            s.bytes += len(data)
            for frame in decoder.feed(data):
                s.frames[frame.type.name] = s.frames.get(frame.type.name, 0) + 1
                seq.update(frame.seq)
        s.dropped = {k: v for k, v in decoder.dropped.items() if v}
        s.seq_lost = seq.lost
        summaries[channel] = s
    return summaries


def serve(path: str | Path, device_link: str | None, speed: float, stop: threading.Event,
          on_ready=None, wait_for_host: bool = True) -> int:  # callback(device)
    """Write the recorded firmware->host bytes into a fresh pty at the recorded pace.

    With `wait_for_host`, playback starts when the host first writes (e.g. its ENABLE): a host
    opening the port flushes its input, so bytes played before it listens would be lost.
    """
    chunks = read_chunks(path).get(FW_TO_HOST, [])
    with PtyPort(device_link) as port:
        if on_ready is not None:
            on_ready(port.device)
        while wait_for_host and not stop.is_set() and not port.read(timeout_s=0.05):
            pass
        if not chunks:
            return 0
        t0_rec, t0 = chunks[0][0], time.monotonic()
        for t_ns, data in chunks:
            due = t0 + (t_ns - t0_rec) * 1e-9 / speed
            while not stop.is_set() and time.monotonic() < due:
                port.read(timeout_s=min(0.05, max(0.0, due - time.monotonic())))  # discard host bytes
            if stop.is_set():
                break
            port.write(data)
        # Give the host a moment to read the tail before the pty goes away.
        stop.wait(0.2)
        return port.counters.bytes_written

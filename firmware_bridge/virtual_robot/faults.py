"""Fault injection for the virtual serial line and the virtual firmware's sensors and motors.

Why: the link's promises ("no corrupted frame accepted", "watchdog fires when the host goes
quiet", "a sensor dropout is flagged, not hidden") are only worth something if tests can break
the line on purpose. Everything here is driven by one seeded numpy generator per channel, so a
lock-step run with the same seed damages exactly the same bytes every time.

Channel faults work on encoded frames (COBS, 0x00-terminated), so they need no codec: a frame is
everything up to and including a 0x00 byte. Frame-level faults (drop, duplicate, delay) pick
whole frames; byte-level faults (corrupt, drop, duplicate) then pick bytes inside what is sent.
A stall holds this frame and every later one until it ends, keeping their order (a line that
stops, then delivers a burst); a delayed frame alone is held, so later ones overtake it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, fields

import numpy as np
from protocol.config_cli import help_field

FRAME_DELIMITER = 0x00
DIRECTIONS = ("fw_to_host", "host_to_fw", "both")


class FaultConfigError(ValueError):
    """A fault configuration field is out of range (the message names the field)."""


@dataclass
class FaultConfig:
    """What to break, and how often. All probabilities are per byte or per frame, in [0, 1]."""

    # --- serial line (applied to the directions named by `directions`) ---
    corrupt_byte_prob: float = help_field(0.0, "flip one random bit of a byte")
    drop_byte_prob: float = help_field(0.0, "a byte never arrives")
    duplicate_byte_prob: float = help_field(0.0, "a byte arrives twice")
    drop_frame_prob: float = help_field(0.0, "a whole frame never arrives")
    duplicate_frame_prob: float = help_field(0.0, "a frame arrives twice")
    delay_frame_prob: float = help_field(0.0, "a frame is held back by `delay_ms` (others may overtake it)")
    delay_ms: float = help_field(20.0, "how long a delayed frame is held back")
    stall_prob: float = help_field(0.0, "per frame: the line stalls; this and later frames wait, in order")
    stall_ms: float = help_field(50.0, "how long a stall lasts")
    directions: str = help_field("fw_to_host", "one of DIRECTIONS")
    # --- firmware sensors and motors ---
    sensor_dropout_prob: float = help_field(0.0, "per STATE: encoders and IMU hold last values, flag set")
    stuck_motor: int = help_field(-1, "actuator index that jams (holds its position); -1 = none")
    stuck_after_s: float = help_field(0.0, "firmware time at which it jams")
    seed: int = help_field(0, "seed of the fault injection (the virtual robot sets it from its own seed)")

    def validate(self) -> "FaultConfig":
        for f in fields(self):
            if f.name.endswith("_prob"):
                p = getattr(self, f.name)
                if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                    raise FaultConfigError(f"{f.name}={p!r}: a probability must be in [0, 1]")
        if self.directions not in DIRECTIONS:
            raise FaultConfigError(f"directions={self.directions!r}: expected one of {DIRECTIONS}")
        for name in ("delay_ms", "stall_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise FaultConfigError(f"{name}={value!r}: must be finite and >= 0")
        if self.stuck_motor < -1:
            raise FaultConfigError(f"stuck_motor={self.stuck_motor}: -1 (none) or an actuator index")
        return self

    def line_faults_enabled(self) -> bool:
        return any(
            getattr(self, name) > 0
            for name in (
                "corrupt_byte_prob",
                "drop_byte_prob",
                "duplicate_byte_prob",
                "drop_frame_prob",
                "duplicate_frame_prob",
                "delay_frame_prob",
                "stall_prob",
            )
        )

    def applies_to(self, direction: str) -> bool:
        return self.line_faults_enabled() and self.directions in (direction, "both")


@dataclass
class ChannelFaultCounters:
    frames_in: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    frames_delayed: int = 0
    stalls: int = 0
    bytes_corrupted: int = 0
    bytes_dropped: int = 0
    bytes_duplicated: int = 0


class ChannelFaults:
    """Damages one direction of the serial line, frame by frame.

    `frame(encoded, now_s)` returns the bytes to put on the wire now (possibly nothing, possibly
    the frame twice, possibly an earlier delayed frame that fell due). `feed(chunk, now_s)` does
    the same for a raw byte stream by cutting it at 0x00 delimiters first. Time is whatever
    clock the caller runs on (wall clock in real time, simulated time in lock-step).
    """

    def __init__(self, config: FaultConfig, stream_id: int) -> None:
        self.config = config.validate()
        # Independent, reproducible streams per direction: (seed, stream_id) -> generator.
        self._rng = np.random.default_rng([config.seed, stream_id])
        self._pending = bytearray()  # partial frame for feed()
        self._delayed: list[tuple[float, int, bytes]] = []  # heap of (due time, order, frame)
        self._order = itertools.count()
        self._stalled_until = -math.inf
        self.counters = ChannelFaultCounters()

    def frame(self, encoded: bytes, now_s: float) -> bytes:
        cfg = self.config
        out = bytearray(self.release_due(now_s))
        self.counters.frames_in += 1
        rng = self._rng
        if cfg.drop_frame_prob and rng.random() < cfg.drop_frame_prob:
            self.counters.frames_dropped += 1
            return bytes(out)
        copies = 1
        if cfg.duplicate_frame_prob and rng.random() < cfg.duplicate_frame_prob:
            self.counters.frames_duplicated += 1
            copies = 2
        due = None
        if cfg.stall_prob and now_s >= self._stalled_until and rng.random() < cfg.stall_prob:
            self.counters.stalls += 1
            self._stalled_until = now_s + cfg.stall_ms * 1e-3
        if now_s < self._stalled_until:
            due = self._stalled_until  # FIFO behind the stall: same due time, insertion order
        if cfg.delay_frame_prob and rng.random() < cfg.delay_frame_prob:
            self.counters.frames_delayed += 1
            due = max(now_s if due is None else due, now_s + cfg.delay_ms * 1e-3)
        if due is not None:
            for _ in range(copies):
                heapq.heappush(self._delayed, (due, next(self._order), self._damage(encoded)))
            return bytes(out)
        for _ in range(copies):
            out += self._damage(encoded)
        return bytes(out)

    def feed(self, chunk: bytes, now_s: float) -> bytes:
        """Damage a raw byte stream: complete frames go through `frame`, a tail waits for more."""
        self._pending += chunk
        out = bytearray()
        while True:
            end = self._pending.find(FRAME_DELIMITER)
            if end < 0:
                break
            encoded = bytes(self._pending[: end + 1])
            del self._pending[: end + 1]
            out += self.frame(encoded, now_s)
        if not out:
            out += self.release_due(now_s)
        return bytes(out)

    def release_due(self, now_s: float) -> bytes:
        """Delayed frames whose time has come, oldest first."""
        out = bytearray()
        while self._delayed and self._delayed[0][0] <= now_s:
            out += heapq.heappop(self._delayed)[2]
        return bytes(out)

    def _damage(self, encoded: bytes) -> bytes:
        cfg = self.config
        data = np.frombuffer(encoded, dtype=np.uint8).copy()
        if cfg.corrupt_byte_prob:
            hit = self._rng.random(data.size) < cfg.corrupt_byte_prob
            n_hit = int(hit.sum())
            if n_hit:
                bits = self._rng.integers(0, 8, size=n_hit, dtype=np.uint8)
                data[hit] ^= np.left_shift(np.uint8(1), bits).astype(np.uint8)
                self.counters.bytes_corrupted += n_hit
        if cfg.drop_byte_prob:
            keep = self._rng.random(data.size) >= cfg.drop_byte_prob
            self.counters.bytes_dropped += int(data.size - keep.sum())
            data = data[keep]
        if cfg.duplicate_byte_prob:
            repeats = 1 + (self._rng.random(data.size) < cfg.duplicate_byte_prob)
            self.counters.bytes_duplicated += int(repeats.sum() - data.size)
            data = np.repeat(data, repeats)
        return data.tobytes()


class SensorFaults:
    """Decides, per STATE, whether the sensors drop out (the caller holds the last values)."""

    def __init__(self, config: FaultConfig, stream_id: int = 7) -> None:
        self.config = config.validate()
        self._rng = np.random.default_rng([config.seed, stream_id])
        self.dropouts = 0

    def dropout_now(self) -> bool:
        p = self.config.sensor_dropout_prob
        if p and self._rng.random() < p:
            self.dropouts += 1
            return True
        return False

    def stuck_motor_at(self, firmware_time_s: float) -> int:
        """Index of the jammed actuator at this firmware time, or -1."""
        cfg = self.config
        if cfg.stuck_motor >= 0 and firmware_time_s >= cfg.stuck_after_s:
            return cfg.stuck_motor
        return -1

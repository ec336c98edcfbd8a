"""Fixed-rate pacing by absolute deadlines, with overrun accounting and live timing stats.

Why absolute deadlines: `sleep(dt)` after the work accumulates the work time and the OS wake-up
latency into the period, so the rate drifts and the period error grows with load. Here tick k is
due at `start + k * period`; we sleep until just before it and spin the rest (the OS wakes us
late by 50-100 us, spinning absorbs it). A tick that ends past its successor's deadline does not
burst to catch up: the missed slots are counted and the loop resumes at the next free slot
(ros2_control `sleeping_policies.cpp`).

The time source is a `Clock` so the same scheduler runs on the wall clock, on a fake clock in
tests (pacing checked exactly), and in lock-step with a simulated robot (`LockStepClock`).

Usage::

    sched = DeadlineScheduler(period_s=0.005)
    sched.start()
    while running:
        tick = sched.wait_next()   # returns at the deadline of the next free slot
        ...read -> compute -> write...
        sched.tick_done()          # records the tick's compute time
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

# Sleep until this long before the deadline, then spin. Linux wakes a sleeping thread typically
# 50-100 us late on an idle machine; 300 us covers most of a loaded 2-core VM's tail.
DEFAULT_SPIN_S = 300e-6
# Overrun warnings are throttled to one per this many seconds (ros2_control does the same).
OVERRUN_WARN_INTERVAL_S = 1.0


class Clock(Protocol):
    """A monotonic time source that can wait until an absolute time."""

    def now(self) -> float:
        """Seconds, monotonic."""

    def wait_until(self, t: float) -> None:
        """Return at (or as soon as possible after) absolute time `t`."""


class MonotonicClock:
    """The wall clock: `perf_counter`, sleep to just before the deadline, then spin."""

    def __init__(self, spin_s: float = DEFAULT_SPIN_S) -> None:
        self.spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    def wait_until(self, t: float) -> None:
        remaining = t - time.perf_counter()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.perf_counter() < t:
            pass


class FakeClock:
    """A virtual clock for tests: time moves only when told (`advance`) or waited on."""

    def __init__(self, t0: float = 0.0, wake_latency_s: float = 0.0) -> None:
        self.t = t0
        self.wake_latency_s = wake_latency_s

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt

    def wait_until(self, t: float) -> None:
        if t > self.t:
            self.t = t + self.wake_latency_s


class LockStepClock(FakeClock):
    """Virtual time that jumps straight to each deadline: one tick per simulated period.

    For running the loop against a lock-step virtual robot, which advances its physics by one
    control period per command; wall time does not matter, so nothing sleeps.
    """


class RollingStats:
    """A fixed window of the last N samples; O(1) add, percentiles computed on demand.

    Cheap enough for the loop (one array store per sample); `summary()` sorts the window and is
    meant for the 1 Hz status line, not for every tick.
    """

    def __init__(self, window: int = 2000) -> None:
        self._buf = np.zeros(window, dtype=np.float64)
        self._n = 0  # total samples ever added
        self.max_ever = 0.0

    def add(self, x: float) -> None:
        self._buf[self._n % self._buf.size] = x
        self._n += 1
        if x > self.max_ever:
            self.max_ever = x

    @property
    def count(self) -> int:
        return self._n

    def values(self) -> np.ndarray:
        return self._buf[: min(self._n, self._buf.size)].copy()

    def summary(self) -> dict[str, float]:
        """p50 / p99 / max over the window (NaN when empty) and max over the whole run."""
        v = self.values()
        if v.size == 0:
            return {"p50": math.nan, "p99": math.nan, "max": math.nan, "max_ever": math.nan}
        p50, p99 = np.percentile(v, [50, 99])
        return {"p50": float(p50), "p99": float(p99), "max": float(v.max()), "max_ever": self.max_ever}


@dataclass
class TickInfo:
    """When a tick ran, against when it was due."""

    index: int  # slot number k since start (skipped slots are not reused)
    deadline: float  # start + k * period
    t_start: float  # clock time the tick began
    lateness_s: float  # t_start - deadline (>= 0 on the wall clock)
    missed_before: int  # slots skipped just before this tick (0 normally)


class DeadlineScheduler:
    """Absolute-deadline pacing, overrun skipping, and period-error / compute-time stats."""

    def __init__(
        self,
        period_s: float,
        clock: Clock | None = None,
        late_tolerance_s: float | None = None,
        stats_window: int = 2000,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self.clock: Clock = clock or MonotonicClock()
        # A tick that can still start within this much of its deadline runs late rather than
        # being skipped; later than that it counts as missed. Default: a quarter period.
        self.late_tolerance_s = period_s / 4 if late_tolerance_s is None else late_tolerance_s
        self.period_error = RollingStats(stats_window)  # |actual period - nominal|, seconds
        self.lateness = RollingStats(stats_window)  # tick start - deadline, seconds
        self.compute = RollingStats(stats_window)  # tick start -> tick_done, seconds
        self.missed_deadlines = 0  # slots skipped because the loop was late
        self.overrun_ticks = 0  # ticks whose compute ran past the next deadline
        self.ticks = 0
        self._start = 0.0
        self._k = -1
        self._last_start: float | None = None
        self._tick: TickInfo | None = None
        self._last_overrun_warn = -math.inf
        self._recent_missed: list[int] = []  # tick indices of recent misses (burst detection)

    def start(self) -> None:
        """Anchor slot 0 at now; the first `wait_next` returns immediately."""
        self._start = self.clock.now()
        self._k = -1
        self._last_start = None

    def deadline_of(self, k: int) -> float:
        return self._start + k * self.period_s

    def wait_next(self) -> TickInfo:
        """Wait for the next free slot's deadline and return its timing."""
        k = self._k + 1
        now = self.clock.now()
        missed = 0
        if now > self.deadline_of(k) + self.late_tolerance_s:
            # Late for slot k: skip every slot whose deadline has passed (no burst).
            k_next = math.floor((now - self._start) / self.period_s) + 1
            missed = k_next - k
            k = k_next
            self._note_missed(k, missed, now)
        deadline = self.deadline_of(k)
        if now < deadline:
            self.clock.wait_until(deadline)
        t_start = self.clock.now()
        self._k = k
        if self._last_start is not None:
            self.period_error.add(abs((t_start - self._last_start) - self.period_s * (1 + missed)))
        self._last_start = t_start
        lateness = t_start - deadline
        self.lateness.add(max(0.0, lateness))
        self._tick = TickInfo(k, deadline, t_start, lateness, missed)
        self.ticks += 1
        return self._tick

    def tick_done(self) -> float:
        """Record the compute time of the current tick; returns it in seconds."""
        if self._tick is None:
            return 0.0
        now = self.clock.now()
        dt = now - self._tick.t_start
        self.compute.add(dt)
        if now > self.deadline_of(self._tick.index + 1):
            self.overrun_ticks += 1
        return dt

    def missed_in_last(self, n_slots: int) -> int:
        """Slots missed among the last `n_slots` slots (for the safety FSM's overrun-burst check)."""
        lo = self._k - n_slots
        self._recent_missed = [i for i in self._recent_missed if i > lo]
        return len(self._recent_missed)

    def _note_missed(self, k: int, missed: int, now: float) -> None:
        self.missed_deadlines += missed
        self._recent_missed.extend(range(k - missed, k))
        if len(self._recent_missed) > 1000:  # bounded even if nobody asks
            del self._recent_missed[:-1000]
        if now - self._last_overrun_warn >= OVERRUN_WARN_INTERVAL_S:
            self._last_overrun_warn = now
            log.warning(
                "loop overrun: skipped %d slot(s) before tick %d (%d missed in total)",
                missed, k, self.missed_deadlines,
            )

    def stats(self) -> dict[str, object]:
        """Timing figures for the status line and the stats file (milliseconds)."""
        def ms(d: dict[str, float]) -> dict[str, float]:
            return {key: round(v * 1e3, 4) for key, v in d.items()}

        elapsed = self.clock.now() - self._start
        return {
            "ticks": self.ticks,
            "rate_hz": round(self.ticks / elapsed, 2) if elapsed > 0 else 0.0,
            "missed_deadlines": self.missed_deadlines,
            "overrun_ticks": self.overrun_ticks,
            "period_error_ms": ms(self.period_error.summary()),
            "lateness_ms": ms(self.lateness.summary()),
            "compute_ms": ms(self.compute.summary()),
        }

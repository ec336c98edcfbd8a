"""Pacing, overrun skipping and stats of the deadline scheduler, on a fake clock (exact)."""

from __future__ import annotations

import logging

import pytest

from onboard.realtime import apply_realtime
from onboard.scheduler import DeadlineScheduler, FakeClock, LockStepClock, MonotonicClock, RollingStats

PERIOD = 0.005


def run_ticks(sched: DeadlineScheduler, clock: FakeClock, work_s: list[float]) -> list:
    ticks = []
    for w in work_s:
        t = sched.wait_next()
        clock.advance(w)
        sched.tick_done()
        ticks.append(t)
    return ticks


def test_ticks_start_on_absolute_deadlines_regardless_of_work_time():
    clock = FakeClock(t0=100.0)
    sched = DeadlineScheduler(PERIOD, clock)
    sched.start()
    ticks = run_ticks(sched, clock, [0.001, 0.003, 0.0049, 0.0])
    assert [t.index for t in ticks] == [0, 1, 2, 3]
    assert [t.t_start for t in ticks] == pytest.approx([100.0, 100.005, 100.010, 100.015])
    assert sched.missed_deadlines == 0
    assert sched.compute.summary()["max"] == pytest.approx(0.0049)


def test_overrun_skips_to_next_free_slot_without_burst(caplog):
    clock = FakeClock()
    sched = DeadlineScheduler(PERIOD, clock)
    sched.start()
    with caplog.at_level(logging.WARNING, logger="onboard.scheduler"):
        # Tick 0 takes 2.2 periods: slots 1 and 2 are missed, the next tick runs at slot 3.
        ticks = run_ticks(sched, clock, [0.011, 0.001, 0.001])
    assert [t.index for t in ticks] == [0, 3, 4]
    assert ticks[1].t_start == pytest.approx(0.015)
    assert ticks[1].missed_before == 2
    assert sched.missed_deadlines == 2
    assert sched.overrun_ticks == 1
    assert sched.missed_in_last(10) == 2
    assert "overrun" in caplog.text


def test_small_lateness_runs_late_instead_of_skipping():
    clock = FakeClock()
    sched = DeadlineScheduler(PERIOD, clock, late_tolerance_s=0.001)
    sched.start()
    ticks = run_ticks(sched, clock, [0.0055, 0.001])  # 0.5 ms late for slot 1: within tolerance
    assert [t.index for t in ticks] == [0, 1]
    assert ticks[1].lateness_s == pytest.approx(0.0005)
    assert sched.missed_deadlines == 0


def test_overrun_warning_is_throttled_to_once_per_second(caplog):
    clock = FakeClock()
    sched = DeadlineScheduler(PERIOD, clock)
    sched.start()
    with caplog.at_level(logging.WARNING, logger="onboard.scheduler"):
        run_ticks(sched, clock, [0.011] * 20)  # 20 overruns within ~0.3 s
    assert sum("overrun" in r.message for r in caplog.records) == 1
    assert sched.missed_deadlines == 38  # counted when the next slot is chosen: 19 waits x 2


def test_period_error_reflects_wake_up_latency():
    clock = FakeClock(wake_latency_s=0.0002)
    sched = DeadlineScheduler(PERIOD, clock)
    sched.start()
    run_ticks(sched, clock, [0.001] * 5)
    s = sched.stats()
    assert s["lateness_ms"]["max"] == pytest.approx(0.2)
    assert s["period_error_ms"]["max"] < 0.21


def test_lock_step_clock_never_sleeps_and_advances_one_period_per_tick():
    clock = LockStepClock()
    sched = DeadlineScheduler(PERIOD, clock)
    sched.start()
    ticks = run_ticks(sched, clock, [0.0] * 100)
    assert ticks[-1].t_start == pytest.approx(99 * PERIOD)
    assert sched.missed_deadlines == 0


def test_monotonic_clock_waits_until_deadline():
    clock = MonotonicClock()
    t = clock.now() + 0.002
    clock.wait_until(t)
    assert clock.now() >= t


def test_rolling_stats_window_and_ever_max():
    s = RollingStats(window=4)
    for x in [9.0, 1.0, 2.0, 3.0, 4.0]:
        s.add(x)
    summary = s.summary()
    assert summary["max"] == 4.0 and summary["max_ever"] == 9.0
    assert s.count == 5


def test_rejects_non_positive_period():
    with pytest.raises(ValueError, match="period_s"):
        DeadlineScheduler(0.0)


def test_realtime_requests_report_what_was_refused():
    # Unprivileged here: FIFO is normally refused; whichever way, the result says what happened.
    r = apply_realtime(fifo_priority=10, cpus=(0,), lock_memory=False)
    assert (r.fifo_priority == 10) != ("fifo_priority" in r.refused)
    assert (r.cpus == (0,)) != ("cpus" in r.refused)
    import os
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def test_helper_threads_get_fifo_by_name_or_report_refusal():
    # In a child process: SCHED_FIFO on pytest's own threads would outlive this test.
    import subprocess
    import sys

    code = """
import os, threading
from onboard.realtime import raise_helper_threads
ev = threading.Event()
ts = [threading.Thread(target=ev.wait, name=n) for n in ("serial-reader", "streamer")]
for t in ts: t.start()
refused = raise_helper_threads(10, {"serial-": 12})
out = []
for t in ts:
    out.append("refused" if t.name in refused else str(os.sched_getparam(t.native_id).sched_priority))
ev.set()
print(",".join(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("12,10", "refused,refused")

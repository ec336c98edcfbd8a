"""Onboard loop timing: absolute-deadline scheduler vs a naive sleep(dt) loop, streaming on.

Setup (all on this machine): the virtual robot in real time in a child process (MuJoCo, its own
pty), a dev learner ROUTER in another child process that acks every batch and pushes a new
policy every few seconds, and this process running the onboard app: ONNX policy (2x256 MLP,
exploring), safety, recorder, streamer thread, status thread. Per rate, the same tick work runs
twice in the same run: paced by `DeadlineScheduler` and by `sleep(dt)` after the work.

Figures: period error |t_k - t_{k-1} - dt| p50/p99/max, missed deadlines (slots skipped by the
scheduler; for the naive loop, periods longer than 1.25 dt), tick compute p99, achieved rate,
and swap latency (POLICY received by the streamer -> first action of the new policy).

    python benchmarks/bench_loop.py                # 200 and 500 Hz, 15 s each way
    python benchmarks/bench_loop.py --seconds 60 --rates 200
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onboard.app import OnboardApp  # noqa: E402
from onboard.config import OnboardConfig  # noqa: E402
from devkit.dev_policies import mlp_policy_bytes, sha256_hex  # noqa: E402
from onboard.policy import PolicyCandidate  # noqa: E402
from onboard.safety import Mode  # noqa: E402
from onboard.scheduler import RollingStats  # noqa: E402
from protocol.logs import setup_logging  # noqa: E402

BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0  # stand_still linear law, action units


class HeldUntilDriven:
    """The plant on a stand: it stays at its reset pose until the first non-zero torque command.

    Why: unpowered, the virtual robot falls within 0.3 s of starting, long before the loop has
    connected, and the loop (rightly) never stands a fallen robot up by itself. A person holds
    the real robot until the controller takes over; this is that person.
    """

    def __init__(self, plant) -> None:
        self._plant = plant
        self._held = True

    def __getattr__(self, name):
        return getattr(self._plant, name)

    def reset(self):
        return self._plant.reset(pitch_rad=0.0)

    def step(self, cmd):
        if self._held and np.any(np.asarray(cmd.tau_ff) != 0):
            self._held = False
        return self._plant.reset(pitch_rad=0.0) if self._held else self._plant.step(cmd)


def virtual_robot_process(device: str, priority: int, stop: mp.Event) -> None:
    """Child process: the real-time virtual robot (nominal profile) on a pty, held until driven."""
    from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig, make_plant

    if priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as e:
            print(f"virtual robot: FIFO refused ({e})", file=sys.stderr)
    setup_logging("WARNING")
    cfg = VirtualRobotConfig(profile="nominal", device_link=device)
    vr = VirtualRobot(cfg, plant=HeldUntilDriven(make_plant(cfg))).start()
    stop.wait()
    vr.stop()


def learner_process(endpoint: str, push_every_s: float, stop: mp.Event, control_hz: float) -> None:
    """Child process: ack everything, push policy v2, v3, ... every `push_every_s`."""
    from devkit.dev_learner import DevLearner

    learner = DevLearner(endpoint)
    version, next_push = 2, time.monotonic() + push_every_s
    while not stop.wait(0.05):
        if time.monotonic() >= next_push:
            learner.push_policy(version, mlp_policy_bytes(4, 1, version=version, hidden=256, seed=version,
                                                         linear_gain=BALANCE_GAIN, control_hz=control_hz))
            version += 1
            next_push += push_every_s
    learner.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def naive_run(app: OnboardApp, rate: float, seconds: float) -> dict[str, float]:
    """The loop most people write first: work, then sleep(dt)."""
    dt = 1.0 / rate
    err, comp = RollingStats(int(rate * seconds) + 10), RollingStats(int(rate * seconds) + 10)
    late = 0
    end = time.perf_counter() + seconds
    last = None
    while True:
        t = time.perf_counter()
        if t >= end:
            break
        if last is not None:
            err.add(abs(t - last - dt))
            late += (t - last) > 1.25 * dt
        last = t
        app.loop.step()
        comp.add(time.perf_counter() - t)
        time.sleep(dt)
    return summarize(err, comp, late, err.count + 1, seconds)


def summarize(err: RollingStats, comp: RollingStats, missed: int, ticks: int, seconds: float) -> dict[str, float]:
    e, c = err.summary(), comp.summary()
    return {"err_p50": e["p50"] * 1e3, "err_p99": e["p99"] * 1e3, "err_max": e["max_ever"] * 1e3,
            "missed": missed, "tick_p99": c["p99"] * 1e3, "rate": ticks / seconds}


def scheduled_run(app: OnboardApp, seconds: float) -> dict[str, float]:
    n = int(seconds / app.scheduler.period_s) + 10
    sched = app.scheduler
    from onboard.scheduler import RollingStats as RS

    sched.period_error, sched.compute, sched.lateness = RS(n), RS(n), RS(n)
    sched.missed_deadlines, sched.ticks = 0, 0
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    app.run(stop)
    return summarize(sched.period_error, sched.compute, sched.missed_deadlines, sched.ticks, seconds)


def bench_rate(rate: float, seconds: float, device: str, endpoint: str, spool: str, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    cfg = OnboardConfig()
    cfg.run.gil_switch_interval_us = args.gil_switch_us
    cfg.run.fifo_priority = args.fifo_priority
    cfg.run.cpus = args.cpus
    cfg.run.lock_memory = args.lock_memory
    cfg.run.helper_priority = args.helper_priority
    cfg.run.rate_hz = rate
    cfg.run.explore = True
    cfg.run.stats_file = ""
    cfg.run.status_interval_s = 5.0
    cfg.link.url = device
    cfg.link.open_timeout_s = 60.0  # the virtual robot process is still importing mujoco
    cfg.learner.endpoint = endpoint
    cfg.learner.spool_dir = spool
    cfg.policy.inference_budget_ms = 5.0
    cfg.safety.stale_state_ms = 100.0
    app = OnboardApp(cfg)
    first = mlp_policy_bytes(4, 1, version=1, hidden=256, linear_gain=BALANCE_GAIN, control_hz=rate)
    # Validated before the link opens: the unpowered virtual robot starts falling at once.
    app.loop.activate_policy(app.loader.validate_now(PolicyCandidate(1, sha256_hex(first), first)))
    app.start()
    try:
        scheduled_run(app, 1.0)  # warm-up: connect, first heartbeats, caches; not measured
        if app.fsm.mode is not Mode.POLICY:
            print(f"warning: {rate:.0f} Hz: robot not under policy control after warm-up ({app.fsm.mode.value},"
                  f" {list(app.fsm.history)[-1:]}); figures are for a lighter tick", file=sys.stderr)
        app.loop.swap_latency = RollingStats(100)
        swaps_before = app.loop.swaps
        sched = scheduled_run(app, seconds)
        mode_after = app.fsm.mode.value
        why = [h["reason"] for h in app.fsm.history if h["to"] == "DAMPING"]
        swaps = app.loop.swap_latency.values() * 1e3
        info = {"swaps": app.loop.swaps - swaps_before, "swap_p50": float(np.median(swaps)) if swaps.size else float("nan"),
                "swap_max": float(swaps.max()) if swaps.size else float("nan"), "mode": mode_after + (f" ({why[0]})" if why else ""),
                "rows": app.recorder.rows_recorded, "acked": app.streamer.counters.rows_acked}
        naive = naive_run(app, rate, seconds)
        info["no_stream"] = None
        if args.streamer_off_too:
            # Thread vs none: the streamer thread stopped, batches go nowhere. A streamer in
            # its own process could at best reach this (it removes the streamer's GIL share).
            app.streamer.stop()
            app.recorder.sink = lambda batch: True
            info["no_stream"] = scheduled_run(app, seconds)
            info["no_stream_mode"] = app.fsm.mode.value
    finally:
        app.close(drain_s=1.0)
    return sched, naive, info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="duration of each run (each rate, each pacing)")
    p.add_argument("--rates", default="200,500", help="comma-separated loop rates in Hz")
    p.add_argument("--push-every-s", type=float, default=3.0, help="the learner pushes a new policy this often")
    p.add_argument("--gil-switch-us", type=float, default=500.0, help="sys.setswitchinterval for the robot process (0: Python's 5000)")
    p.add_argument("--fifo-priority", type=int, default=0,
                   help="SCHED_FIFO priority of the loop thread (and mlockall); the virtual robot gets it minus 1; 0: none")
    p.add_argument("--cpus", default="", help="pin the loop thread to these CPUs, e.g. '1'")
    p.add_argument("--lock-memory", action="store_true", help="mlockall the robot process")
    p.add_argument("--helper-priority", type=int, default=0,
                   help="SCHED_FIFO priority of the robot process's helper threads (below the loop's); 0: none")
    p.add_argument("--streamer-off-too", action="store_true",
                   help="after the two runs, a third deadline run with the streamer thread stopped (thread vs none)")
    args = p.parse_args()
    setup_logging("WARNING")
    tmp = tempfile.mkdtemp(prefix="bench_loop_")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        # A fresh virtual robot per rate: unpowered, the robot falls within a few seconds, and
        # the loop (rightly) stays PASSIVE with a fallen robot. The link waits for the device.
        device = os.path.join(tmp, f"tty{rate:.0f}")
        vr_stop = ctx.Event()
        vr = ctx.Process(target=virtual_robot_process, args=(device, max(args.fifo_priority - 1, 0), vr_stop), daemon=True)
        vr.start()
        learner = ctx.Process(target=learner_process, args=(endpoint, args.push_every_s, stop, rate), daemon=True)
        learner.start()
        try:
            sched, naive, info = bench_rate(rate, args.seconds, device, endpoint, os.path.join(tmp, f"spool{rate:.0f}"), args)
            rows.append((rate, sched, naive, info))
        finally:
            stop.set()
            learner.join(5)
            stop.clear()
            vr_stop.set()
            vr.join(10)
    print(f"\nonboard loop, {args.seconds:.0f} s per run, streaming on, policy pushed every {args.push_every_s} s,"
          f" GIL switch interval {args.gil_switch_us or 5000:.0f} us, FIFO priority {args.fifo_priority or 'none'},"
          f" helpers {args.helper_priority or 'none'}, CPUs {args.cpus or 'any'}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'rate':>5} {'pacing':>9} {'err p50':>8} {'err p99':>8} {'err max':>8} {'missed':>7} {'tick p99':>9} {'achieved':>9}  (ms, Hz)")
    for rate, sched, naive, info in rows:
        runs = [("deadline", sched), ("sleep(dt)", naive)]
        if info["no_stream"] is not None:
            runs.append(("no stream", info["no_stream"]))
        for name, r in runs:
            print(f"{rate:5.0f} {name:>9} {r['err_p50']:8.3f} {r['err_p99']:8.3f} {r['err_max']:8.3f} {r['missed']:7d}"
                  f" {r['tick_p99']:9.3f} {r['rate']:9.1f}")
        print(f"      swaps {info['swaps']} (received -> first action p50 {info['swap_p50']:.2f} ms, max {info['swap_max']:.2f} ms);"
              f" mode after the deadline run {info['mode']}; transitions {info['rows']}, acked {info['acked']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HIL harness speed: lock-step onboard ticks/s live vs through the tap vs replayed; decode; gap report.

Prints, in one run (the machine is shared and noisy: the three lock-step set-ups are interleaved
in rounds so load noise hits all of them, and their ratios are printed side by side):
  1. onboard (classical controller, lock-step) ticks/s against
     a. the virtual robot directly, b. the virtual robot through the recording tap,
     c. the sensor replayer playing (b)'s recording (bit-identity checked each round);
  2. decoding a recording into frames: records/s and MB/s;
  3. the gap report: model steps/s of the open-loop windows vs raw WheelLeggedSim.step.

Usage: .venv/bin/python benchmarks/bench_hil.py [--ticks 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firmware_bridge.hil.compare import compare_host_streams  # noqa: E402
from firmware_bridge.hil.replayer import SensorReplayer  # noqa: E402
from firmware_bridge.hil.tap import SerialTap  # noqa: E402
from firmware_bridge.hil.recordings import decode_recording, recorded_steps  # noqa: E402
from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig  # noqa: E402
from onboard.app import OnboardApp  # noqa: E402
from onboard.config import OnboardConfig  # noqa: E402
from protocol.logs import setup_logging  # noqa: E402


def onboard_ticks_per_s(url: str, tmp: Path, ticks: int) -> float:
    cfg = OnboardConfig()
    cfg.run.lockstep, cfg.run.stream = True, False
    cfg.run.stats_file = str(tmp / "stats.json")
    cfg.safety.stale_state_ms = 2000.0  # see docs/hil.md: wall-clock staleness in lock-step
    cfg.link.url = url
    app = OnboardApp(cfg)
    try:
        app.start()
        t0 = time.perf_counter()
        app.run(threading.Event(), max_ticks=ticks)
        dt = time.perf_counter() - t0
    finally:
        app.close(drain_s=0.0)
    return ticks / dt


def one_round(tmp: Path, ticks: int, k: int) -> tuple[float, float, float, bool, Path]:
    cfg = VirtualRobotConfig(profile="nominal", device_link=None, lockstep=True)
    with VirtualRobot(cfg) as robot:
        live = onboard_ticks_per_s(robot.device, tmp, ticks)
    rec = tmp / f"tap{k}.mcap"
    with VirtualRobot(VirtualRobotConfig(profile="nominal", device_link=None, lockstep=True)) as robot:
        with SerialTap(robot.device, rec, drop_repeated_states=True) as tap:
            tapped = onboard_ticks_per_s(tap.device, tmp, ticks)
            time.sleep(0.05)
    out = tmp / f"replayed{k}.mcap"
    with SensorReplayer(rec, lockstep=True, record_path=out) as replayer:
        replayed = onboard_ticks_per_s(replayer.device, tmp, ticks)
        time.sleep(0.05)
    identical = compare_host_streams(rec, out).identical
    return live, tapped, replayed, identical, rec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ticks", type=int, default=2000, help="onboard ticks per run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three set-ups")
    p.add_argument("--horizon", type=int, default=50, help="gap report window, steps")
    args = p.parse_args()
    setup_logging("ERROR")
    print(f"bench_hil: {platform.node()} {platform.machine()} python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [one_round(tmp, args.ticks, k) for k in range(args.rounds)]
        live, tapped, replayed = (np.array([r[i] for r in rows]) for i in range(3))
        print(f"\n1. onboard lock-step ticks/s ({args.ticks} ticks, {args.rounds} rounds, median [min..max])")
        for name, a in (("virtual robot direct", live), ("virtual robot + tap", tapped), ("replayer", replayed)):
            print(f"   {name:<22}{np.median(a):8.0f}  [{a.min():.0f}..{a.max():.0f}]  x{np.median(a / live):.2f} of direct")
        print(f"   replays bit-identical: {sum(r[3] for r in rows)}/{len(rows)}")

        rec = rows[-1][4]
        size = rec.stat().st_size
        t0 = time.perf_counter()
        decoded = decode_recording(rec)
        dt = time.perf_counter() - t0
        print(f"\n2. decode {decoded.records} records ({size / 1e6:.2f} MB): {decoded.records / dt:,.0f} records/s, "
              f"{size / 1e6 / dt:.1f} MB/s")

        from protocol.robot_types import MotorCommand
        from sim_models.gap_report import GapConfig, gap_report
        from sim_models.robot import WheelLeggedSim

        steps = recorded_steps(decoded)
        t0 = time.perf_counter()
        rep = gap_report(steps.states, steps.commands, GapConfig(profile="nominal", horizon_steps=args.horizon),
                         applied=steps.applied)
        gap_dt = time.perf_counter() - t0
        sim = WheelLeggedSim("legs_locked", profile="nominal")
        cmd = MotorCommand()
        t0 = time.perf_counter()
        for _ in range(rep.steps_compared):
            sim.step(cmd)
        raw_dt = time.perf_counter() - t0
        print(f"\n3. gap report: {rep.windows} windows x {args.horizon} steps in {gap_dt:.3f} s "
              f"({rep.steps_compared / gap_dt:,.0f} steps/s incl. resets, signals, model build); "
              f"raw WheelLeggedSim.step {rep.steps_compared / raw_dt:,.0f} steps/s (x{raw_dt / gap_dt:.2f})")
        print(f"   same-profile pitch RMSE {rep.signals['pitch'].rmse:.2e} rad")
    return 0


if __name__ == "__main__":
    sys.exit(main())

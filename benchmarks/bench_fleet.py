"""A fleet on one learner (issue 16): 1, 4, 8, 16 lock-step virtual robots streaming to one
learner/serve.py that trains H2O and pushes every export to all of them.

    .venv/bin/python benchmarks/bench_fleet.py                       # 1,4,8,16 robots, 60 s each
    .venv/bin/python benchmarks/bench_fleet.py --sizes 1,4 --phase-s 30

Per fleet size, one fresh run (`learner.fleet.Fleet`: one serve.py, N onboard/run.py each with its
own MuJoCo virtual robot, CURVE key, profile and folder; on-robot trials off so every export
drives at once). After every robot has streamed and the trainer has started, a measuring phase
of `--phase-s` seconds:

- ingest rows/s: growth of the store's row count (metrics.jsonl `store_rows`) over the phase;
- trainer updates/s: growth of the update count over the phase; "slowdown" is against 1 robot;
- push latency per robot: learner log "published policy vN" to that robot's log
  "policy vN active" (same clock, ms resolution), p99 over the versions it got in the phase;
- learner RSS: VmRSS of the serve.py process (and with its sim worker) at the end of the phase;
- lost / duplicated: after the stop (robots drain first), per robot, rows recorded and ACKed by
  the robot against the rows of its stream in the learner's store (`Fleet.accounting`).

All robots and the learner share this machine's cores: on a small machine the robots' own
simulation and control loops take CPU from the trainer, which is part of what is measured.

`--light` measures the learner's own cost of a fleet instead: each robot is the real onboard
`Streamer` (own key, CURVE DEALER, fsync'd spool, HELLO, heartbeats, POLICY in, POLICY_RESULT
out) fed synthetic rows at the control rate (200 rows/s, 50-row batches) by one pacing thread,
all robots in this benchmark's process (a few percent of a core for 16), no MuJoCo or ONNX. Push
latency there is "published" to the robot's receipt of the POLICY (no validation).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner.fleet import Fleet, FleetConfig  # noqa: E402
from learner.service.status import read_jsonl  # noqa: E402
from learner.service.tasks import task_info  # noqa: E402
from onboard.batcher import empty_batch  # noqa: E402
from onboard.streamer import Streamer, StreamerConfig  # noqa: E402
from protocol.messages import Hello, schema_hash  # noqa: E402
from protocol.logs import setup_logging  # noqa: E402

log = logging.getLogger("bench_fleet")
TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
SERVE_ARGS = ("--pretrain-updates 0 --publish-gate-steps 0 --export-every-updates 1000000 --export-every-s 10 "
              "--checkpoint-every-s 0 --status-every-s 1 --min-real-rows 256 --warmup-sim-steps 500")


def _stamps(path: Path, pattern: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        m, t = re.search(pattern, line), TS.match(line)
        if m and t:
            out.setdefault(int(m.group(1)), datetime.strptime(t.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _children(pid: int) -> list[int]:
    """Child processes of every thread of `pid` (the sim workers are started by the trainer
    thread, so /proc/<pid>/task/<pid>/children alone misses them)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _at(rows: list[dict], t: float) -> dict:
    """The last metrics row at or before unix time t."""
    before = [r for r in rows if r["t"] <= t]
    return before[-1] if before else rows[0]


def bench_size(n: int, phase_s: float, base: Path) -> dict:
    cfg = FleetConfig(robots=n, run_dir=str(base / f"fleet{n}"), profiles="moderate", serve_args=SERVE_ARGS,
                      robot_args="--trials.enabled false", drain_s=60.0).validate()
    fleet = Fleet(cfg)
    t_phase0 = t_phase1 = 0.0
    rss = rss_all = float("nan")
    try:
        fleet.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # every robot streams and the trainer updates
            fleet.check_alive()
            st = fleet.status()
            if st and st.get("updates", 0) > 0 and all(st["robots"].get(r, {}).get("rows", 0) > 0
                                                       for r in fleet.robot_ids):
                break
            time.sleep(1.0)
        else:
            raise RuntimeError(f"{n} robots: not all streaming within 300 s: {fleet.status()}")
        t_phase0 = time.time()
        while time.time() - t_phase0 < phase_s:
            fleet.check_alive()
            time.sleep(1.0)
        t_phase1 = time.time()
        learner_pid = fleet.children.procs[0][1].pid
        rss = _rss_mb(learner_pid)
        rss_all = rss + sum(_rss_mb(c) for c in _children(learner_pid))
    finally:
        fleet.stop()
    rows = read_jsonl(fleet.learner_dir / "metrics.jsonl")
    a, b = _at(rows, t_phase0), _at(rows, t_phase1)
    dt = max(b["t"] - a["t"], 1e-9)
    published = _stamps(fleet.run_dir / "learner.log", r"published policy v(\d+)")
    push_p99 = {}
    for rid in fleet.robot_ids:
        active = _stamps(fleet.robot_dir(rid) / f"{rid}.log", r"policy v(\d+) active")
        lat = [(active[v] - published[v]) * 1e3 for v in active if v in published
               and t_phase0 <= published[v] <= t_phase1]
        push_p99[rid] = float(np.percentile(lat, 99)) if lat else float("nan")
    acc = fleet.accounting()
    # lost: recorded by the robot, neither in the store nor still in its spool on disk (the
    # spool holds its stream's unacknowledged tail, acked+1 .., some of it maybe stored already)
    lost = sum(max(0, x["recorded"] - max(x["stored"], x["acked"] + x["spool_rows"])) for x in acc.values()
               if not x["killed_mid_run"])
    dup = sum(0 if s["exactly_once"] else 1 for x in acc.values() for s in x["streams"].values())
    return {"robots": n, "phase_s": round(dt, 1), "ingest_rows_per_s": (b["store_rows"] - a["store_rows"]) / dt,
            "updates_per_s": (b["updates"] - a["updates"]) / dt,
            "push_p99_ms": push_p99, "push_p99_ms_worst": max(push_p99.values()),
            "push_p99_ms_median": float(np.nanmedian(list(push_p99.values()))) if any(
                np.isfinite(list(push_p99.values()))) else float("nan"),
            "learner_rss_mb": rss, "learner_rss_with_sim_worker_mb": rss_all,
            "recorded": sum(x["recorded"] for x in acc.values()), "acked": sum(x["acked"] for x in acc.values()),
            "stored": sum(x["stored"] for x in acc.values()), "spool_left": sum(x["spool_rows"] for x in acc.values()),
            "rows_lost": lost, "streams_not_exactly_once": dup,
            "all_exactly_once": all(x["exactly_once"] and x["spool_rows"] == 0 for x in acc.values())}


class LightRobot:
    """A robot without its loop: the real Streamer, fed synthetic rows by `feed` (see --light)."""

    def __init__(self, rid: str, fleet: Fleet, obs_dim: int, act_dim: int) -> None:
        self.rid, self.obs_dim, self.act_dim = rid, obs_dim, act_dim
        self.version = -1
        self.received: dict[int, float] = {}  # version -> unix time the POLICY arrived
        self.offered = 0  # rows handed to the streamer
        self.refused = 0
        cfg = StreamerConfig(endpoint=fleet.endpoint, robot_id=rid,
                             client_secret_key_file=str(fleet.keys[f"{rid}_secret"]),
                             server_public_key_file=str(fleet.keys["learner_public"]),
                             spool_dir=str(fleet.robot_dir(rid) / "spool"))
        hello = Hello(robot_id=rid, schema_hash=schema_hash(), task=fleet.cfg.task, obs_dim=obs_dim,
                      act_dim=act_dim, control_hz=200.0, software_version="bench_fleet-light")
        self.streamer = Streamer(cfg, lambda: hello, policy_version=lambda: self.version,
                                 on_policy=self._on_policy)
        self.rng = np.random.default_rng(abs(hash(rid)) % 2**32)

    def _on_policy(self, cand) -> None:
        self.received.setdefault(cand.version, time.time())
        self.version = max(self.version, cand.version)
        self.streamer.policy_result(cand.version, True, "")

    def feed(self, n: int) -> None:
        b = empty_batch(n, self.obs_dim, self.act_dim)
        b["obs"][:] = self.rng.normal(0, 0.1, b["obs"].shape)
        b["next_obs"][:] = b["obs"] + self.rng.normal(0, 0.01, b["obs"].shape)
        b["act"][:] = np.clip(self.rng.normal(0, 0.3, b["act"].shape), -1, 1)
        b["rew"][:] = 28.0
        b["truncated"][-1] = (self.offered + n) % 1000 < n  # an episode about every 1000 rows
        b["t_us"][:] = np.arange(self.offered, self.offered + n, dtype=np.uint64) * 5000
        b["source"][:] = 1
        if self.streamer.offer(b):
            self.offered += n
        else:
            self.refused += n


def bench_light(n: int, phase_s: float, base: Path, pairs: int = 0, pair_s: float = 20.0) -> dict:
    cfg = FleetConfig(robots=n, run_dir=str(base / f"light{n}"), serve_args=SERVE_ARGS).validate()
    fleet = Fleet(cfg)
    info = task_info(cfg.task)
    robots: list[LightRobot] = []
    rss = rss_all = float("nan")
    try:
        fleet.start_learner()
        robots = [LightRobot(rid, fleet, info.obs_dim, info.act_dim) for rid in fleet.robot_ids]
        for r in robots:
            r.streamer.start()
        t_next, t_phase0, t_phase1 = time.monotonic(), 0.0, 0.0
        t_end = None
        while t_end is None or time.monotonic() < t_end:
            t_next += 0.25
            for r in robots:
                r.feed(50)  # 200 rows/s each
            if t_end is None:
                st = fleet.status()
                if st and st.get("updates", 0) > 0 and all(st["robots"].get(r.rid, {}).get("rows", 0) > 0
                                                           for r in robots):
                    t_phase0, t_end = time.time(), time.monotonic() + phase_s
            time.sleep(max(0.0, t_next - time.monotonic()))
        t_phase1 = time.time()
        # paired phases in the same learner run: only robot0 feeds, then all n, alternating, so
        # the machine's changing load (other jobs) hits both sides alike
        paired: list[tuple[str, float, float]] = []
        for mode in ["one", "all"] * pairs:
            t0, t_stop = time.time(), time.monotonic() + pair_s
            while time.monotonic() < t_stop:
                t_next += 0.25
                for r in (robots[:1] if mode == "one" else robots):
                    r.feed(50)
                time.sleep(max(0.0, t_next - time.monotonic()))
            paired.append((mode, t0, time.time()))
        learner_pid = fleet.children.procs[0][1].pid
        rss = _rss_mb(learner_pid)
        rss_all = rss + sum(_rss_mb(c) for c in _children(learner_pid))
        for r in robots:
            r.streamer.stop(drain_s=30.0)
    finally:
        for r in robots:
            r.streamer.stop()
        fleet.stop()
    rows = read_jsonl(fleet.learner_dir / "metrics.jsonl")
    a, b = _at(rows, t_phase0), _at(rows, t_phase1)
    dt = max(b["t"] - a["t"], 1e-9)
    by_mode: dict[str, list[float]] = {"one": [0.0, 0.0, 0.0], "all": [0.0, 0.0, 0.0]}  # updates, rows, s
    for mode, t0, t1 in paired:
        pa, pb = _at(rows, t0 + 2.0), _at(rows, t1)  # 2 s: the first status row of the phase
        acc_m = by_mode[mode]
        acc_m[0] += pb["updates"] - pa["updates"]
        acc_m[1] += pb["store_rows"] - pa["store_rows"]
        acc_m[2] += max(pb["t"] - pa["t"], 0.0)
    pair_fig = {f"{m}_{k}": v[i] / v[2] if v[2] else float("nan") for m, v in by_mode.items()
                for i, k in ((0, "updates_per_s"), (1, "rows_per_s"))}
    published = _stamps(fleet.run_dir / "learner.log", r"published policy v(\d+)")
    push = {}
    for r in robots:
        lat = [(r.received[v] - published[v]) * 1e3 for v in r.received if v in published
               and t_phase0 <= published[v] <= t_phase1]
        push[r.rid] = float(np.percentile(lat, 99)) if lat else float("nan")
    from learner.service.store import RealStore

    store = RealStore(fleet.learner_dir / "store")
    store.open()
    held: dict[str, list[tuple[int, int]]] = {}
    for bt in store.iter_batches():
        held.setdefault(bt.robot, []).append((bt.first_seq, bt.n))
    store.close()
    stored = lost = dup = 0
    for r in robots:
        parts = sorted(held.get(r.rid, []))
        seqs = [x for f, k in parts for x in range(f, f + k)]
        stored += len(seqs)
        acked_own = r.streamer.spool.acked.get(r.streamer.stream_id, -1) + 1
        lost += max(0, r.offered - max(len(set(seqs)), acked_own + r.streamer.spool.pending_rows))
        dup += len(seqs) - len(set(seqs))
    spool = sum(r.streamer.spool.pending_rows for r in robots)  # left on disk, resent at a restart
    return {"robots": n, "light": True, "phase_s": round(dt, 1),
            "ingest_rows_per_s": (b["store_rows"] - a["store_rows"]) / dt,
            "updates_per_s": (b["updates"] - a["updates"]) / dt, "push_p99_ms": push,
            "push_p99_ms_worst": max(push.values()), "push_p99_ms_median": float(np.nanmedian(list(push.values())))
            if any(np.isfinite(list(push.values()))) else float("nan"),
            "learner_rss_mb": rss, "learner_rss_with_sim_worker_mb": rss_all,
            "recorded": sum(r.offered for r in robots), "refused_by_queue": sum(r.refused for r in robots),
            "acked": sum(r.streamer.counters.rows_acked for r in robots), "stored": stored, "spool_left": spool,
            "rows_lost": lost, "streams_not_exactly_once": dup,
            "all_exactly_once": dup == 0 and lost == 0 and stored == sum(r.offered for r in robots),
            "pairs": pairs, "pair_s": pair_s, **({"paired": pair_fig} if pairs else {})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,4,8,16", help="fleet sizes, comma-separated")
    p.add_argument("--phase-s", type=float, default=60.0, help="measuring phase per size")
    p.add_argument("--out", default="", help="write the results as JSON here too")
    p.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    p.add_argument("--pairs", type=int, default=0, help="--light: then this many pairs of phases in the same "
                                                        "run, only robot0 feeding vs all robots feeding")
    p.add_argument("--pair-s", type=float, default=20.0, help="length of each paired phase")
    p.add_argument("--light", action="store_true", help="robots without MuJoCo/ONNX: the real Streamer fed "
                                                        "synthetic rows at 200 rows/s (the learner's own cost)")
    args = p.parse_args(argv)
    setup_logging("INFO")
    os.chdir(ROOT)
    base = Path(tempfile.mkdtemp(prefix="bench_fleet-"))
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        log.info("fleet of %d robot(s), %.0f s phase", n, args.phase_s)
        results.append(bench_light(n, args.phase_s, base, args.pairs, args.pair_s) if args.light
                       else bench_size(n, args.phase_s, base))
        log.info("%s", json.dumps(results[-1]))
    one = next((r for r in results if r["robots"] == 1), None)
    print(f"\nmachine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end; {time.strftime('%Y-%m-%d')}")
    print("| robots | ingest rows/s | trainer updates/s | vs 1 robot | push p99 ms (median / worst robot) | "
          "learner RSS MB (with sim worker) | recorded = acked = stored | in spools | lost | duplicated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        slow = f"{100 * (r['updates_per_s'] / one['updates_per_s'] - 1):+.0f} %" if one and one["updates_per_s"] else "-"
        print(f"| {r['robots']} | {r['ingest_rows_per_s']:,.0f} | {r['updates_per_s']:.1f} | {slow} | "
              f"{r['push_p99_ms_median']:.0f} / {r['push_p99_ms_worst']:.0f} | {r['learner_rss_mb']:.0f} "
              f"({r['learner_rss_with_sim_worker_mb']:.0f}) | {'yes' if r['all_exactly_once'] and r['recorded'] == r['acked'] == r['stored'] else 'NO'}"
              f" ({r['stored']:,}) | {r['spool_left']:,} | {r['rows_lost']} | {r['streams_not_exactly_once']} |")
    for r in results:
        if r.get("paired"):
            f = r["paired"]
            print(f"paired, {r['robots']} robots, {r['pairs']} x ({r['pair_s']:.0f} s robot0 only, "
                  f"{r['pair_s']:.0f} s all feeding), same learner run: trainer {f['one_updates_per_s']:.1f} "
                  f"vs {f['all_updates_per_s']:.1f} updates/s ({100 * (f['all_updates_per_s'] / f['one_updates_per_s'] - 1):+.0f} %), "
                  f"ingest {f['one_rows_per_s']:,.0f} vs {f['all_rows_per_s']:,.0f} rows/s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if args.keep:
        print(f"run folders: {base}")
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

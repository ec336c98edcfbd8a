"""Learner service speed: ingest rows/s on loopback while training, the trainer's slowdown, and
policy push latency (export done -> first action of the new policy on the robot).

    .venv/bin/python benchmarks/bench_ingest.py            # ~2 min
    .venv/bin/python benchmarks/bench_ingest.py --phase-s 10 --push-s 40

Ingest: a real serve.py process (CURVE, fsync on) trains H2O (256-256, batch 128+128, stand_still)
with one sim worker; updates/s is read from its metrics.jsonl over alternating phases in one run:
no ingest, then a client sending TRANSITIONS as fast as ACKs allow, repeated (the idle phases
bracket the ingest phases on a noisy shared machine). Push: serve.py exports every 50 updates (small nets);
onboard/run.py drives a lock-step virtual robot; latency = robot log "policy vN active" minus
learner log "published policy vN" (same clock, ms resolution).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner.service import wire  # noqa: E402
from learner.service.client import RobotLinkClient  # noqa: E402
from learner.service.keys import ensure_demo_keys  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tmp: Path, keys, port: int, extra: list[str], name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.log"
    cmd = [sys.executable, str(ROOT / "learner" / "serve.py"), "--bind", f"tcp://127.0.0.1:{port}",
           "--run-dir", str(tmp / name), "--server-secret-key", str(keys["learner_secret"]),
           "--authorized-keys-dir", str(keys["authorized"]), "--status-every-s", "1", *extra]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "serving on" not in log.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.2)
    return p, log


def metrics(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def updates_rate(run: Path, t0: float, t1: float) -> float:
    rows = [m for m in metrics(run) if t0 <= m["t"] <= t1]
    if len(rows) < 2:
        return float("nan")
    return (rows[-1]["updates"] - rows[0]["updates"]) / (rows[-1]["t"] - rows[0]["t"])


def wait_training(run: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run / "metrics.jsonl").exists():
            m = metrics(run)
            if m and m[-1]["trainer_state"] == "training" and m[-1]["updates"] > 50:
                return
        time.sleep(0.5)
    raise TimeoutError("trainer did not start")


def bench_ingest(tmp: Path, keys, phase_s: float, rows_per_batch: int, window: int,
                 cycles: int, rate: float) -> dict:
    port = free_port()
    ds = tmp / "ds.hdf5"
    subprocess.run([sys.executable, "-m", "sim_models.collect", "--steps", "2000", "--out", str(ds)],
                   cwd=ROOT, check=True, capture_output=True)
    proc, _ = start_serve(tmp, keys, port, ["--datasets", str(ds), "--warmup-sim-steps", "500",
                                            "--export-every-updates", "1000000"], "ingest")
    run = tmp / "ingest"
    try:
        wait_training(run)
        client = RobotLinkClient(f"tcp://127.0.0.1:{port}", keys["robot0_secret"], keys["learner_public"])
        hello = wire.Hello(robot_id="robot0", schema_hash=wire.schema_hash(), task="stand_still",
                           obs_dim=4, act_dim=1)
        assert client.hello(hello).accepted
        rng = np.random.default_rng(0)
        template = wire.empty_transitions("bench", 0, rows_per_batch, 4, 1)
        template.obs[:] = rng.standard_normal(template.obs.shape)
        template.next_obs[:] = rng.standard_normal(template.obs.shape)
        state = {"seq": 0, "acked": -1}

        def ingest_for(seconds: float, rate: float = 0.0) -> tuple[float, float, int]:
            """Send for `seconds`, at `rate` rows/s (0: as fast as ACKs allow)."""
            t_start, first = time.time(), state["acked"] + 1
            while time.time() - t_start < seconds:
                if rate > 0:  # pace: never ahead of rate * elapsed
                    ahead = (state["seq"] - first) / rate - (time.time() - t_start)
                    if ahead > 0:
                        if client.sock.poll(int(ahead * 1000)):
                            msg = client.recv(1.0)
                            if isinstance(msg, wire.Ack):
                                state["acked"] = max(state["acked"], msg.acked_seq)
                        continue
                while state["seq"] - (state["acked"] + 1) < window * rows_per_batch:
                    template.first_seq = state["seq"]
                    client.send(template)
                    state["seq"] += rows_per_batch
                    if rate > 0:
                        break
                msg = client.recv(5.0)
                if isinstance(msg, wire.Ack):
                    state["acked"] = max(state["acked"], msg.acked_seq)
            while state["acked"] < state["seq"] - 1:
                msg = client.recv(5.0)
                if isinstance(msg, wire.Ack):
                    state["acked"] = max(state["acked"], msg.acked_seq)
            return t_start, time.time(), state["acked"] + 1 - first

        idle, busy, rates, total = [], [], [], 0
        for _ in range(cycles):  # idle and ingest phases alternate: drift hits both alike
            t0 = time.time()
            time.sleep(phase_s)
            idle.append((t0, time.time()))
            t2, t3, n = ingest_for(phase_s, rate)
            busy.append((t2, t3))
            rates.append(n / (t3 - t2))
            total += n
        t0 = time.time()
        time.sleep(phase_s)
        idle.append((t0, time.time()))
        t2, t3, n_max = ingest_for(phase_s)  # throughput: as fast as ACKs allow
        client.close()
        time.sleep(1.5)
        u_idle = [updates_rate(run, a, b) for a, b in idle]
        u_busy = [updates_rate(run, a, b) for a, b in busy]
        return {"rows_per_s": n_max / (t3 - t2), "paced_rows_per_s": float(np.mean(rates)),
                "rows": total + n_max,
                "updates_per_s_idle": u_idle, "updates_per_s_ingest": u_busy,
                "slowdown": 1 - np.mean(u_busy) / np.mean(u_idle)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*")


def _stamp(line: str) -> float:
    return datetime.strptime(TS.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def bench_push(tmp: Path, keys, push_s: float) -> dict:
    port = free_port()
    ds = tmp / "ds.hdf5"
    proc, serve_log = start_serve(tmp, keys, port, [
        "--datasets", str(ds), "--hidden", "32-32", "--disc-hidden", "32-32", "--batch-real", "32",
        "--batch-sim", "32", "--disc-batch", "32", "--warmup-sim-steps", "200",
        "--export-every-updates", "50", "--checkpoint-every-s", "0"], "push")
    robot_log = tmp / "robot.log"
    robot = subprocess.Popen(
        [sys.executable, str(ROOT / "onboard" / "run.py"), "--run.virtual_robot", "moderate",
         "--run.lockstep", "true", "--run.duration_s", str(push_s), "--run.stats_file",
         str(tmp / "onboard.json"), "--learner.endpoint", f"tcp://127.0.0.1:{port}",
         "--learner.robot_id", "robot0", "--learner.plaintext", "false",
         "--learner.client_secret_key_file", str(keys["robot0_secret"]),
         "--learner.server_public_key_file", str(keys["learner_public"]),
         "--learner.spool_dir", str(tmp / "spool")],
        cwd=ROOT, stdout=open(robot_log, "w"), stderr=subprocess.STDOUT)
    robot.wait(push_s + 60)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    published = {int(m.group(1)): _stamp(line) for line in serve_log.read_text().splitlines()
                 if (m := re.search(r"published policy v(\d+)", line))}
    active = {int(m.group(1)): _stamp(line) for line in robot_log.read_text().splitlines()
              if (m := re.search(r"policy v(\d+) active", line))}
    lat = np.array([active[v] - published[v] for v in active if v in published]) * 1e3
    skipped = len(published) - len(lat)  # superseded before the robot got to them (latest only)
    if not len(lat):
        return {"n": 0, "published": len(published)}
    return {"n": len(lat), "published": len(published), "superseded": skipped,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase-s", type=float, default=8.0, help="length of each idle/ingest phase")
    ap.add_argument("--cycles", type=int, default=3, help="idle+ingest phase pairs (one more idle)")
    ap.add_argument("--rate", type=float, default=50_000, help="rows/s sent in the slowdown phases")
    ap.add_argument("--rows-per-batch", type=int, default=500, help="rows per TRANSITIONS message")
    ap.add_argument("--window", type=int, default=16, help="unacknowledged batches in flight")
    ap.add_argument("--push-s", type=float, default=35.0, help="robot run time for the push test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keys = ensure_demo_keys(tmp / "keys", ["robot0"])
        ing = bench_ingest(tmp, keys, args.phase_s, args.rows_per_batch, args.window, args.cycles,
                           args.rate)
        print(f"ingest while training: {ing['rows_per_s']:,.0f} transitions/s as fast as ACKs allow "
              f"({args.rows_per_batch}/batch, window {args.window}, CURVE, fsync per round)")
        fmt = lambda xs: " ".join(f"{x:.1f}" for x in xs)  # noqa: E731
        print(f"trainer updates/s, idle phases: {fmt(ing['updates_per_s_idle'])}; ingest phases: "
              f"{fmt(ing['updates_per_s_ingest'])} -> slowdown {100 * ing['slowdown']:.1f} % "
              f"(mean ingest vs mean idle; ingest paced at {ing['paced_rows_per_s']:,.0f} rows/s)")
        push = bench_push(tmp, keys, args.push_s)
        if push["n"]:
            print(f"policy push, export done -> first action on the robot: p50 {push['p50_ms']:.0f} "
                  f"ms, p99 {push['p99_ms']:.0f} ms, max {push['max_ms']:.0f} ms over {push['n']} "
                  f"policies ({push['superseded']} superseded before reaching the robot)")
        else:
            print(f"policy push: no policy reached the robot ({push['published']} published)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

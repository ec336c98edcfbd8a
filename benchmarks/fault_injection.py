"""Fault injection against the real learner service and the real onboard streamer (loopback).

For each fault it prints rows sent / ACKed / stored / lost and how long the service took to be
up again. "lost" = rows the robot had ACKed that the store does not hold. The target is 0 for
every fault that leaves the bytes on disk; a flipped byte destroys the bytes of one record, which
the robot had deleted after its ACK: those rows are recorded as lost once (see docs/service.md).

    .venv/bin/python benchmarks/fault_injection.py [--rows-per-batch 50] [--batches 200]

Needs root for the disk-full case (a small tmpfs); that row says "skipped" otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learner.service import wire  # noqa: E402
from learner.service.keys import ensure_demo_keys  # noqa: E402
from learner.service.store import RealStore, StoredBatch  # noqa: E402
from onboard.streamer import Streamer, StreamerConfig  # noqa: E402

TASK, OBS, ACT = "stand_still", 4, 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Learner:
    """serve.py as a child process (restartable on the same port and run folder)."""

    def __init__(self, run_dir: Path, keys: dict, log_path: Path, extra: list[str]) -> None:
        self.run_dir, self.keys, self.log_path, self.extra = run_dir, keys, log_path, extra
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait for 'serving on'; returns the seconds it took."""
        t0 = time.monotonic()
        cmd = [sys.executable, str(ROOT / "learner" / "serve.py"), "--bind", self.endpoint,
               "--run-dir", str(self.run_dir), "--task", TASK, "--status-every-s", "1",
               "--server-secret-key", str(self.keys["learner_secret"]),
               "--authorized-keys-dir", str(self.keys["authorized"]), *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(self.log_path, "a"),
                                     stderr=subprocess.STDOUT)
        self.starts += 1
        while self.log_path.read_text().count("serving on") < self.starts:
            if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                raise RuntimeError(f"serve.py did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.02)
        return time.monotonic() - t0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Robot:
    """The onboard streamer with rows whose t_us is their sequence number (rew too, unless
    poisoned)."""

    def __init__(self, endpoint: str, keys: dict, spool: Path, rows: int, robot: str = "robot1",
                 key: str = "robot1") -> None:
        cfg = StreamerConfig(endpoint=endpoint, robot_id=robot,
                             client_secret_key_file=str(keys[f"{key}_secret"]),
                             server_public_key_file=str(keys["learner_public"]),
                             spool_dir=str(spool), heartbeat_interval_s=0.2, liveness=3,
                             reconnect_initial_s=0.1, reconnect_max_s=0.5, resend_after_s=1.0)
        hello = wire.Hello(robot_id=robot, schema_hash=wire.schema_hash(), obs_dim=OBS,
                           act_dim=ACT, task=TASK)
        self.streamer = Streamer(cfg, hello=lambda: hello)
        self.streamer.start()
        self.rows, self.sent = rows, 0

    def send(self, batches: int, poison: bool = False, pause_s: float = 0.002) -> None:
        for _ in range(batches):
            b = wire.empty_transitions("x", self.sent, self.rows, OBS, ACT)
            b.rew[:] = np.arange(self.sent, self.sent + self.rows)
            b.t_us[:] = np.arange(self.sent, self.sent + self.rows)
            if poison:
                b.rew[0], b.obs[1, 0], b.act[2, 0] = 3e38, 3e38, 1e30
            cols = {k: getattr(b, k) for k in wire.TRANSITION_COLUMNS}
            while not self.streamer.offer(cols):
                time.sleep(0.005)
            self.sent += self.rows
            time.sleep(pause_s)

    def drain(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.streamer.status()
            if st["spool_batches"] == 0 and st["queue_batches"] == 0:
                return True
            time.sleep(0.05)
        return False

    @property
    def acked(self) -> int:
        return self.streamer.counters.rows_acked

    def stop(self) -> None:
        self.streamer.stop()


@contextlib.contextmanager
def robot_streaming_to(srv: Learner, work: Path, keys: dict, a: argparse.Namespace):
    """A robot program's streamer connected to `srv`; stopped (its spool kept) whatever happens."""
    robot = Robot(srv.endpoint, keys, work / "spool", a.rows_per_batch)
    try:
        yield robot
    finally:
        robot.stop()


def stored_rows(run_dir: Path, stream: str) -> tuple[np.ndarray, int]:
    store = RealStore(run_dir / "store")
    report = store.open()
    rows = [b.columns["t_us"] for b in store.iter_batches() if b.stream == stream]
    store.close()
    got = np.concatenate(rows) if rows else np.zeros(0)
    return got, report.lost_rows


def row(name: str, robot: Robot | None, run_dir: Path, up_s: float, note: str = "") -> dict:
    if robot is None:
        return {"fault": name, "sent": "-", "acked": "-", "stored": "-", "lost": "-",
                "up_s": up_s, "note": note}
    got, recorded_lost = stored_rows(run_dir, robot.streamer.stream_id)
    lost = int(np.setdiff1d(np.arange(robot.acked), got).size)
    dup = int(got.size - np.unique(got).size)
    extra = f"{dup} duplicates; " if dup else ""
    if recorded_lost:
        extra += f"{recorded_lost} recorded lost; "
    return {"fault": name, "sent": robot.sent, "acked": robot.acked, "stored": int(got.size),
            "lost": lost, "up_s": up_s, "note": extra + note}


def case_kill9(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    srv = Learner(work / "run", keys, work / "serve.log", ["--no-train"])
    srv.start()
    with robot_streaming_to(srv, work, keys, a) as robot:
        robot.send(a.batches // 2)
        srv.kill9()
        robot.send(a.batches // 4)
        up = srv.start()
        robot.send(a.batches // 4)
        robot.drain()
    srv.stop()
    return row("kill -9 learner mid-stream", robot, srv.run_dir, up, "restart time shown")


def case_disk_full(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    if os.geteuid() != 0:  # mounting needs root
        return row("disk full (3 MB tmpfs)", None, work, float("nan"), "skipped: needs root")
    mnt = work / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)]).returncode:
        return row("disk full (3 MB tmpfs)", None, work, float("nan"), "skipped: mount failed")
    try:
        srv = Learner(mnt / "run", keys, work / "serve.log", ["--no-train"])
        srv.start()
        with robot_streaming_to(srv, work, keys, a) as robot:
            robot.send(a.batches // 4)
            with open(mnt / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            robot.send(a.batches // 2, pause_s=0.01)
            full_alive = srv.alive()
            (mnt / "filler").unlink()
            robot.send(a.batches // 4)
            robot.drain()
            srv.kill9()
            up = srv.start()
        srv.stop()
        return row("disk full (3 MB tmpfs), kill -9 after", robot, srv.run_dir, up,
                   f"service up while full: {full_alive}")
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def case_corrupt(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    srv = Learner(work / "run", keys, work / "serve.log", ["--no-train"])
    srv.start()
    with robot_streaming_to(srv, work, keys, a) as robot:
        robot.send(a.batches // 2)
        robot.drain()
        srv.stop()
        seg = sorted((srv.run_dir / "store").glob("seg-*.log"))[0]
        data = bytearray(seg.read_bytes())
        data[len(data) // 2] ^= 0x01
        seg.write_bytes(bytes(data))
        up = srv.start()
        robot.send(a.batches // 2)
        drained = robot.drain()
    srv.stop()
    return row("one flipped byte in a segment", robot, srv.run_dir, up,
               f"stream drained after: {drained}; bytes of one record destroyed")


def case_poison(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    srv = Learner(work / "run", keys, work / "serve.log",
                  ["--algorithm", "cql", "--hidden", "16-16", "--min-real-rows", "64",
                   "--batch-real", "32", "--export-every-updates", "100"])
    up = srv.start()
    with robot_streaming_to(srv, work, keys, a) as robot:
        robot.send(a.batches // 4)
        robot.send(5, poison=True)
        robot.send(a.batches // 4)
        robot.drain()
        time.sleep(8)  # training on what arrived
        alive = srv.alive()
    code = srv.stop()
    log = srv.log_path.read_text()
    if not alive:
        print(log[-6000:], file=sys.stderr)
    refused = sum(1 for line in log.splitlines() if "exceed |obs|" in line)
    return row("poison batches (3e38 rew/obs, 1e30 act)", robot, srv.run_dir, up,
               f"alive after training: {alive}, exit {code}; {refused} batches kept out of training")


def case_257_streams(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    run = work / "run"
    store = RealStore(run / "store")
    store.open()
    for i in range(257):
        store.append(StoredBatch("robot1", f"old{i}", 0, {"rew": np.zeros(1, np.float32)}))
    store.close()
    srv = Learner(run, keys, work / "serve.log", ["--no-train"])
    up = srv.start()
    with robot_streaming_to(srv, work, keys, a) as robot:
        robot.send(a.batches // 2)
        robot.drain()
    alive = srv.alive()
    srv.stop()
    return row("257 earlier streams of the robot", robot, run, up, f"service alive: {alive}")


def case_shared_key(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    srv = Learner(work / "run", keys, work / "serve.log", ["--no-train"])
    up = srv.start()
    r1 = Robot(srv.endpoint, keys, work / "spool1", a.rows_per_batch)
    r2 = Robot(srv.endpoint, keys, work / "spool2", a.rows_per_batch)
    try:
        for _ in range(a.batches // 20):
            r1.send(5)
            r2.send(5)
        r1.drain()
        r2.drain()
    finally:
        r1.stop()
        r2.stop()
    srv.stop()
    a1, a2 = row("", r1, srv.run_dir, up), row("", r2, srv.run_dir, up)
    log = srv.log_path.read_text()
    warned = "two live connections" in log
    if not warned:
        print("\n".join(line for line in log.splitlines() if "robot" in line)[-3000:], file=sys.stderr)
    return {"fault": "two processes share one key", "sent": a1["sent"] + a2["sent"],
            "acked": a1["acked"] + a2["acked"], "stored": a1["stored"] + a2["stored"],
            "lost": a1["lost"] + a2["lost"], "up_s": up, "note": f"warned: {warned}"}


def case_bad_policies(work: Path, keys: dict, a: argparse.Namespace) -> dict:
    from devkit.dev_policies import mlp_policy_bytes, sha256_hex
    from onboard.policy import PolicyCandidate, PolicyRejected, PolicySpec, ValidationConfig
    from onboard.policy import build_policy

    spec, cfg = PolicySpec(TASK, OBS, ACT, 200.0), ValidationConfig(inference_budget_ms=50.0)
    gain = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0

    def cand(v, **kw):
        data = mlp_policy_bytes(OBS, ACT, version=v, hidden=0, linear_gain=gain, **kw)
        return PolicyCandidate(v, sha256_hex(data), data)

    verdicts = []
    try:
        build_policy(cand(1, nan_beyond=0.5), spec, cfg, np.zeros((64, OBS), np.float32))
        verdicts.append("NaN@0.5: activated")
    except PolicyRejected as e:
        verdicts.append(f"NaN@0.5: {e.reason}")
    p = build_policy(cand(2, nan_beyond=5.0), spec, cfg, None)
    p.act(np.full(OBS, 6.0, np.float32))
    verdicts.append(f"NaN@5: passes, then fault '{p.fault.split(':')[0]}' -> quarantined")
    p = build_policy(cand(3, log_std=100.0), spec, cfg, None)
    lp = p.act(np.zeros(OBS, np.float32), np.random.default_rng(0))[1]
    verdicts.append(f"log_std=100: logp {lp:.3g} (finite, encodable)")
    return row("bad policies (robot side)", None, work, float("nan"), "; ".join(verdicts))


def only(names: list[str]):
    return [c for c in CASES if not names or any(n in c.__name__ for n in names)]


CASES = (case_kill9, case_disk_full, case_corrupt, case_poison, case_257_streams,
         case_shared_key, case_bad_policies)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows-per-batch", type=int, default=50)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("cases", nargs="*", help="run only cases whose name contains one of these")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="h2o-faults-") as tmp:
        keys = ensure_demo_keys(Path(tmp) / "keys", ["robot1"])
        rows = []
        for i, case in enumerate(only(a.cases)):
            work = Path(tmp) / f"case{i}"
            work.mkdir()
            rows.append(case(work, keys, a))
            r = rows[-1]
            print(f"{r['fault']}: sent {r['sent']} acked {r['acked']} stored {r['stored']} "
                  f"lost {r['lost']} up {r['up_s']:.2f} s {r['note']}", flush=True)
    print("\n| fault | rows sent | ACKed | stored | ACKed rows lost | service up (s) | note |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        up = "-" if r["up_s"] != r["up_s"] else f"{r['up_s']:.2f}"
        print(f"| {r['fault']} | {r['sent']} | {r['acked']} | {r['stored']} | {r['lost']} | "
              f"{up} | {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

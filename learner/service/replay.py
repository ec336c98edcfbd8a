"""Replay a recorded transition stream into a running learner, as if a robot were connected.

    python -m learner.service.replay send rec.mcap --endpoint tcp://127.0.0.1:5555 \
        --robot-id robot0 --key keys/robot0.key_secret --server-key keys/learner.key [--fast]
    python -m learner.service.replay from-dataset data.hdf5 --out rec.mcap [--batch 50] [--task T]

Input: a `protocol.recording` MCAP file whose msgpack records are `protocol.messages` (any
channel); HELLO and TRANSITIONS are used, everything else is skipped. Pacing: the recorded
timestamps (default) or as fast as the learner ACKs (`--fast`), with at most `--window` batches
unacknowledged (credit-style flow control). The learner deduplicates on (robot, stream, seq), so
replaying a file twice stores it once. `from-dataset` turns a D4RL HDF5 file into such a
recording: a HELLO (robot id, task from the dataset's metadata or --task, its dims and control
rate) and then one stream of TRANSITIONS, e.g. to feed an offline dataset through the live path.
Its times are the dataset's steps at the control rate, placed at the wall time of writing.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging
from learner.service import wire
from learner.service.client import LinkClosed, RobotLinkClient
from protocol.messages import ProtocolError
from protocol.recording import CLOCK_ELAPSED, Reader, Writer

log = logging.getLogger(__name__)

CHANNEL = "learner_link/robot_to_learner"


@dataclass
class ReplayResult:
    batches: int
    rows: int
    acked_rows: int
    seconds: float
    skipped_records: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


def load_recording(path: str | Path) -> tuple[wire.Hello | None, list[tuple[int, wire.Transitions]], int]:
    """(the recorded HELLO if any, [(t_ns, TRANSITIONS)] in file order, records skipped)."""
    hello, batches, skipped = None, [], 0
    for rec in Reader(path):
        try:
            msg = wire.decode(rec.data)
        except wire.WireError:
            skipped += 1
            continue
        if isinstance(msg, wire.Transitions):
            batches.append((rec.t_ns, msg))
        elif isinstance(msg, wire.Hello) and hello is None:
            hello = msg
        else:
            skipped += 1
    return hello, batches, skipped


def replay(client: RobotLinkClient, hello: wire.Hello, batches: list[tuple[int, wire.Transitions]],
           fast: bool = True, window: int = 16, speed: float = 1.0, timeout_s: float = 30.0,
           skipped: int = 0) -> ReplayResult:
    """Send HELLO, then every batch (paced or as fast as ACKs allow); wait for the last ACKs."""
    welcome = client.hello(hello, timeout_s)
    if not welcome.accepted:
        raise RuntimeError(f"learner refused the replay: {welcome.reason}")
    last_seq = {}  # stream -> last seq sent
    acked = dict(welcome.acked)
    inflight: list[tuple[str, int]] = []
    t0 = time.monotonic()
    rec_t0 = batches[0][0] if batches else 0
    rows = 0

    def absorb(msg) -> None:
        if isinstance(msg, wire.Ack):
            acked[msg.stream_id] = max(acked.get(msg.stream_id, -1), msg.acked_seq)
        elif isinstance(msg, wire.Error):
            log.warning("learner error %s: %s", msg.code, msg.message)

    def settle(block_s: float) -> None:
        try:
            absorb(client.recv(block_s))
            while client.sock.poll(0):
                absorb(client.recv(0.01))
        except LinkClosed:
            pass
        inflight[:] = [(s, q) for s, q in inflight if acked.get(s, -1) < q]

    for t_ns, batch in batches:
        if not fast:
            due = t0 + (t_ns - rec_t0) * 1e-9 / speed
            while time.monotonic() < due:
                settle(min(0.05, max(0.0, due - time.monotonic())))
        deadline = time.monotonic() + timeout_s
        while len(inflight) >= window:
            if time.monotonic() > deadline:
                raise LinkClosed("no ACK progress within the timeout")
            settle(0.5)
        client.send(batch)
        inflight.append((batch.stream_id, batch.last_seq))
        last_seq[batch.stream_id] = max(last_seq.get(batch.stream_id, -1), batch.last_seq)
        rows += batch.n_rows
        if client.sock.poll(0):
            settle(0.0)
    deadline = time.monotonic() + timeout_s
    while inflight and time.monotonic() < deadline:
        settle(0.5)
    seconds = time.monotonic() - t0
    acked_rows = sum(b.n_rows for _, b in batches if acked.get(b.stream_id, -1) >= b.last_seq)
    return ReplayResult(len(batches), rows, acked_rows, seconds, skipped)


def dataset_to_recording(dataset: str | Path, out: str | Path, stream_id: str, batch: int = 50,
                         task: str = "", robot_id: str = "dataset") -> int:
    """Write a D4RL file as a HELLO and TRANSITIONS records of one stream; returns the number of
    rows. `task` (default: the dataset's metadata, else stand_still) goes into HELLO; the control
    rate is the task's and paces the records."""
    from learner.service.tasks import task_info
    from sim_models.datasets import load_d4rl

    data, meta = load_d4rl(dataset)
    n = len(data["rewards"])
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    task = task or str(meta.get("task") or "stand_still")
    control_hz = task_info(task).control_hz
    hello = wire.Hello(robot_id=robot_id, schema_hash=wire.schema_hash(), task=task, obs_dim=obs_dim,
                       act_dim=act_dim, control_hz=control_hz, software_version="from-dataset",
                       streams={stream_id: 0})
    with Writer(out, clock=CLOCK_ELAPSED) as w:
        w.write(CHANNEL, 0, wire.encode(hello))
        for start in range(0, n, batch):
            m = min(batch, n - start)
            t = wire.empty_transitions(stream_id, start, m, obs_dim, act_dim)
            sl = slice(start, start + m)
            t.obs[:] = data["observations"][sl]
            t.act[:] = data["actions"][sl]
            t.rew[:] = data["rewards"][sl]
            t.next_obs[:] = data["next_observations"][sl]
            t.terminated[:] = np.asarray(data["terminals"][sl]) > 0
            t.truncated[:] = np.asarray(data.get("timeouts", np.zeros(n))[sl]) > 0
            t.t_us[:] = (np.arange(start, start + m) * 1e6 / control_hz).astype(np.uint64)
            t.source[:] = int(wire.Source.CONTROLLER)
            w.write(CHANNEL, int(start * 1e9 / control_hz), wire.encode(t))
    return n


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m learner.service.replay", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("send", help="replay a recording into a learner", allow_abbrev=False)
    p.add_argument("recording", help="MCAP file of protocol messages")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the learner's ROUTER")
    p.add_argument("--robot-id", default="", help="robot id to connect as (default: recorded)")
    p.add_argument("--task", default="stand_still", help="task in HELLO when none is recorded")
    p.add_argument("--key", default="", help="this client's CURVE secret key (an authorised robot)")
    p.add_argument("--server-key", default="", help="the learner's public key; empty: plaintext")
    p.add_argument("--fast", action="store_true", help="as fast as ACKs allow (default: recorded pace)")
    p.add_argument("--speed", type=float, default=1.0, help="pace multiplier without --fast")
    p.add_argument("--window", type=int, default=16, help="most unacknowledged batches in flight")
    p.add_argument("--timeout-s", type=float, default=30.0, help="give up without ACK progress")
    d = sub.add_parser("from-dataset", help="turn a D4RL HDF5 file into a recording", allow_abbrev=False)
    d.add_argument("dataset", help="D4RL-layout HDF5 file")
    d.add_argument("--out", required=True, help="MCAP file to write")
    d.add_argument("--stream-id", default="dataset", help="stream id of the rows")
    d.add_argument("--batch", type=int, default=50, help="rows per TRANSITIONS message")
    d.add_argument("--task", default="", help="task in HELLO (default: the dataset's metadata, else stand_still)")
    d.add_argument("--robot-id", default="dataset", help="robot id in HELLO")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    if args.cmd == "from-dataset":
        n = dataset_to_recording(args.dataset, args.out, args.stream_id, args.batch, args.task, args.robot_id)
        print(f"wrote {n} rows to {args.out}")
        return 0
    try:
        hello, batches, skipped = load_recording(args.recording)
    except (OSError, ProtocolError, ValueError) as exc:
        print(f"error: cannot read {args.recording}: {exc}", file=sys.stderr)
        return 2
    if not batches:
        print("error: no TRANSITIONS in the recording", file=sys.stderr)
        return 2
    b0 = batches[0][1]
    if hello is None or args.robot_id:
        from learner.service.tasks import task_info

        info = task_info(args.task)
        hello = wire.Hello(robot_id=args.robot_id or "replay", schema_hash=wire.schema_hash(),
                           task=args.task, obs_dim=b0.obs.shape[1], act_dim=b0.act.shape[1],
                           control_hz=info.control_hz, software_version="replay")
    client = RobotLinkClient(args.endpoint, args.key or None, args.server_key or None)
    try:
        res = replay(client, hello, batches, fast=args.fast, window=args.window, speed=args.speed,
                     timeout_s=args.timeout_s, skipped=skipped)
    except (LinkClosed, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"replayed {res.rows} rows in {res.batches} batches in {res.seconds:.2f} s "
          f"({res.rows_per_s:.0f} rows/s), {res.acked_rows} acked, {res.skipped_records} "
          "records skipped")
    return 0 if res.acked_rows == res.rows else 1


if __name__ == "__main__":
    sys.exit(main())

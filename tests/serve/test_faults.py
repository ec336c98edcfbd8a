"""Regression tests of issue 17's faults, each first reproduced against the old code: more than
256 streams, disk full, a flipped byte in a segment, finite garbage, a code-bearing checkpoint, a
stream that starts where its first batch says, and a dead thread that exited 0. Real serve.py
processes, real files, loopback only; keys are made at run time (conftest)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from learner.service import wire
from learner.service.client import RobotLinkClient
from learner.service.store import RealStore, StoredBatch
from onboard.streamer import Streamer, StreamerConfig

pytestmark = pytest.mark.timeout(120)

ROWS = 50


def _stored(run_dir: Path, stream: str):
    store = RealStore(run_dir / "store")
    report = store.open()
    rew = [b.columns["rew"] for b in store.iter_batches() if b.stream == stream]
    store.close()
    return (np.sort(np.concatenate(rew)) if rew else np.zeros(0)), report


# ------------------------------------------------------------------ item 1: > 256 streams
def test_more_than_256_streams_keep_the_service_up(serve_process, keys, make_hello, make_batch):
    srv = serve_process(["--no-train"])
    store = RealStore(srv.run_dir / "store")
    store.open()
    for i in range(257):  # 257 earlier runs of the robot program, one stream each
        store.append(StoredBatch("robot1", f"run{i}", 0, {"rew": np.zeros(3, np.float32)}))
    store.close()
    srv.start()
    c = RobotLinkClient(srv.endpoint, keys["robot1_secret"], keys["learner_public"])
    try:
        for _ in range(2):  # the old service died on the first, for good on the next start
            welcome = c.hello(make_hello())
            assert welcome.accepted and len(welcome.acked) <= 256
        welcome = c.hello(make_hello(streams={"run5": 0, "new": 0}))
        assert welcome.acked == {"run5": 2, "new": -1}
        c.send(make_batch("new", 0, 10))
        assert c.recv_until(wire.Ack).acked_seq == 9
        assert srv.proc.poll() is None
    finally:
        c.close()
        assert srv.stop() == 0


# ------------------------------------------------------------------ item 6: declared start
def test_new_stream_starts_where_hello_says(server, keys, make_hello, make_batch):
    c = server.client(keys)
    try:
        assert c.hello(make_hello(streams={"s": 0})).accepted
        c.send(make_batch("s", 100, 10))  # the first batch is not the start of the stream
        got: list = []
        assert c.recv_until(wire.Error, keep=got).code == "seq_gap"
        ack = got[0] if got else c.recv_until(wire.Ack)
        assert ack.acked_seq == -1  # the old code acked 109 with rows 0..99 never stored
        c.send(make_batch("s", 0, 10))
        assert c.recv_until(wire.Ack).acked_seq == 9
        assert server.store.next_seq("robot1", "s") == 10
        # a stream the robot declares at 100: rows 0..99 are recorded lost once, 100.. flow
        assert c.hello(make_hello(streams={"t": 100})).acked == {"t": 99}
        c.send(make_batch("t", 100, 10))
        assert c.recv_until(wire.Ack).acked_seq == 109
        assert server.store.rows_lost == 100 and server.server.counters["rows_lost"] == 100
    finally:
        c.close()


def test_rows_the_robots_spool_lost_are_recorded_lost_and_the_stream_goes_on(server, keys, make_hello,
                                                                            make_batch):
    """A damaged spool record leaves a hole the robot can never fill: HELLO declares it, the
    learner records it as lost (once) and takes the rows after it instead of refusing a gap."""
    c = server.client(keys)
    try:
        assert c.hello(make_hello(streams={"u": 0}, gaps={"u": [20, 30]})).accepted
        c.send(make_batch("u", 0, 20))
        assert c.recv_until(wire.Ack).acked_seq == 29  # rows 20..29 are held now: recorded lost
        c.send(make_batch("u", 30, 10))
        assert c.recv_until(wire.Ack).acked_seq == 39
        assert server.store.rows_lost == 10 and server.server.counters["rows_lost"] == 10
        assert c.hello(make_hello(streams={"u": 30}, gaps={"u": [20, 30]})).acked == {"u": 39}
        assert server.store.rows_lost == 10  # recorded once
    finally:
        c.close()


# ------------------------------------------------------------------ item 4: finite garbage
def test_finite_garbage_is_stored_acked_and_never_trained_on(server, keys, make_hello,
                                                             make_batch):
    c = server.client(keys)
    try:
        c.hello(make_hello())
        bad = make_batch("g", 0, 10)
        bad.rew[3] = 3e38
        bad.obs[5, 0] = 3e38
        bad.act[7, 0] = 1e30
        c.send(bad)
        got: list = []
        err = c.recv_until(wire.Error, keep=got)
        assert err.code == "out_of_bounds" and "3 row(s)" in err.message
        ack = next((m for m in got if isinstance(m, wire.Ack)), None) or c.recv_until(wire.Ack)
        assert ack.acked_seq == 9  # the stream goes on
        deadline = time.monotonic() + 5
        while not server.rows_seen and time.monotonic() < deadline:
            time.sleep(0.01)
        fed = np.concatenate(server.rows_seen)
        np.testing.assert_array_equal(fed, [0, 1, 2, 4, 6, 8, 9])  # rew == seq
    finally:
        c.close()


# ------------------------------------------------------------------ item 3: flipped byte
def test_flipped_byte_costs_one_record_and_the_stream_goes_on(serve_process, streaming):
    srv = serve_process(["--no-train"])
    srv.start()
    streamer = streaming.streamer(srv.endpoint)
    try:
        seq = streaming.offer(streamer, 0, 40)
        streaming.wait_drained(streamer)  # every row ACKed: the robot no longer holds any of them
        assert srv.stop() == 0
        seg = sorted((srv.run_dir / "store").glob("seg-*.log"))[0]
        data = bytearray(seg.read_bytes())
        data[len(data) // 2] ^= 0x01
        seg.write_bytes(bytes(data))
        srv.start()
        seq = streaming.offer(streamer, seq, 20)
        streaming.wait_drained(streamer)  # the old code: seq_gap for good, the spool only grew
    finally:
        streamer.stop()
    assert srv.stop() == 0
    rows, report = _stored(srv.run_dir, streamer.stream_id)
    missing = np.setdiff1d(np.arange(seq), rows)
    assert len(rows) == len(np.unique(rows)) and 0 < len(missing) <= ROWS  # one record, not half
    assert report.lost_rows == len(missing)  # recorded once, as lost
    assert list((srv.run_dir / "store" / "damaged").iterdir())
    assert "LOST" in srv.log()


# ------------------------------------------------------------------ item 2: disk full
@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the disk-full test runs only as root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); disk-full test skipped")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Write until the file system is full."""
    with open(path, "wb", buffering=0) as f:  # unbuffered: ENOSPC surfaces in write, not close
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_disk_full_loses_no_acked_row(small_disk, serve_process, streaming):
    srv = serve_process(["--no-train"], run_dir=small_disk / "run")
    srv.start()
    streamer = streaming.streamer(srv.endpoint)
    acked_before_full = 0
    try:
        seq = streaming.offer(streamer, 0, 20)
        _fill(small_disk / "filler")
        seq = streaming.offer(streamer, seq, 40, pause_s=0.02)  # refused while full
        acked_before_full = streamer.counters.rows_acked
        (small_disk / "filler").unlink()
        seq = streaming.offer(streamer, seq, 20)
        streaming.wait_drained(streamer)
        assert srv.proc.poll() is None, srv.log()
        srv.kill9()
        srv.start()
        time.sleep(0.5)
    finally:
        streamer.stop()
    assert srv.stop() == 0
    rows, report = _stored(srv.run_dir, streamer.stream_id)
    # every row the robot had ACKed (all of them, once drained) is readable after the crash
    np.testing.assert_array_equal(rows, np.arange(seq, dtype=np.float32))
    assert streamer.counters.rows_acked == seq >= acked_before_full
    assert "store write failed" in srv.log() and "free space" in srv.log()


# ------------------------------------------------------------------ item 5: weights_only
class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['H2O_TEST_MARKER']}",))


def test_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    import torch

    from learner.service.config import ServeConfig
    from learner.service.ingest import RealFeed
    from learner.service.publisher import Publisher
    from learner.service.trainer import Trainer

    marker = tmp_path / "pwned"
    monkeypatch.setenv("H2O_TEST_MARKER", str(marker))
    cfg = ServeConfig(run_dir=str(tmp_path / "run"), algorithm="cql", hidden="8-8",
                      real_capacity=100).validate()
    cfg.run_path.mkdir(parents=True)
    torch.save({"algo": _RunsCode()}, cfg.run_path / "checkpoint.pt")
    tr = Trainer(cfg, Publisher(), RealFeed())
    assert tr.try_resume() is False
    assert not marker.exists()
    assert not (cfg.run_path / "checkpoint.pt").exists()  # moved aside, training starts afresh
    assert list(cfg.run_path.glob("checkpoint.pt.rejected-*"))


# ------------------------------------------------------------------ item 4: poisoned trainer
def test_poisoned_trainer_undoes_nonfinite_updates_and_checkpoints_finite(tmp_path):
    import torch

    from learner.service.config import ServeConfig
    from learner.service.ingest import RealFeed
    from learner.service.publisher import Publisher
    from learner.service.trainer import Trainer, all_finite

    rng = np.random.default_rng(0)
    n = 200
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    rew = rng.standard_normal(n).astype(np.float32)
    rew[::20] = 3e38  # poison that bypassed the ingest bounds (e.g. an offline file)
    feed = RealFeed()
    feed.put({"obs": obs, "act": rng.uniform(-1, 1, (n, 1)).astype(np.float32), "rew": rew,
              "next_obs": obs + 0.01, "terminated": np.zeros(n, bool)})
    cfg = ServeConfig(run_dir=str(tmp_path / "run"), algorithm="cql", hidden="16-16",
                      batch_real=16, batch_sim=16, min_real_rows=32, obs_centre_rows=32, export_every_updates=20,
                      max_updates=60, checkpoint_every_s=0.0, real_capacity=1000).validate()
    tr = Trainer(cfg, Publisher(), feed)
    tr.run(threading.Event())
    assert tr.stats.updates == 60 and tr.stats.nonfinite_updates > 0
    assert tr.weights_finite()
    state = torch.load(cfg.run_path / "checkpoint.pt", weights_only=True)
    assert all_finite(state["algo"])


# ------------------------------------------------------------------ item 7: exit code
def test_dead_thread_ends_the_service_with_exit_code_1(serve_process, tmp_path):
    import torch

    srv = serve_process(["--algorithm", "cql", "--hidden", "8-8", "--min-real-rows", "1"])
    srv.run_dir.mkdir(parents=True)
    # a checkpoint of another algorithm: loading it raises inside the trainer thread
    torch.save({"algo": {"algorithm": "not-cql"}, "sim": {}, "stats": {}, "config": {}},
               srv.run_dir / "checkpoint.pt")
    srv.start()
    assert srv.proc.wait(60) == 1  # the old service exited 0: no supervisor restarted it
    assert "trainer thread failed" in srv.log()


def test_streamer_declares_held_streams_within_one_hello(tmp_path, make_hello):
    """The robot side of the declaration: its own stream first, then the spool's oldest, never
    more than a HELLO may carry (the learner's decoder refuses > 256 entries)."""
    from onboard.spool import Spool

    spool = Spool(str(tmp_path / "spool"), fsync=False)
    for i in range(300):
        spool.append(f"old{i:03d}", 10, 19, b"x")
    spool.close()
    cfg = StreamerConfig(endpoint="tcp://127.0.0.1:1", plaintext=True,
                         spool_dir=str(tmp_path / "spool"))
    streamer = Streamer(cfg, hello=lambda: make_hello("robot1"), stream_id="now")
    hello = streamer._say_hello()
    assert len(hello.streams) == 256 and hello.streams["now"] == 0
    assert hello.streams["old000"] == 10 and "old299" not in hello.streams
    wire.decode(wire.encode(hello))  # fits the wire
    streamer.spool.close()

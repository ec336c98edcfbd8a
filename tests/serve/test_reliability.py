"""Zero loss, zero duplicates across a kill -9 of the learner and a link outage, with the real
onboard streamer (spool + resend) against the real serve.py process."""

from __future__ import annotations

import time

import numpy as np
import pytest

from learner.service import wire
from learner.service.store import RealStore
from onboard.streamer import Streamer, StreamerConfig

pytestmark = pytest.mark.timeout(120)

ROWS_PER_BATCH = 50


def _streamer(endpoint, keys, spool_dir, make_hello) -> Streamer:
    cfg = StreamerConfig(endpoint=endpoint, robot_id="robot1",
                         client_secret_key_file=str(keys["robot1_secret"]),
                         server_public_key_file=str(keys["learner_public"]),
                         spool_dir=str(spool_dir), heartbeat_interval_s=0.2, liveness=3,
                         reconnect_initial_s=0.1, reconnect_max_s=0.5, resend_after_s=1.0)
    s = Streamer(cfg, hello=lambda: make_hello("robot1"))
    s.start()
    return s


def _batch(make_batch, first_seq: int) -> dict:
    b = make_batch("x", first_seq, ROWS_PER_BATCH)
    return {name: getattr(b, name) for name in wire.TRANSITION_COLUMNS}


def _offer_all(streamer, make_batch, first: int, n_batches: int) -> int:
    seq = first
    for _ in range(n_batches):
        while not streamer.offer(_batch(make_batch, seq)):
            time.sleep(0.01)
        seq += ROWS_PER_BATCH
        time.sleep(0.01)
    return seq


def _wait_drained(streamer, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = streamer.status()
        if st["spool_batches"] == 0 and st["queue_batches"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"spool not drained: {streamer.status()}")


def _assert_exactly_once(run_dir, stream_id: str, n_rows: int) -> None:
    store = RealStore(run_dir / "store")
    report = store.open()
    rew = [b.columns["rew"] for b in store.iter_batches() if b.stream == stream_id]
    store.close()
    got = np.concatenate(rew) if rew else np.zeros(0)
    # rew of row k is k (see make_batch): every row once, in order, nothing else
    np.testing.assert_array_equal(got, np.arange(n_rows, dtype=np.float32))
    assert report.rows == n_rows


def test_kill9_learner_midstream_loses_and_duplicates_nothing(serve_process, keys, tmp_path,
                                                              make_hello, make_batch):
    srv = serve_process(["--no-train"])
    srv.start()
    streamer = _streamer(srv.endpoint, keys, tmp_path / "spool", make_hello)
    try:
        seq = _offer_all(streamer, make_batch, 0, 40)
        srv.kill9()  # mid-stream: batches in flight, some stored but not ACKed
        seq = _offer_all(streamer, make_batch, seq, 20)  # the robot keeps producing
        srv.start()  # same run dir: torn tail cut, dedup index rebuilt
        seq = _offer_all(streamer, make_batch, seq, 20)
        _wait_drained(streamer)
    finally:
        streamer.stop()
    assert srv.stop() == 0, srv.log()
    _assert_exactly_once(srv.run_dir, streamer.stream_id, seq)


def test_short_outage_loses_and_duplicates_nothing(serve_process, keys, tmp_path, make_hello,
                                                  make_batch):
    srv = serve_process(["--no-train"])
    srv.start()
    streamer = _streamer(srv.endpoint, keys, tmp_path / "spool", make_hello)
    try:
        seq = _offer_all(streamer, make_batch, 0, 20)
        import threading

        outage = threading.Thread(target=srv.pause, args=(3.0,))  # > liveness: robot reconnects
        outage.start()
        seq = _offer_all(streamer, make_batch, seq, 30)
        outage.join()
        seq = _offer_all(streamer, make_batch, seq, 10)
        _wait_drained(streamer)
        assert streamer.status()["reconnects"] >= 1
    finally:
        streamer.stop()
    assert srv.stop() == 0, srv.log()
    _assert_exactly_once(srv.run_dir, streamer.stream_id, seq)

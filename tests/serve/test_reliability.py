"""Zero loss, zero duplicates across a kill -9 of the learner and a link outage, with the real
onboard streamer (spool + resend) against the real serve.py process."""

from __future__ import annotations

import numpy as np
import pytest

from learner.service.store import RealStore

pytestmark = pytest.mark.timeout(120)


def _assert_exactly_once(run_dir, stream_id: str, n_rows: int) -> None:
    store = RealStore(run_dir / "store")
    report = store.open()
    rew = [b.columns["rew"] for b in store.iter_batches() if b.stream == stream_id]
    store.close()
    got = np.concatenate(rew) if rew else np.zeros(0)
    # rew of row k is k (see make_batch): every row once, in order, nothing else
    np.testing.assert_array_equal(got, np.arange(n_rows, dtype=np.float32))
    assert report.rows == n_rows


def test_kill9_learner_midstream_loses_and_duplicates_nothing(serve_process, streaming):
    srv = serve_process(["--no-train"])
    srv.start()
    streamer = streaming.streamer(srv.endpoint)
    try:
        seq = streaming.offer(streamer, 0, 40)
        srv.kill9()  # mid-stream: batches in flight, some stored but not ACKed
        seq = streaming.offer(streamer, seq, 20)  # the robot keeps producing
        srv.start()  # same run dir: torn tail cut, dedup index rebuilt
        seq = streaming.offer(streamer, seq, 20)
        streaming.wait_drained(streamer)
    finally:
        streamer.stop()
    assert srv.stop() == 0, srv.log()
    _assert_exactly_once(srv.run_dir, streamer.stream_id, seq)


def test_short_outage_loses_and_duplicates_nothing(serve_process, streaming):
    srv = serve_process(["--no-train"])
    srv.start()
    streamer = streaming.streamer(srv.endpoint)
    try:
        seq = streaming.offer(streamer, 0, 20)
        import threading

        outage = threading.Thread(target=srv.pause, args=(3.0,))  # > liveness: robot reconnects
        outage.start()
        seq = streaming.offer(streamer, seq, 30)
        outage.join()
        seq = streaming.offer(streamer, seq, 10)
        streaming.wait_drained(streamer)
        assert streamer.status()["reconnects"] >= 1
    finally:
        streamer.stop()
    assert srv.stop() == 0, srv.log()
    _assert_exactly_once(srv.run_dir, streamer.stream_id, seq)

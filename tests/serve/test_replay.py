"""Replay: a recorded stream goes into the learner as if a robot were connected; twice = once."""

from __future__ import annotations

import numpy as np

from learner.service import replay as replay_mod
from learner.service import wire
from protocol.recording import Writer


def test_replay_recording_is_stored_once(server, keys, tmp_path, make_hello, make_batch):
    path = tmp_path / "rec.mcap"
    with Writer(path) as w:
        w.write("link", 0, wire.encode(make_hello("robot1")))
        for i in range(30):
            w.write("link", i * 10_000_000, wire.encode(make_batch("rec", 20 * i, 20)))
        w.write("link", 400_000_000, b"\x00garbage")  # skipped, counted
    hello, batches, skipped = replay_mod.load_recording(path)
    assert hello.robot_id == "robot1" and len(batches) == 30 and skipped == 1
    for fast in (True, False):  # second pass at recorded pace (0.3 s): all duplicates
        c = server.client(keys)
        res = replay_mod.replay(c, hello, batches, fast=fast, window=4, speed=1.0, timeout_s=10)
        c.close()
        assert res.rows == 600 and res.acked_rows == 600
    assert server.store.next_seq("robot1", "rec") == 600
    assert server.ingest.rows_stored == 600 and server.ingest.rows_duplicate == 600
    np.testing.assert_array_equal(np.sort(np.concatenate(server.rows_seen)), np.arange(600))

"""The durable store: records round-trip, a torn tail is cut on reopen, the dedup index survives."""

from __future__ import annotations

import numpy as np
import pytest

from learner.service.store import RealStore, StoreError, StoredBatch


def _batch(stream: int, first: int, n: int, robot: str = "r1") -> StoredBatch:
    return StoredBatch(robot, stream, first, {"rew": np.arange(first, first + n, dtype=np.float32),
                                              "obs": np.ones((n, 3), np.float32)})


def test_roundtrip_and_index(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    store.append(_batch(0, 0, 5))
    store.append(_batch(0, 5, 3))
    store.append(_batch(1, 100, 2, robot="r2"))
    store.close()
    reopened = RealStore(tmp_path)
    report = reopened.open()
    assert (report.records, report.rows, report.truncated_bytes) == (3, 10, 0)
    assert reopened.next_seq("r1", 0) == 8 and reopened.next_seq("r2", 1) == 102
    assert reopened.next_seq("r1", 7) is None
    rews = np.concatenate([b.columns["rew"] for b in reopened.iter_batches() if b.robot == "r1"])
    np.testing.assert_array_equal(rews, np.arange(8))
    reopened.close()


def test_torn_tail_is_truncated(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    store.append(_batch(0, 0, 4))
    store.append(_batch(0, 4, 4))
    store.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a write cut short by a crash
    store = RealStore(tmp_path)
    report = store.open()
    assert report.records == 1 and report.rows == 4 and report.truncated_bytes > 0
    assert store.next_seq("r1", 0) == 4  # the torn rows are expected again
    store.append(_batch(0, 4, 4))  # ... and can be stored again after the truncation
    store.close()
    store = RealStore(tmp_path)
    assert store.open().rows == 8
    store.close()


def test_corrupt_byte_stops_at_bad_record(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    for i in range(3):
        store.append(_batch(0, 4 * i, 4))
    store.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    store = RealStore(tmp_path)
    report = store.open()
    assert report.records < 3 and report.truncated_bytes > 0
    store.close()


def test_non_contiguous_append_refused(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    store.append(_batch(0, 0, 4))
    with pytest.raises(StoreError):
        store.append(_batch(0, 10, 4))
    store.close()


def test_segments_roll_over(tmp_path):
    store = RealStore(tmp_path, segment_bytes=400)
    store.open()
    for i in range(10):
        store.append(_batch(0, 4 * i, 4))
    store.close()
    assert len(list(tmp_path.glob("seg-*.log"))) > 1
    store = RealStore(tmp_path, segment_bytes=400)
    assert store.open().rows == 40
    assert store.next_seq("r1", 0) == 40
    store.close()

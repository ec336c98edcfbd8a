"""The durable store: records round-trip, damage is resynced past and set aside (never cut in
place), a failed fsync rolls the round back, the dedup index survives."""

from __future__ import annotations

import errno
import os

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
    assert store.record_lost("r2", 1, 0, 100, "test") == 100  # a stream declared at 100
    store.append(_batch(1, 100, 2, robot="r2"))
    store.close()
    reopened = RealStore(tmp_path)
    report = reopened.open()
    assert (report.records, report.rows, report.lost_rows, report.damaged_bytes) == (4, 10, 100, 0)
    assert reopened.next_seq("r1", 0) == 8 and reopened.next_seq("r2", 1) == 102
    assert reopened.next_seq("r1", 7) is None
    rews = np.concatenate([b.columns["rew"] for b in reopened.iter_batches() if b.robot == "r1"])
    np.testing.assert_array_equal(rews, np.arange(8))
    assert reopened.record_lost("r2", 1, 0, 100, "again") == 0  # recorded once
    reopened.close()


def test_torn_tail_is_set_aside_not_truncated(tmp_path):
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
    assert report.records == 1 and report.rows == 4 and report.damaged_bytes > 0
    assert [p.name.split(".log")[0] for p in (tmp_path / "damaged").iterdir()] == [seg.stem]
    assert len(next((tmp_path / "damaged").iterdir()).read_bytes()) == len(data) - 7  # kept as is
    assert store.next_seq("r1", 0) == 4  # the torn rows are expected again
    store.append(_batch(0, 4, 4))  # ... and can be stored again
    store.close()
    store = RealStore(tmp_path)
    report = store.open()
    assert report.rows == 8 and report.damaged_bytes == 0
    store.close()


def test_corrupt_byte_costs_one_record_and_the_hole_can_be_filled(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    for i in range(5):
        store.append(_batch(0, 4 * i, 4))
    store.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the third record (rows 8..11)
    seg.write_bytes(bytes(data))
    store = RealStore(tmp_path)
    report = store.open()
    assert (report.records, report.rows) == (4, 16)  # resynced past the bad record
    assert [(h.stream, h.first, h.end) for h in report.holes] == [("0", 8, 12)]
    assert store.next_seq("r1", 0) == 8
    store.append(_batch(0, 8, 4))  # the robot still held them: the hole fills, the stream moves on
    assert store.next_seq("r1", 0) == 20
    store.close()
    store = RealStore(tmp_path)
    report = store.open()
    assert report.rows == 20 and not report.holes
    rews = np.concatenate([b.columns["rew"] for b in store.iter_batches()])
    np.testing.assert_array_equal(np.sort(rews), np.arange(20))
    store.close()


def test_foreign_files_are_left_alone(tmp_path):
    (tmp_path / "seg-zz.log").write_bytes(b"not mine")
    store = RealStore(tmp_path)
    report = store.open()
    store.append(_batch(0, 0, 4))
    store.close()
    assert report.foreign_files == ["seg-zz.log"]
    assert (tmp_path / "seg-zz.log").read_bytes() == b"not mine"


def test_failed_fsync_cuts_the_round_off(tmp_path, monkeypatch):
    store = RealStore(tmp_path)
    store.open()
    store.append(_batch(0, 0, 4))
    store.sync()
    store.append(_batch(0, 4, 4))
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError):
        store.sync()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.next_seq("r1", 0) == 4 and store.rows_total == 4  # rolled back
    store.append(_batch(0, 4, 4))
    store.close()
    store = RealStore(tmp_path)
    report = store.open()
    assert report.rows == 8 and report.damaged_bytes == 0 and report.duplicate_records == 0
    store.close()


def test_non_contiguous_append_refused(tmp_path):
    store = RealStore(tmp_path)
    store.open()
    store.append(_batch(0, 0, 4))
    with pytest.raises(StoreError):
        store.append(_batch(0, 10, 4))
    with pytest.raises(StoreError):
        store.append(_batch(1, 5, 4))  # a new stream starts at 0 (or is declared)
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

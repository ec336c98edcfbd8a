"""Disk spool: durable append, ack deletes segments, survives a restart (and a torn tail), bounded."""

from __future__ import annotations

import os

from onboard.spool import Spool


def fill(sp: Spool, n: int, stream: str = "s1", rows: int = 10, size: int = 100) -> None:
    for i in range(n):
        sp.append(stream, i * rows, i * rows + rows - 1, bytes([i % 256]) * size)


def test_append_read_back_and_ack_deletes_segments(tmp_path):
    sp = Spool(str(tmp_path), segment_bytes=400)
    fill(sp, 6)
    assert sp.pending_rows == 60
    assert sp.read(sp.records[3]) == bytes([3]) * 100
    assert len(os.listdir(tmp_path)) >= 2
    assert sp.ack("s1", 29) == 30
    assert [r.first_seq for r in sp.records] == [30, 40, 50]
    assert sp.ack("s1", 29) == 0  # stale ack: nothing
    sp.ack("s1", 59)
    assert sp.records == [] and os.listdir(tmp_path) == []
    fill(sp, 1, stream="s2")  # appending after everything was deleted starts a new segment
    assert sp.read(sp.records[0]) == bytes([0]) * 100


def test_unacked_batches_survive_restart_and_torn_tail_is_ignored(tmp_path):
    sp = Spool(str(tmp_path), segment_bytes=10_000)
    fill(sp, 5)
    sp.ack("s1", 9)
    sp.close()
    seg = sorted(os.listdir(tmp_path))[-1]
    with open(tmp_path / seg, "ab") as f:
        f.write(b"\x50\x00\x00\x00garbage")  # a record cut off mid-write by kill -9
    sp2 = Spool(str(tmp_path), segment_bytes=10_000)
    # The acked first batch is still on disk (same segment) and comes back: at-least-once.
    assert [r.first_seq for r in sp2.records] == [0, 10, 20, 30, 40]
    assert sp2.torn_records == 1
    assert sp2.read(sp2.records[4]) == bytes([4]) * 100
    fill(sp2, 1, stream="s9")
    assert sp2.read(sp2.records[-1]) == bytes([0]) * 100


def test_has_room_bounds_the_spool_and_acks_free_it(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=1000, segment_bytes=300)
    n = 0
    while sp.has_room(100):
        sp.append("s1", n * 10, n * 10 + 9, bytes([n]) * 100)
        n += 1
    assert 3 <= n <= 10 and sp.bytes_on_disk <= 1000
    assert [r.first_seq for r in sp.records] == [i * 10 for i in range(n)]  # contiguous: no hole
    sp.ack("s1", 29)
    assert sp.has_room(100)


def test_a_damaged_record_costs_that_record_not_the_ones_after_it(tmp_path):
    """A flipped byte inside one batch (or in its marker) must not lose the unacknowledged batches
    written after it in the same segment (before the shared framing, reading stopped there)."""
    sp = Spool(str(tmp_path), segment_bytes=100_000)
    fill(sp, 6)
    damaged = [sp.records[3], sp.records[0]]  # a payload byte of batch 3, the marker of batch 0
    sp.close()
    seg = tmp_path / sorted(os.listdir(tmp_path))[0]
    data = bytearray(seg.read_bytes())
    data[damaged[0].offset + 10] ^= 0x40
    data[0] ^= 0x01
    seg.write_bytes(bytes(data))
    sp2 = Spool(str(tmp_path), segment_bytes=100_000)
    assert [r.first_seq for r in sp2.records] == [10, 20, 40, 50]
    assert sp2.torn_records == 2  # two damaged places
    assert [sp2.read(r) for r in sp2.records] == [bytes([i]) * 100 for i in (1, 2, 4, 5)]
    # what HELLO declares: the first held row per stream (10) and the rows lost above it
    assert sp2.gaps() == {"s1": [30, 40]}


def test_segments_of_the_old_framing_are_still_read(tmp_path):
    """Batches a robot spooled before an upgrade are sent after it (u32 length, u32 crc, body)."""
    import struct
    import zlib

    import msgpack

    body = [msgpack.packb(["s1", i * 10, i * 10 + 9, bytes([i]) * 50], use_bin_type=True) for i in range(3)]
    (tmp_path / "seg-00000001.spool").write_bytes(b"".join(struct.pack("<II", len(b), zlib.crc32(b)) + b for b in body))
    sp = Spool(str(tmp_path))
    assert [r.first_seq for r in sp.records] == [0, 10, 20]
    assert sp.read(sp.records[2]) == bytes([2]) * 50
    fill(sp, 1, stream="s2")  # new batches go to a new segment in the current framing
    assert sp.read(sp.records[-1]) == bytes([0]) * 100 and len(os.listdir(tmp_path)) == 2

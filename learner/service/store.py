"""The durable real-transition store: append-only segment files that survive kill -9.

Why: the robot deletes a transition from its spool once the learner ACKs it, so the learner may
ACK only what is on disk. Records are appended to the current segment and made durable in batches
(one fsync per ingest batch, not per message); ACKs go out after `sync()` returns.

Record layout (little-endian): magic b"H2OR" | u32 payload length | u32 crc32(payload) | payload,
payload = msgpack {"robot", "stream", "first_seq", "n", "cols": {name: [dtype, shape, bytes]}}.
On open every segment is scanned; the first record that is short or fails its CRC marks a torn
tail (a write cut by a crash): the file is truncated there and the loss is logged. Rows in a torn
record were never ACKed, so the robot still holds them and resends.

Exactly-once: `next_seq(robot, stream)` is the next row the store expects on each stream (rows are
stored contiguously, in order); ingest drops what is below it and refuses gaps.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"H2OR"
HEADER = struct.Struct("<4sII")
SEGMENT_GLOB = "seg-*.log"
MAX_RECORD_BYTES = 256 * 1024 * 1024  # a sanity bound when reading a length from disk


class StoreError(RuntimeError):
    """The store cannot be opened or written (disk full, permissions, a foreign file)."""


@dataclass
class StoredBatch:
    """One stored record: `n` contiguous rows of one stream, starting at `first_seq`."""

    robot: str
    stream: str
    first_seq: int
    columns: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass
class RecoveryReport:
    """What `open()` found: records and rows kept, bytes cut from torn tails."""

    segments: int = 0
    records: int = 0
    rows: int = 0
    truncated_bytes: int = 0
    truncated_files: list[str] = field(default_factory=list)


def _encode_columns(columns: dict[str, np.ndarray]) -> dict[str, list]:
    out = {}
    for name, arr in columns.items():
        arr = np.ascontiguousarray(arr)
        out[name] = [arr.dtype.str, list(arr.shape), arr.tobytes()]
    return out


def _decode_columns(raw: dict) -> dict[str, np.ndarray]:
    return {name: np.frombuffer(buf, dtype=np.dtype(dt)).reshape(shape)
            for name, (dt, shape, buf) in raw.items()}


def encode_record(batch: StoredBatch) -> bytes:
    payload = msgpack.packb({"robot": batch.robot, "stream": str(batch.stream),
                             "first_seq": int(batch.first_seq), "n": batch.n,
                             "cols": _encode_columns(batch.columns)}, use_bin_type=True)
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _scan(path: Path) -> tuple[list[tuple[int, bytes]], int, int]:
    """Read valid records of one segment: ([(offset, payload)], good_end, file_size)."""
    data = path.read_bytes()
    records: list[tuple[int, bytes]] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        magic, length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[pos + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            break
        records.append((pos, payload))
        pos = end
    return records, pos, len(data)


class RealStore:
    """Append-only, crash-safe store of streamed real transitions (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, segment_bytes: int = 64 * 1024 * 1024,
                 fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = int(segment_bytes)
        self.fsync = fsync
        self._next_seq: dict[tuple[str, str], int] = {}
        self._file = None
        self._segment_index = 0
        self._pending_records = 0
        self.rows_total = 0
        self.records_total = 0
        self.syncs = 0

    # ----------------------------------------------------------------- lifecycle
    def open(self) -> RecoveryReport:
        """Scan all segments, truncate torn tails, rebuild the dedup index, open for append."""
        self.directory.mkdir(parents=True, exist_ok=True)
        report = RecoveryReport()
        segments = sorted(self.directory.glob(SEGMENT_GLOB))
        for path in segments:
            report.segments += 1
            records, good_end, size = _scan(path)
            if good_end < size:
                log.warning("store: torn tail in %s: truncating %d bytes at offset %d",
                            path.name, size - good_end, good_end)
                with open(path, "r+b") as f:
                    f.truncate(good_end)
                    f.flush()
                    os.fsync(f.fileno())
                report.truncated_bytes += size - good_end
                report.truncated_files.append(path.name)
            for _, payload in records:
                meta = msgpack.unpackb(payload, raw=False)
                key = (meta["robot"], str(meta["stream"]))
                self._next_seq[key] = int(meta["first_seq"]) + int(meta["n"])
                report.records += 1
                report.rows += int(meta["n"])
        self.rows_total = report.rows
        self.records_total = report.records
        if segments:
            self._segment_index = int(segments[-1].stem.split("-")[1])
        self._open_segment(self._segment_index)
        return report

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def _open_segment(self, index: int) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
        self._segment_index = index
        path = self.directory / f"seg-{index:06d}.log"
        self._file = open(path, "ab")
        if self.fsync:  # make the new directory entry durable too
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ----------------------------------------------------------------- writing
    def next_seq(self, robot: str, stream: str) -> int | None:
        """The next sequence number this store expects on (robot, stream); None if never seen."""
        return self._next_seq.get((robot, str(stream)))

    def acked_of(self, robot: str) -> dict[str, int]:
        """stream -> last stored seq, for one robot (the WELCOME's `acked` map)."""
        return {stream: nxt - 1 for (r, stream), nxt in self._next_seq.items() if r == robot}

    def append(self, batch: StoredBatch) -> None:
        """Buffer one record (not yet durable: call `sync()` before ACKing it).

        The caller has already deduplicated: `batch.first_seq` must equal `next_seq` for a known
        stream.
        """
        if self._file is None:
            raise StoreError("store is not open")
        key = (batch.robot, str(batch.stream))
        expected = self._next_seq.get(key)
        if expected is not None and batch.first_seq != expected:
            raise StoreError(f"non-contiguous append on {key}: first_seq {batch.first_seq}, "
                             f"expected {expected}")
        record = encode_record(batch)
        if self._file.tell() + len(record) > self.segment_bytes and self._file.tell() > 0:
            self._open_segment(self._segment_index + 1)
        try:
            self._file.write(record)
        except OSError as exc:
            raise StoreError(f"store write failed: {exc}") from exc
        self._next_seq[key] = batch.first_seq + batch.n
        self._pending_records += 1
        self.rows_total += batch.n
        self.records_total += 1

    def sync(self) -> None:
        """Flush and fsync what was appended: after this returns it survives kill -9 and power loss
        (as far as the disk honours fsync)."""
        if self._file is None or self._pending_records == 0:
            return
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._pending_records = 0
        self.syncs += 1

    # ----------------------------------------------------------------- reading
    def iter_batches(self) -> Iterator[StoredBatch]:
        """Every stored record in append order (reads the files; call after `open()`)."""
        if self._file is not None:
            self._file.flush()
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            records, _, _ = _scan(path)
            for _, payload in records:
                meta = msgpack.unpackb(payload, raw=False)
                yield StoredBatch(robot=meta["robot"], stream=str(meta["stream"]),
                                  first_seq=int(meta["first_seq"]),
                                  columns=_decode_columns(meta["cols"]))

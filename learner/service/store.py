"""The durable real-transition store: append-only segment files that survive kill -9.

Why: the robot deletes a transition from its spool once the learner ACKs it, so the learner may
ACK only what it can read back after a crash. Records are appended to the current segment and
made durable in batches (one fsync per server round, not per message); ACKs go out after `sync()`
returns. A failed write or fsync (disk full, I/O error) cuts the segment back to the end of the
last successful sync and rolls the index back before anything else can be acknowledged, so no
partial record is ever followed by acknowledged ones.

Record layout: the project's record framing (protocol/record_log.py: magic b"H2OR" | u32 payload
length | u32 crc32(payload) | payload, shared with the robot's spool), payload = msgpack {"robot", "stream", "first_seq", "n", "cols": {name: [dtype, shape, bytes]}}.
A "lost" record ({"lost": reason, no columns}) marks rows that neither robot nor learner holds,
so a stream can move past them (recorded once, loudly).

Recovery: every segment is scanned record by record; a record that is short, fails its CRC or
does not decode is skipped by searching for the next magic marker that starts a valid record
(resync), so one flipped byte costs one record, not the rest of the file. A damaged segment is
moved aside into `damaged/` (kept for inspection) and replaced by a clean copy of its valid
records; nothing is truncated in place. Holes that recovery finds in a stream are reported by
(robot, stream, rows): the robot resends them if it still holds them; what it no longer holds is
recorded as lost when it next says HELLO (see `LearnerServer`).

Streams start at seq 0. Per stream the store keeps the merged intervals of rows it holds (stored
or recorded lost); `next_seq` is the end of the first interval, i.e. the first row it still needs.
Files in the folder that are not `seg-<digits>.log` are left alone (and reported).
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from protocol.atomic_file import fsync_dir
from protocol.record_log import frame, scan

log = logging.getLogger(__name__)

SEGMENT_GLOB = "seg-*.log"
SEGMENT_RE = re.compile(r"seg-(\d{6,})\.log")
DAMAGED_DIR = "damaged"

Key = tuple[str, str]


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
class Hole:
    """Rows [first, end) of a stream that recovery could not read (pending until resolved)."""

    robot: str
    stream: str
    first: int
    end: int

    def __str__(self) -> str:
        return f"robot {self.robot!r} stream {self.stream!r} rows {self.first}..{self.end - 1}"


@dataclass
class RecoveryReport:
    """What `open()` found: records and rows kept, damaged bytes skipped, holes per stream."""

    segments: int = 0
    records: int = 0
    rows: int = 0
    lost_rows: int = 0  # rows recorded as lost by earlier runs (lost records)
    damaged_bytes: int = 0
    damaged_files: list[str] = field(default_factory=list)  # moved into damaged/ (or left)
    foreign_files: list[str] = field(default_factory=list)
    duplicate_records: int = 0
    holes: list[Hole] = field(default_factory=list)

    @property
    def truncated_bytes(self) -> int:  # the old name (nothing is truncated any more)
        return self.damaged_bytes


def _encode_columns(columns: dict[str, np.ndarray]) -> dict[str, list]:
    out = {}
    for name, arr in columns.items():
        arr = np.ascontiguousarray(arr)
        out[name] = [arr.dtype.str, list(arr.shape), arr.tobytes()]
    return out


def _decode_columns(raw: dict) -> dict[str, np.ndarray]:
    return {name: np.frombuffer(buf, dtype=np.dtype(dt)).reshape(shape)
            for name, (dt, shape, buf) in raw.items()}


def _frame(meta: dict) -> bytes:
    return frame(msgpack.packb(meta, use_bin_type=True))


def encode_record(batch: StoredBatch) -> bytes:
    return _frame({"robot": batch.robot, "stream": str(batch.stream),
                   "first_seq": int(batch.first_seq), "n": batch.n,
                   "cols": _encode_columns(batch.columns)})


def _decode_meta(payload: bytes) -> dict | None:
    """A store record's metadata, or None if it is not one."""
    meta = msgpack.unpackb(payload, raw=False)
    if not isinstance(meta, dict):
        return None
    meta["robot"], meta["stream"] = str(meta["robot"]), str(meta["stream"])
    meta["first_seq"], meta["n"] = int(meta["first_seq"]), int(meta["n"])
    if meta["first_seq"] < 0 or meta["n"] < 0:
        return None
    return meta


def scan_segment(data: bytes) -> tuple[list[tuple[int, int, dict]], list[tuple[int, int]]]:
    """Valid records [(offset, end, meta)] and damaged byte ranges [(start, end)] of a segment,
    resyncing on the record marker after a bad record (protocol/record_log.py)."""
    return scan(data, _decode_meta)


class _Intervals:
    """Merged, sorted [start, end) intervals of the rows one stream holds."""

    __slots__ = ("iv",)

    def __init__(self, iv: list[list[int]] | None = None) -> None:
        self.iv: list[list[int]] = iv if iv is not None else []

    def copy(self) -> "_Intervals":
        return _Intervals([list(x) for x in self.iv])

    def next_seq(self) -> int:
        return self.iv[0][1] if self.iv and self.iv[0][0] == 0 else 0

    def covered_end(self, seq: int) -> int:
        """End of the interval holding `seq`, or `seq` when it is not held."""
        i = bisect.bisect_right(self.iv, [seq, float("inf")]) - 1
        if i >= 0 and self.iv[i][0] <= seq < self.iv[i][1]:
            return self.iv[i][1]
        return seq

    def next_start(self, seq: int) -> int | None:
        """Start of the first interval beginning after `seq`."""
        i = bisect.bisect_right(self.iv, [seq, float("inf")])
        return self.iv[i][0] if i < len(self.iv) else None

    def overlap(self, a: int, b: int) -> int:
        return sum(max(0, min(b, e) - max(a, s)) for s, e in self.iv)

    def add(self, a: int, b: int) -> None:
        if b <= a:
            return
        out: list[list[int]] = []
        placed = False
        for s, e in self.iv:
            if e < a:
                out.append([s, e])
            elif b < s:
                if not placed:
                    out.append([a, b])
                    placed = True
                out.append([s, e])
            else:
                a, b = min(a, s), max(b, e)
        if not placed:
            out.append([a, b])
        out.sort()
        self.iv = out

    def holes(self) -> list[tuple[int, int]]:
        out, prev = [], 0
        for s, e in self.iv:
            if s > prev:
                out.append((prev, s))
            prev = e
        return out


class RealStore:
    """Append-only, crash-safe store of streamed real transitions (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, segment_bytes: int = 64 * 1024 * 1024,
                 fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = int(segment_bytes)
        self.fsync = fsync
        self._streams: dict[Key, _Intervals] = {}
        self._fd: int | None = None
        self._segment_index = 0
        self._size = 0  # bytes in the open segment
        self._durable_end = 0  # bytes of the open segment made durable by the last sync
        self._pending_records = 0
        self._undo: dict[Key, _Intervals | None] = {}  # index state at the last sync
        self._undo_totals: tuple[int, int, int] | None = None
        self.rows_total = 0
        self.records_total = 0
        self.rows_lost = 0
        self.syncs = 0
        self.write_failures = 0
        self.last_report = RecoveryReport()

    # ----------------------------------------------------------------- lifecycle
    def _segment_paths(self, report: RecoveryReport | None = None) -> list[tuple[int, Path]]:
        out = []
        for path in self.directory.glob(SEGMENT_GLOB):
            m = SEGMENT_RE.fullmatch(path.name)
            if m is None or not path.is_file():
                if report is not None:
                    report.foreign_files.append(path.name)
                continue
            out.append((int(m.group(1)), path))
        return sorted(out)

    def open(self) -> RecoveryReport:
        """Scan all segments (resync past damage, move damaged files aside), rebuild the index,
        open a segment for appending. Raises StoreError if the folder cannot be used."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.directory}: {exc}") from exc
        report = RecoveryReport()
        segments = self._segment_paths(report)
        for name in report.foreign_files:
            log.warning("store: %s/%s is not a segment (seg-<digits>.log): left untouched and "
                        "ignored; move it out of the store folder", self.directory, name)
        last_clean = True
        for _, path in segments:
            report.segments += 1
            data = path.read_bytes()
            records, bad = scan_segment(data)
            for _off, _end, meta in records:
                self._index_record(meta, report)
            last_clean = not bad
            if bad:
                self._set_aside(path, data, records, bad, report)
        self.rows_total = report.rows
        self.records_total = report.records
        self.rows_lost = report.lost_rows
        for key, iv in self._streams.items():
            for a, b in iv.holes():
                report.holes.append(Hole(key[0], key[1], a, b))
        for hole in report.holes:
            log.warning("store: %s are unreadable; the robot resends them if it still holds "
                        "them, otherwise they are recorded as lost when it next connects", hole)
        self.last_report = report
        index = segments[-1][0] if segments else 0
        if segments and not last_clean:
            index += 1  # never append behind damage
        self._open_segment(index)
        return report

    def _index_record(self, meta: dict, report: RecoveryReport) -> None:
        key = (meta["robot"], meta["stream"])
        iv = self._streams.setdefault(key, _Intervals())
        a, n = meta["first_seq"], meta["n"]
        if iv.overlap(a, a + n):
            report.duplicate_records += 1  # a rolled-back write that reached the disk anyway
        iv.add(a, a + n)
        report.records += 1
        if meta.get("lost"):
            report.lost_rows += n
        else:
            report.rows += n

    def _set_aside(self, path: Path, data: bytes, records, bad, report: RecoveryReport) -> None:
        """Move a damaged segment into damaged/ and put a clean copy of its valid records in its
        place (write the copy first: a failure leaves the original where it was)."""
        n_bad = sum(e - s for s, e in bad)
        report.damaged_bytes += n_bad
        report.damaged_files.append(path.name)
        where = ", ".join(f"{s}..{e}" for s, e in bad[:5])
        try:
            aside_dir = self.directory / DAMAGED_DIR
            aside_dir.mkdir(exist_ok=True)
            aside = aside_dir / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
            tmp = path.with_name(f".{path.name}.repair")
            with open(tmp, "wb") as f:
                for off, end, _meta in records:
                    f.write(data[off:end])
                f.flush()
                os.fsync(f.fileno())
            os.link(path, aside)  # keep the original bytes; then swap in the clean copy
            os.replace(tmp, path)
            self._fsync_dir(self.directory)
            self._fsync_dir(aside_dir)
            log.warning("store: %s had %d damaged byte(s) at %s; %d valid record(s) kept, the "
                        "original moved to %s", path.name, n_bad, where, len(records), aside)
        except OSError as exc:
            path.with_name(f".{path.name}.repair").unlink(missing_ok=True)
            log.error("store: %s has %d damaged byte(s) at %s and could not be set aside (%s); "
                      "it is read past the damage and no longer appended to", path.name, n_bad,
                      where, exc)

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def _fsync_dir(self, directory: Path) -> None:
        if self.fsync:
            fsync_dir(directory)

    def _open_segment(self, index: int) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
        self._segment_index = index
        path = self.directory / f"seg-{index:06d}.log"
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._size = self._durable_end = os.fstat(self._fd).st_size
            self._fsync_dir(self.directory)  # make the new directory entry durable too
        except OSError as exc:
            raise StoreError(f"cannot open segment {path}: {exc}") from exc

    # ----------------------------------------------------------------- index
    def next_seq(self, robot: str, stream: str) -> int | None:
        """The first row this store still needs on (robot, stream); None if never seen."""
        iv = self._streams.get((robot, str(stream)))
        return None if iv is None else iv.next_seq()

    def covered_end(self, robot: str, stream: str, seq: int) -> int:
        """End of the held interval containing `seq` (or `seq` when it is not held)."""
        iv = self._streams.get((robot, str(stream)))
        return seq if iv is None else iv.covered_end(seq)

    def next_held_start(self, robot: str, stream: str, seq: int) -> int | None:
        iv = self._streams.get((robot, str(stream)))
        return None if iv is None else iv.next_start(seq)

    def acked_seq(self, robot: str, stream: str) -> int:
        """The cumulative ACK of a stream: every row <= it is held (stored or recorded lost)."""
        nxt = self.next_seq(robot, stream)
        return -1 if nxt is None else nxt - 1

    def acked_of(self, robot: str) -> dict[str, int]:
        """stream -> last stored seq, for one robot (every stream; may be long)."""
        return {stream: iv.next_seq() - 1 for (r, stream), iv in self._streams.items()
                if r == robot}

    def rows_of(self, robot: str) -> int:
        """Rows this store holds of one robot's streams (stored, or recorded lost), in the index
        as of now: a fleet's per-robot count. Safe to call from another thread (a snapshot)."""
        return sum(e - a for (r, _), iv in list(self._streams.items()) if r == robot
                   for a, e in list(iv.iv))

    # ----------------------------------------------------------------- writing
    def _remember(self, key: Key) -> None:
        if self._undo_totals is None:
            self._undo_totals = (self.rows_total, self.records_total, self.rows_lost)
        if key not in self._undo:
            iv = self._streams.get(key)
            self._undo[key] = None if iv is None else iv.copy()

    def _write(self, record: bytes) -> None:
        if self._fd is None:
            self._open_segment(self._segment_index + 1)
        elif self._size + len(record) > self.segment_bytes and self._size > 0:
            self._open_segment(self._segment_index + 1)
        view = memoryview(record)
        try:
            while view:
                n = os.write(self._fd, view)
                self._size += n
                view = view[n:]
        except OSError as exc:
            self._fail(f"write to seg-{self._segment_index:06d}.log failed: {exc}")

    def append(self, batch: StoredBatch) -> None:
        """Buffer one record at the stream's next row (durable after `sync()`).

        The caller has already deduplicated: `batch.first_seq` must equal `next_seq` (0 for a new
        stream) and the rows must not reach into rows already held."""
        key = (batch.robot, str(batch.stream))
        iv = self._streams.get(key)
        expected = 0 if iv is None else iv.next_seq()
        nxt = None if iv is None else iv.next_start(batch.first_seq)
        if batch.first_seq != expected or (nxt is not None and batch.first_seq + batch.n > nxt):
            raise StoreError(f"non-contiguous append on {key}: rows {batch.first_seq}.."
                             f"{batch.first_seq + batch.n - 1}, expected {expected}")
        self._remember(key)
        self._write(encode_record(batch))
        self._streams.setdefault(key, _Intervals()).add(batch.first_seq, batch.first_seq + batch.n)
        self._pending_records += 1
        self.rows_total += batch.n
        self.records_total += 1

    def record_lost(self, robot: str, stream: str, first: int, end: int, reason: str) -> int:
        """Record rows [first, end) as lost (neither side holds them): only the parts not held
        yet; returns how many rows were newly recorded. Durable after `sync()`."""
        key = (robot, str(stream))
        iv = self._streams.get(key) or _Intervals()
        newly = 0
        pos = first
        while pos < end:
            pos = iv.covered_end(pos)
            if pos >= end:
                break
            stop = min(end, iv.next_start(pos) or end)
            self._remember(key)
            self._write(_frame({"robot": robot, "stream": str(stream), "first_seq": pos,
                                "n": stop - pos, "lost": reason[:200], "cols": {}}))
            iv.add(pos, stop)
            self._streams[key] = iv
            self._pending_records += 1
            self.records_total += 1
            self.rows_lost += stop - pos
            newly += stop - pos
            pos = stop
        return newly

    def sync(self) -> None:
        """Flush and fsync what was appended: after this returns it survives kill -9 and power loss
        (as far as the disk honours fsync). On failure the appended records are cut off again and
        StoreError is raised: nothing of them may be acknowledged."""
        if self._pending_records == 0:
            return
        if self.fsync and self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fail(f"fsync of seg-{self._segment_index:06d}.log failed: {exc}")
        self._durable_end = self._size
        self._pending_records = 0
        self._undo.clear()
        self._undo_totals = None
        self.syncs += 1

    def _fail(self, what: str) -> None:
        """Undo everything since the last sync (file and index), then raise StoreError."""
        self.write_failures += 1
        for key, iv in self._undo.items():
            if iv is None:
                self._streams.pop(key, None)
            else:
                self._streams[key] = iv
        if self._undo_totals is not None:
            self.rows_total, self.records_total, self.rows_lost = self._undo_totals
        self._undo.clear()
        self._undo_totals = None
        self._pending_records = 0
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._durable_end)
                os.fsync(self._fd)
                self._size = self._durable_end
            except OSError as exc:  # cannot cut it: never append behind the partial record
                log.error("store: cannot cut seg-%06d.log back to %d bytes (%s); starting a new "
                          "segment", self._segment_index, self._durable_end, exc)
                os.close(self._fd)
                self._fd = None
        raise StoreError(f"{what} (nothing since the last sync is kept or acknowledged)")

    # ----------------------------------------------------------------- reading
    def iter_batches(self) -> Iterator[StoredBatch]:
        """Every stored record in append order, each row once (reads the files; lost records and
        rows seen before are skipped)."""
        seen: dict[Key, _Intervals] = {}
        for _, path in self._segment_paths():
            records, _bad = scan_segment(path.read_bytes())
            for _off, _end, meta in records:
                key = (meta["robot"], meta["stream"])
                iv = seen.setdefault(key, _Intervals())
                a, n = meta["first_seq"], meta["n"]
                if meta.get("lost") or n == 0:
                    continue
                fresh = np.array([iv.covered_end(s) == s for s in range(a, a + n)]) \
                    if iv.overlap(a, a + n) else None
                iv.add(a, a + n)
                cols = _decode_columns(meta["cols"])
                if fresh is not None:
                    if not fresh.any():
                        continue
                    idx = np.flatnonzero(fresh)  # rows held before: keep the first copy
                    cols = {k: v[idx] for k, v in cols.items()}
                    a += int(idx[0])
                yield StoredBatch(robot=meta["robot"], stream=meta["stream"], first_seq=a,
                                  columns=cols)

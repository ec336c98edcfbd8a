"""A bounded, crash-safe disk spool of encoded TRANSITIONS batches, deleted once acknowledged.

Why: the learner may be away for a minute or the robot process may be restarted; no transition
may be lost (at-least-once delivery; the learner dedups on (robot, stream, seq)). Every batch is
appended to a segment file and fsync'd before it is sent, so what was handed to the spool
survives kill -9. A segment is deleted when every record in it is acknowledged. On start-up the
spool re-reads its segments and everything in them is resent; a torn or damaged record is skipped
and the records after it are still read (resync on the record marker), so one bad byte costs one
batch, which the learner then reports as a hole.

Record layout: the project's record framing (protocol/record_log.py, shared with the learner's
store: magic, u32 length, u32 crc32, payload), payload = msgpack [stream_id, first_seq, last_seq,
message bytes]. Segments are named seg-<n>.spool, n increasing; a new one is started after a
restart, so nothing is appended behind damage. Segments written before this framing (u32 length,
u32 crc32, payload; no marker) are still read.

Bounded: a batch that would take the spool past `max_bytes` is refused (`has_room`), before
it gets sequence numbers, and counted by the caller. Dropping the oldest data instead would
leave a hole in an already numbered stream, which the learner refuses (it stores streams
contiguously); at 200 Hz the default bound holds hours of outage.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass

import msgpack

from protocol.atomic_file import fsync_dir
from protocol.record_log import HEADER, MAGIC, frame, scan

log = logging.getLogger(__name__)

LEGACY_HEADER = struct.Struct("<II")  # segments written before the shared framing
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".spool"


def _decode_body(body: bytes) -> tuple[str, int, int, bytes] | None:
    """[stream_id, first_seq, last_seq, message] of one spool record, or None."""
    try:
        stream_id, first, last, msg = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):  # passed the CRC, but not a spool record
        return None
    if not (isinstance(stream_id, str) and isinstance(msg, bytes) and 0 <= int(first) <= int(last)):
        return None
    return stream_id, int(first), int(last), msg


def _legacy_first_record_ok(data: bytes) -> bool:
    """Whether a segment starts with a valid record of the framing used before the marker (a
    segment of the current framing whose first marker is damaged does not)."""
    if len(data) < LEGACY_HEADER.size:
        return False
    length, crc = LEGACY_HEADER.unpack_from(data, 0)
    body = data[LEGACY_HEADER.size:LEGACY_HEADER.size + length]
    return len(body) == length and zlib.crc32(body) == crc


class SpoolError(RuntimeError):
    """The spool directory cannot be used (not writable, not a directory)."""


@dataclass
class SpoolRecord:
    """Where one batch lives on disk."""

    stream_id: str
    first_seq: int
    last_seq: int
    segment: int
    offset: int  # of the message bytes inside the segment file
    length: int


class Spool:
    """Append, read back, acknowledge. Single-threaded: the streamer thread owns it."""

    def __init__(self, directory: str, max_bytes: int = 256 * 1024 * 1024, segment_bytes: int = 1024 * 1024, fsync: bool = True) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"cannot create spool directory {directory!r}: {e}") from None
        if not os.access(directory, os.W_OK):
            raise SpoolError(f"spool directory {directory!r} is not writable")
        self.records: list[SpoolRecord] = []  # unacknowledged, in append order
        self.acked: dict[str, int] = {}
        self.torn_records = 0  # bad tails found at recovery
        self._seg_sizes: dict[int, int] = {}
        self._cur: int | None = None
        self._cur_file = None
        self._recover()

    # ------------------------------------------------------------------ paths and recovery
    def _path(self, seg: int) -> str:
        return os.path.join(self.dir, f"{SEGMENT_PREFIX}{seg:08d}{SEGMENT_SUFFIX}")

    def _segments_on_disk(self) -> list[int]:
        segs = []
        for name in os.listdir(self.dir):
            if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
                try:
                    segs.append(int(name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]))
                except ValueError:
                    continue
        return sorted(segs)

    def _recover(self) -> None:
        for seg in self._segments_on_disk():
            with open(self._path(seg), "rb") as f:
                data = f.read()
            if data and not data.startswith(MAGIC) and _legacy_first_record_ok(data):
                found, end = self._recover_legacy(seg, data)
            else:
                records, bad = scan(data, _decode_body)
                for _off, end_, (stream_id, first, last, msg) in records:
                    self.records.append(SpoolRecord(stream_id, first, last, seg, end_ - len(msg), len(msg)))
                for start, stop in bad:
                    self.torn_records += 1
                    log.warning("spool segment %d: %d damaged byte(s) at %d skipped; the records after "
                                "them are kept", seg, stop - start, start)
                found, end = len(records), len(data)
            self._seg_sizes[seg] = end
            if found == 0:
                os.unlink(self._path(seg))
                del self._seg_sizes[seg]
        if self.records:
            log.info("spool: recovered %d unacknowledged batch(es) (%d rows) from %s", len(self.records), self.pending_rows, self.dir)

    def _recover_legacy(self, seg: int, data: bytes) -> tuple[int, int]:
        """Records of a segment in the framing used before protocol/record_log.py (no marker:
        reading stops at the first bad record)."""
        pos, found = 0, 0
        while pos + LEGACY_HEADER.size <= len(data):
            length, crc = LEGACY_HEADER.unpack_from(data, pos)
            body = data[pos + LEGACY_HEADER.size: pos + LEGACY_HEADER.size + length]
            decoded = _decode_body(body) if len(body) == length and zlib.crc32(body) == crc else None
            if decoded is None:
                self.torn_records += 1
                log.warning("spool segment %d (old framing): torn record at byte %d ignored", seg, pos)
                break
            stream_id, first, last, msg = decoded
            end = pos + LEGACY_HEADER.size + length
            self.records.append(SpoolRecord(stream_id, first, last, seg, end - len(msg), len(msg)))
            pos, found = end, found + 1
        return found, pos

    # ------------------------------------------------------------------ append / read / ack
    def append(self, stream_id: str, first_seq: int, last_seq: int, msg: bytes) -> SpoolRecord:
        """Write one encoded batch durably (fsync) before it may be sent."""
        record = frame(msgpack.packb([stream_id, first_seq, last_seq, msg], use_bin_type=True))
        if self._cur is None or self._seg_sizes.get(self._cur, 0) + len(record) > self.segment_bytes:
            self._open_new_segment()
        assert self._cur_file is not None and self._cur is not None
        end = self._seg_sizes[self._cur] + len(record)
        self._cur_file.write(record)
        self._cur_file.flush()
        if self.fsync:
            os.fsync(self._cur_file.fileno())
        self._seg_sizes[self._cur] = end
        rec = SpoolRecord(stream_id, first_seq, last_seq, self._cur, end - len(msg), len(msg))
        self.records.append(rec)
        return rec

    def has_room(self, n_bytes: int) -> bool:
        """Whether a message of `n_bytes` fits under `max_bytes`."""
        return self.bytes_on_disk + n_bytes + HEADER.size + 64 <= self.max_bytes

    def read(self, rec: SpoolRecord) -> bytes:
        if rec.segment == self._cur and self._cur_file is not None:
            self._cur_file.flush()
        with open(self._path(rec.segment), "rb") as f:
            f.seek(rec.offset)
            return f.read(rec.length)

    def ack(self, stream_id: str, acked_seq: int) -> int:
        """Everything of `stream_id` up to `acked_seq` is stored; returns rows newly released."""
        if acked_seq <= self.acked.get(stream_id, -1):
            return 0
        self.acked[stream_id] = acked_seq
        keep, released = [], 0
        for r in self.records:
            if r.stream_id == stream_id and r.last_seq <= acked_seq:
                released += r.last_seq - r.first_seq + 1
            else:
                keep.append(r)
        self.records = keep
        self._delete_done_segments()
        return released

    def gaps(self, max_ranges: int = 64) -> dict[str, list[int]]:
        """stream -> [a0, b0, ...]: rows [a, b) between two held batches of a stream that this spool
        no longer holds (a damaged record skipped at recovery), at most `max_ranges` per stream.
        HELLO declares them so the learner records them as lost instead of awaiting them."""
        by_stream: dict[str, list[SpoolRecord]] = {}
        for r in self.records:
            by_stream.setdefault(r.stream_id, []).append(r)
        out: dict[str, list[int]] = {}
        for stream, recs in by_stream.items():
            recs.sort(key=lambda r: r.first_seq)
            flat: list[int] = []
            held_to = recs[0].last_seq + 1
            for r in recs[1:]:
                if r.first_seq > held_to and len(flat) < 2 * max_ranges:
                    flat += [held_to, r.first_seq]
                held_to = max(held_to, r.last_seq + 1)
            if flat:
                out[stream] = flat
        return out

    @property
    def pending_rows(self) -> int:
        return sum(r.last_seq - r.first_seq + 1 for r in self.records)

    @property
    def bytes_on_disk(self) -> int:
        return sum(self._seg_sizes.values())

    def close(self) -> None:
        if self._cur_file is not None:
            self._cur_file.close()
            self._cur_file = None
            self._cur = None

    # ------------------------------------------------------------------ internals
    def _open_new_segment(self) -> None:
        if self._cur_file is not None:
            self._cur_file.close()
        existing = self._segments_on_disk()
        self._cur = (max(existing) + 1) if existing else 1
        self._cur_file = open(self._path(self._cur), "ab")
        self._seg_sizes[self._cur] = 0
        if self.fsync:
            fsync_dir(self.dir)  # the new segment's directory entry survives a power cut

    def _delete_done_segments(self) -> None:
        live = {r.segment for r in self.records}
        for seg in list(self._seg_sizes):
            if seg in live:
                continue
            if seg == self._cur:
                self._cur_file.close()  # type: ignore[union-attr]
                self._cur_file, self._cur = None, None
            self._unlink(seg)

    def _unlink(self, seg: int) -> None:
        try:
            os.unlink(self._path(seg))
        except FileNotFoundError:
            pass
        self._seg_sizes.pop(seg, None)

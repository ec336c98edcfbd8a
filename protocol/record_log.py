"""The record framing of the project's crash-safe logs: the robot's spool of unacknowledged
batches (onboard/spool.py) and the learner's store of real transitions (learner/service/store.py).

Why one framing: both must survive kill -9 and a flipped byte without losing what follows it.
Record layout (little-endian): magic b"H2OR" | u32 payload length | u32 crc32(payload) | payload.
A reader scans record by record; a record that is short, fails its CRC or does not decode is
skipped by searching for the next magic marker that starts a valid record (resync), so damage
costs the damaged record, not the rest of the file. What a payload holds, and what each log does
with its segment files, is the log's own business (msgpack in both).
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable, TypeVar

MAGIC = b"H2OR"
HEADER = struct.Struct("<4sII")
MAX_RECORD_BYTES = 256 * 1024 * 1024  # a sanity bound when reading a length from disk

T = TypeVar("T")


def frame(payload: bytes) -> bytes:
    """One record: header, then the payload."""
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def parse_at(data: bytes, pos: int, decode: Callable[[bytes], T | None]) -> tuple[T, int] | None:
    """(decode(payload), end) of a valid record at `pos`, or None (short, bad CRC, or `decode`
    returned None or raised)."""
    if pos + HEADER.size > len(data):
        return None
    magic, length, crc = HEADER.unpack_from(data, pos)
    end = pos + HEADER.size + length
    if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = data[pos + HEADER.size:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        value = decode(payload)
    except Exception:  # noqa: BLE001 - a payload that passes the CRC but does not decode
        return None
    return None if value is None else (value, end)


def scan(data: bytes, decode: Callable[[bytes], T | None]) -> tuple[list[tuple[int, int, T]], list[tuple[int, int]]]:
    """Valid records [(offset, end, value)] and damaged byte ranges [(start, end)] of a segment,
    resyncing on the record marker after a bad record."""
    records: list[tuple[int, int, T]] = []
    bad: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        parsed = parse_at(data, pos, decode)
        if parsed is not None:
            records.append((pos, parsed[1], parsed[0]))
            pos = parsed[1]
            continue
        nxt = data.find(MAGIC, pos + 1)
        while nxt != -1 and parse_at(data, nxt, decode) is None:
            nxt = data.find(MAGIC, nxt + 1)
        end = len(data) if nxt == -1 else nxt
        bad.append((pos, end))
        pos = end
    return records, bad

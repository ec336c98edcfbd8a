"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): removes every 0x00 from a frame so
0x00 can delimit frames on the serial line and a reader resynchronises at the next 0x00.

Encoding: the data is cut at each 0x00 into pieces; each piece is written as a code byte
(piece length + 1) followed by the piece; pieces longer than 254 bytes are written as 0xFF
blocks of 254 bytes that imply no zero. Overhead: 1 byte per 254 bytes (our frames fit one block).
Both functions work per block (bytes.split / slicing), not per byte, to stay fast in CPython.
"""

from __future__ import annotations

MAX_BLOCK = 254  # data bytes per code byte


class CobsError(ValueError):
    """The encoded bytes are not valid COBS (a zero byte, or a block running past the end)."""


def cobs_encode(data: bytes) -> bytes:
    """Encode `data`; the result contains no 0x00 and is at most len + 1 + len // 254 bytes."""
    out = bytearray()
    pieces = data.split(b"\x00")
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        wrote_full_block = False
        while len(piece) >= MAX_BLOCK:
            out.append(0xFF)
            out += piece[:MAX_BLOCK]
            piece = piece[MAX_BLOCK:]
            wrote_full_block = True
        # Canonical COBS: data ending exactly on a full block needs no trailing empty block.
        if index == last and wrote_full_block and not piece:
            break
        out.append(len(piece) + 1)
        out += piece
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Decode one COBS frame (without its 0x00 delimiter). Raises CobsError when malformed."""
    out = bytearray()
    n = len(encoded)
    i = 0
    while i < n:
        code = encoded[i]
        if code == 0:
            raise CobsError(f"zero byte inside a COBS frame at offset {i}")
        end = i + code
        if end > n:
            raise CobsError(f"COBS block at offset {i} needs {code - 1} bytes, only {n - i - 1} left")
        block = encoded[i + 1 : end]
        if 0 in block:
            raise CobsError(f"zero byte inside a COBS block starting at offset {i}")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)

"""CRC-32 and COBS: check values, the reference CRC equals zlib's, COBS round trips with no zeros."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cobs import CobsError, cobs_decode, cobs_encode
from protocol.crc import CRC32_CHECK, crc32, crc32_reference


def test_crc32_check_value() -> None:
    assert crc32(b"123456789") == CRC32_CHECK == 0xCBF43926
    assert crc32_reference(b"123456789") == CRC32_CHECK
    assert crc32(b"") == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_crc32_reference_equals_zlib(data: bytes, start: int) -> None:
    assert crc32_reference(data, start) == crc32(data, start)


@pytest.mark.parametrize(
    "raw, encoded",
    [  # examples from Cheshire & Baker / Wikipedia's COBS article
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800) | st.lists(st.sampled_from([0, 1, 255]), max_size=600).map(bytes))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + 1 + len(data) // 254
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x00\x11", b"\x00"])
def test_cobs_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(CobsError):
        cobs_decode(bad)

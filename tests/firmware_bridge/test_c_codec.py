"""The C codec (firmware_bridge/c/h2o_protocol.h) agrees byte for byte with protocol/frames.py.

Both directions on random frames of every type (C encodes -> equal bytes, and Python decodes
them; Python encodes -> C decodes the same fields), and on corrupted streams: the same frames
accepted and the same drop counters. Values cross as text (floats as bit patterns) through
host/codec_tool.c, one process per batch, so a symmetric packing bug in C would still show.
"""

from __future__ import annotations

import random
import struct
import subprocess

import numpy as np
import pytest

from protocol.cobs import cobs_decode, cobs_encode, CobsError
from protocol.crc import crc32
from protocol.frames import (
    DROP_REASONS,
    HEADER,
    PAYLOAD_SIZE,
    Frame,
    FrameDecoder,
    FrameType,
    decode_frame,
    encode_frame,
    unpack_command,
    unpack_fault,
    unpack_heartbeat,
    unpack_state,
)

# The C tool prints drop counters in this order (its h2o_drop_reason order).
C_COUNTER_ORDER = ("oversized", "cobs", "short", "crc", "bad_version", "unknown_type", "bad_length")
assert set(C_COUNTER_ORDER) == set(DROP_REASONS)


def run_tool(tool, mode: str, lines: list[str]) -> list[str]:
    out = subprocess.run([str(tool), mode], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60, check=True).stdout
    result = out.split("\n")[:-1]
    assert len(result) == len(lines), "codec_tool answered a different number of lines"
    return result


def bits(values: np.ndarray) -> str:
    return " ".join(f"{b:08x}" for b in np.asarray(values, "<f4").view("<u4"))


def fields_text(frame: Frame) -> str:
    """`TYPE SEQ FIELDS` of a frame, decoded by the Python unpackers (codec_tool's format)."""
    head = f"{int(frame.type)} {frame.seq}"
    t = frame.type
    if t == FrameType.COMMAND:
        c = unpack_command(frame.payload)
        return f"{head} " + " ".join(bits(a) for a in (c.q_des, c.qd_des, c.kp, c.kd, c.tau_ff))
    if t == FrameType.STATE:
        s = unpack_state(frame.payload)
        floats = " ".join(bits(a) for a in (s.joint_pos, s.joint_vel, s.joint_torque, s.imu_quat, s.imu_gyro, s.imu_acc))
        return f"{head} {s.t_us} {floats} {s.mode} {s.faults}"
    if t == FrameType.HEARTBEAT:
        return f"{head} {unpack_heartbeat(frame.payload)}"
    if t == FrameType.FAULT:
        r = unpack_fault(frame.payload)
        return f"{head} {r.t_us} {r.faults} {r.detail}"
    return head


def random_payload(rng: random.Random, frame_type: FrameType) -> bytes:
    """Any bytes of the type's size: every float bit pattern (NaN payloads, inf, subnormals)."""
    n = PAYLOAD_SIZE[frame_type]
    if rng.random() < 0.2:  # typical values too, not only noise
        return np.float32(rng.uniform(-30, 30)).tobytes() * (n // 4) + bytes(n % 4)
    return bytes(rng.getrandbits(8) if rng.random() < 0.8 else rng.choice((0, 0xFF)) for _ in range(n))


def random_frames(rng: random.Random, n: int) -> list[Frame]:
    types = list(FrameType)
    return [Frame(t, rng.randrange(65536), random_payload(rng, t)) for t in (rng.choice(types) for _ in range(n))]


def decode_expected(stream: bytes, rng: random.Random) -> str:
    """What codec_tool's decode prints, computed by FrameDecoder fed in random chunks."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    i = 0
    while i < len(stream):
        step = rng.choice((1, 2, 7, 64, 300, 5000))
        frames += decoder.feed(stream[i : i + step])
        i += step
    counters = " ".join(str(decoder.dropped[k]) for k in C_COUNTER_ORDER)
    return ";".join(fields_text(f) for f in frames) + "|" + counters


# ---------------------------------------------------------------------------- primitives


def test_board_side_sources_build_with_mcu_strict_warnings(c_programs, tmp_path):
    from .c_programs import compile_portable

    result = compile_portable(tmp_path, c_programs.compiler)
    assert result.returncode == 0, result.stdout + result.stderr


def test_crc_and_cobs_agree_on_random_data(c_programs):
    rng = random.Random(1)
    data = [b"", b"123456789", bytes(254), bytes(range(1, 255)), bytes(range(1, 256)), bytes(range(256)) * 3]
    for _ in range(400):
        n = rng.choice((rng.randrange(20), rng.randrange(300), rng.randrange(1200), 253, 254, 255, 508, 509))
        alphabet = rng.choice((range(256), (0, 1), (0, 255), range(1, 256)))
        data.append(bytes(rng.choice(alphabet) for _ in range(n)))
    lines = [d.hex() for d in data]
    assert run_tool(c_programs.codec_tool, "crc", lines) == [f"{crc32(d):08x}" for d in data]
    encoded = run_tool(c_programs.codec_tool, "cobs-encode", lines)
    assert encoded == [cobs_encode(d).hex() for d in data]
    assert run_tool(c_programs.codec_tool, "cobs-decode", encoded) == lines
    # Malformed COBS: both refuse the same inputs (and agree on what the rest decodes to).
    garbage = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40))) for _ in range(400)]
    expected = []
    for g in garbage:
        try:
            expected.append(cobs_decode(g).hex())
        except CobsError:
            expected.append("error")
    assert run_tool(c_programs.codec_tool, "cobs-decode", [g.hex() for g in garbage]) == expected
    assert expected.count("error") > 50


# ---------------------------------------------------------------------------- random frames, both ways


def test_c_encodes_every_frame_type_byte_for_byte(c_programs):
    rng = random.Random(2)
    frames = random_frames(rng, 6000)
    assert {f.type for f in frames} == set(FrameType)
    wires = run_tool(c_programs.codec_tool, "encode", [fields_text(f) for f in frames])
    for frame, wire in zip(frames, wires):
        expected = encode_frame(frame.type, frame.seq, frame.payload)
        assert wire == expected.hex(), frame
        assert decode_frame(bytes.fromhex(wire)[:-1]) == frame  # and Python reads C's bytes back


def test_c_decodes_python_frames_of_every_type(c_programs):
    rng = random.Random(3)
    frames = random_frames(rng, 6000)
    streams = []
    for i in range(0, len(frames), 10):  # ten frames a stream, some with leading/extra delimiters
        chunk = frames[i : i + 10]
        streams.append(b"".join((b"\x00" if rng.random() < 0.2 else b"") + encode_frame(*f) for f in chunk))
    got = run_tool(c_programs.codec_tool, "decode", [s.hex() for s in streams])
    for i, line in enumerate(got):
        chunk = frames[i * 10 : i * 10 + 10]
        assert line == ";".join(fields_text(f) for f in chunk) + "|0 0 0 0 0 0 0"


# ---------------------------------------------------------------------------- corrupted streams


def raw_frame(version: int, frame_type: int, seq: int, payload: bytes, length: int | None = None) -> bytes:
    """A raw frame with a correct CRC over whatever header it is given (for checks after the CRC)."""
    body = HEADER.pack(version, frame_type, seq, len(payload) if length is None else length) + payload
    return body + struct.pack("<I", crc32(body))


def crafted_piece(rng: random.Random) -> bytes:
    """One 0x00-terminated piece aimed at a receiving check, or a valid frame."""
    kind = rng.randrange(9)
    t = rng.choice(list(FrameType))
    payload = random_payload(rng, t)
    if kind == 0:  # wrong version, CRC right
        raw = raw_frame(rng.choice((0, 2, 255)), t, 1, payload)
    elif kind == 1:  # unknown type
        raw = raw_frame(1, rng.choice((0, 9, 0x42, 255)), 1, payload[:rng.randrange(20)])
    elif kind == 2:  # header length disagrees with the bytes, or bytes disagree with the type
        raw = raw_frame(1, t, 1, payload, length=(len(payload) + rng.choice((-1, 1, 7))) % 65536)
        if rng.random() < 0.5:
            raw = raw_frame(1, t, 1, payload + b"\x01")
    elif kind == 3:  # shorter than header + crc
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 10)))
    elif kind == 4:  # raw frame longer than 254 bytes (COBS form > 255: oversized)
        raw = raw_frame(1, t, 1, bytes(rng.randrange(1, 256) for _ in range(rng.randrange(245, 400))))
    elif kind == 5:  # a non-zero run of exactly 255 or 256 bytes, then a delimiter
        return bytes(rng.randrange(1, 256) for _ in range(rng.choice((254, 255, 256, 257)))) + b"\x00"
    else:
        return encode_frame(t, rng.randrange(65536), payload)
    return cobs_encode(raw) + b"\x00"


def corrupt(rng: random.Random, stream: bytes) -> bytes:
    s = bytearray(stream)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(7)
        if not s:
            break
        i = rng.randrange(len(s))
        if op == 0:
            s[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del s[i : i + rng.randrange(1, 4)]
        elif op == 2:
            s[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 5)))
        elif op == 3:
            s[i:i] = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(200, 700)))  # long run, no 0x00
        elif op == 4:
            j = rng.randrange(len(s))
            s[i:i] = s[min(i, j) : max(i, j)]  # a stretch repeated
        elif op == 5:
            s = s[i:]  # receiver joins mid-stream
        else:
            s = s[:i]  # stream cut off
    return bytes(s)


def test_corrupted_streams_same_frames_and_same_drop_counters(c_programs):
    rng = random.Random(4)
    streams = []
    for _ in range(8000):
        pieces = [crafted_piece(rng) for _ in range(rng.randrange(1, 6))]
        stream = b"".join(pieces)
        streams.append(corrupt(rng, stream) if rng.random() < 0.7 else stream)
    got = run_tool(c_programs.codec_tool, "decode", [s.hex() for s in streams])
    expected = [decode_expected(s, rng) for s in streams]
    mismatches = [(s.hex(), g, e) for s, g, e in zip(streams, got, expected) if g != e]
    assert not mismatches, mismatches[:3]
    # The cases reached every counter and accepted frames too.
    totals = np.sum([[int(x) for x in e.split("|")[1].split()] for e in expected], axis=0)
    assert all(totals > 0), dict(zip(C_COUNTER_ORDER, totals))
    assert sum(bool(e.split("|")[0]) for e in expected) > 3000


@pytest.mark.parametrize("frame_type", [FrameType.STATE, FrameType.ENABLE])
def test_joining_mid_frame_counts_exactly_one_drop(c_programs, frame_type):
    rng = random.Random(5)
    first = encode_frame(frame_type, 1, random_payload(rng, frame_type))
    second = encode_frame(FrameType.HEARTBEAT, 2, struct.pack("<Q", 99))
    streams = [first[k:] + second for k in range(1, len(first))]
    got = run_tool(c_programs.codec_tool, "decode", [s.hex() for s in streams])
    for k, (stream, line) in enumerate(zip(streams, got), start=1):
        assert line == decode_expected(stream, rng)
        frames, counters = line.split("|")
        assert frames == "7 2 99"
        # The tail of the first frame is one bad piece, unless the join is at its delimiter.
        assert sum(int(x) for x in counters.split()) == (0 if k == len(first) - 1 else 1), (k, counters)


@pytest.mark.parametrize("run", [255, 256, 257, 1000, 5000])
def test_a_run_without_delimiter_counts_one_oversized_however_long(c_programs, run):
    stream = bytes([0x11]) * run + b"\x00" + encode_frame(FrameType.ENABLE, 3)
    (line,) = run_tool(c_programs.codec_tool, "decode", [stream.hex()])
    assert line == decode_expected(stream, random.Random(run))
    frames, counters = line.split("|")
    assert frames == "3 3"
    counts = dict(zip(C_COUNTER_ORDER, map(int, counters.split())))
    assert counts["oversized"] == (1 if run > 255 else 0)
    assert sum(counts.values()) == 1  # a 255-byte run is a frame-sized piece: it fails a later check

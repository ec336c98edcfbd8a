"""10,000 random and mutated messages: every one is either a valid message or a ProtocolError;
no other exception escapes, and nothing hangs (pytest-timeout)."""

from __future__ import annotations

import random

import msgpack
import numpy as np
import pytest

from protocol.errors import ProtocolError
from protocol.messages import (
    Ack,
    Heartbeat,
    Hello,
    Message,
    MessageDecoder,
    Policy,
    PolicyResult,
    Welcome,
    decode,
    empty_transitions,
    encode,
    schema_hash,
)

N_FUZZ = 10_000


def seeds() -> list[bytes]:
    t = empty_transitions("stream-1", 100, 16, 17, 6)
    t.obs[:] = np.linspace(-1, 1, t.obs.size, dtype=np.float32).reshape(t.obs.shape)
    return [
        encode(t),
        encode(Hello(robot_id="r1", schema_hash=schema_hash(), task="stand_still", obs_dim=4, act_dim=1,
                     obs_names=["x", "v", "pitch", "pitch_rate"], act_names=["tau"])),
        encode(Welcome(accepted=True, acked={"stream-1": 99})),
        encode(Ack(stream_id="stream-1", acked_seq=115)),
        encode(Heartbeat(seq=3, t_us=10**9, policy_version=2, stats={"p99_ms": 0.2, "overruns": 0})),
        encode(Policy.from_onnx(2, bytes(range(256)) * 4, {"h2o.version": "2"})),
        encode(PolicyResult(version=2, accepted=False, reason="nan_output")),
    ]


def random_value(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if choice == 1:
        return rng.choice([0.0, -1.5, float("nan"), float("inf"), 1e308])
    if choice == 2:
        return "".join(rng.choice("abcXYZ_<f4|b1") for _ in range(rng.randrange(8)))
    if choice == 3:
        return rng.randbytes(rng.randrange(40))
    if choice == 4:
        return rng.choice([True, False, None])
    if choice == 5:
        return rng.choice(["<f4", "<f8", "|b1", "|O", ">f4", "<u8"])
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 7:
        return {"dtype": random_value(rng, depth + 1), "shape": [rng.randint(-2, 70) for _ in range(rng.randrange(3))],
                "data": rng.randbytes(rng.randrange(300))}
    return {str(random_value(rng, 3)): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def structural_mutation(rng: random.Random, seed: bytes) -> bytes:
    """Change one field of a valid message so that it must be rejected."""
    body = msgpack.unpackb(seed, raw=False)
    key = rng.choice([k for k in body if k not in ("v", "type")] or ["type"])
    action = rng.randrange(4)
    if action == 0:
        del body[key]
    elif action == 1:
        body["x_" + key] = random_value(rng)
    elif action == 2:
        body["v"] = rng.choice([0, 2, "1", None, 1.0 + 1e-9])
    else:
        original = body[key]
        value = random_value(rng)
        while (
            type(value) is type(original)
            or (isinstance(original, dict) and isinstance(value, dict))
            or (isinstance(original, float) and type(value) is int)  # an int is a valid float
        ):
            value = random_value(rng)
        body[key] = value
    return msgpack.packb(body, use_bin_type=True)


def byte_mutation(rng: random.Random, seed: bytes) -> bytes:
    buf = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:
            del buf[pos:]
    return bytes(buf)


@pytest.mark.timeout(120)
def test_fuzz_ten_thousand_messages() -> None:
    rng = random.Random(20261125)
    base = seeds()
    decoder = MessageDecoder()
    for i in range(N_FUZZ):
        kind = i % 4
        if kind == 0:
            buf = rng.randbytes(rng.randrange(200))
        elif kind == 1:
            buf = msgpack.packb(random_value(rng), use_bin_type=True)
        elif kind == 2:
            buf = structural_mutation(rng, rng.choice(base))
        else:
            buf = byte_mutation(rng, rng.choice(base))
        try:
            msg = decoder.decode(buf)
        except ProtocolError:
            continue
        # Accepted only if it really is a valid message (a flipped bit inside float data can be).
        assert kind == 3, f"case {i} (kind {kind}) accepted: {msg!r}"[:300]
        assert isinstance(msg, Message)
        decode(encode(msg))
    assert decoder.rejected_total > 0.9 * N_FUZZ
    assert decoder.rejected_total + sum(decoder.accepted.values()) == N_FUZZ

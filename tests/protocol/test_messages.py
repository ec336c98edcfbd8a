"""Robot<->learner messages: round trips for every type, each rejection reason, zero-copy decode."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ERROR_CODES, ProtocolError
from protocol.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    Ack,
    Error,
    Heartbeat,
    Hello,
    Limits,
    Message,
    MessageDecoder,
    Policy,
    PolicyResult,
    Source,
    Transitions,
    TrialReport,
    Welcome,
    decode,
    empty_transitions,
    encode,
    error_for,
    schema_description,
    schema_hash,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
i63 = st.integers(0, 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def transitions(draw: st.DrawFn) -> Transitions:
    n = draw(st.integers(1, 70))
    obs_dim = draw(st.integers(1, 20))
    act_dim = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = empty_transitions(draw(ids), draw(st.integers(0, 2**40)), n, obs_dim, act_dim)
    t.obs[:] = rng.normal(size=t.obs.shape)
    t.act[:] = rng.uniform(-1, 1, size=t.act.shape)
    t.rew[:] = rng.normal(size=n)
    t.next_obs[:] = rng.normal(size=t.obs.shape)
    t.terminated[:] = rng.random(n) < 0.1
    t.truncated[:] = rng.random(n) < 0.1
    t.policy_version[:] = rng.integers(-1, 1000, n)
    t.logp[:] = np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))
    t.t_us[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
    t.source[:] = rng.integers(0, len(Source), n)
    return t


def hellos() -> st.SearchStrategy[Hello]:
    return st.integers(1, 30).flatmap(
        lambda d: st.builds(
            Hello,
            robot_id=ids,
            schema_hash=st.just(schema_hash()),
            task=names,
            obs_dim=st.just(d),
            act_dim=st.just(2),
            obs_names=st.lists(names, min_size=d, max_size=d) | st.just([]),
            act_names=st.just(["l", "r"]),
            control_hz=st.floats(1, 2000),
            software_version=names,
            policy_version=st.integers(-1, 2**63 - 1),
        )
    )


messages = st.one_of(
    hellos(),
    st.builds(Welcome, accepted=st.booleans(), reason=names, learner_version=names,
              latest_policy_version=st.integers(-1, 2**40), heartbeat_interval_s=st.floats(0.01, 10),
              acked=st.dictionaries(ids, st.integers(-1, 2**63 - 1), max_size=5)),
    transitions(),
    st.builds(Ack, stream_id=ids, acked_seq=st.integers(-1, 2**63 - 1)),
    st.builds(Heartbeat, seq=i63, t_us=st.integers(0, 2**64 - 1), policy_version=st.integers(-1, 99),
              stats=st.dictionaries(names, finite | st.integers(-(2**63), 2**63 - 1), max_size=8)),
    st.builds(lambda v, b, m: Policy.from_onnx(v, b, m), i63, st.binary(max_size=2000),
              st.dictionaries(names, names | st.booleans() | st.integers(0, 99) | finite, max_size=6)),
    st.builds(PolicyResult, version=i63, accepted=st.booleans(), reason=names, t_us=st.integers(0, 2**64 - 1)),
    st.builds(Error, code=names, message=names, fatal=st.booleans()),
    st.integers(0, 40).flatmap(lambda n: st.builds(
        TrialReport, version=i63, incumbent=st.integers(-1, 2**40),
        outcome=st.sampled_from(["promoted", "rolled_back", "superseded"]), reason=names,
        returns=st.just(np.linspace(0, 1e4, n, dtype=np.float32)), lengths=st.just(np.arange(n, dtype=np.int32)),
        catches=st.integers(0, 99), falls=st.integers(0, 99), p_not_worse=st.floats(-1, 1),
        p_worse=st.floats(-1, 1), duration_s=st.floats(0, 1e4), t_us=st.integers(0, 2**63 - 1),
        stream_id=st.just(f"robot{n}-1700000000000.trials" if n % 2 else ""),
        seq=st.just(n if n % 2 else -1))),
)


def assert_same(a: Message, b: Message) -> None:
    assert type(a) is type(b)
    for key, value in vars(a).items():
        other = getattr(b, key)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape
            np.testing.assert_array_equal(other, value)
        else:
            assert other == value, key


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert_same(msg, decode(encode(msg)))


def test_all_message_types_are_covered() -> None:
    assert set(MESSAGE_TYPES) == {"HELLO", "WELCOME", "TRANSITIONS", "ACK", "HEARTBEAT", "POLICY", "POLICY_RESULT", "ERROR",
                                  "TRIAL_REPORT"}


def test_transitions_decode_to_read_only_views_without_copies() -> None:
    t = empty_transitions("s", 10, 64, 17, 6)
    t.obs[:] = 1.5
    buf = encode(t)
    back = decode(buf)
    assert isinstance(back, Transitions) and back.n_rows == 64 and back.last_seq == 73
    for name in ("obs", "act", "rew", "source", "t_us"):
        column = getattr(back, name)
        assert not column.flags.writeable and not column.flags.owndata  # a view on msgpack's bytes
    assert back.obs.base is not None and float(back.obs[3, 5]) == 1.5


def test_schema_hash_is_stable_and_tracks_schema() -> None:
    assert schema_hash() == schema_hash() and len(schema_hash()) == 64
    assert schema_description()["schema_version"] == SCHEMA_VERSION
    assert "array(<f4,ndim=2,finite=all)" in str(schema_description()["messages"]["TRANSITIONS"])


def wire_of(msg: Message) -> dict:
    return msgpack.unpackb(encode(msg), raw=False)


def good_transitions() -> dict:
    return wire_of(empty_transitions("s", 0, 4, 3, 2))


def pack(body: object) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def with_(body: dict, **changes: object) -> dict:
    out = dict(body)
    out.update(changes)
    return out


def without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


def array(dtype: str, shape: list, data: bytes) -> dict:
    return {"dtype": dtype, "shape": shape, "data": data}


T = good_transitions()
H = wire_of(Hello(robot_id="r", schema_hash=schema_hash(), task="stand_still", obs_dim=2, act_dim=1))
P = wire_of(Policy.from_onnx(1, b"onnx-bytes"))

REJECTIONS = [
    (b"\xc1", "malformed"),
    (pack(T) + b"\x00", "malformed"),
    (pack(T)[:-3], "malformed"),
    (pack([1, 2]), "malformed"),
    (b"\xd4\x05\x00", "malformed"),  # extension type
    (b"\x91" * 100_000 + b"\xc0", "malformed"),  # nesting deeper than msgpack's stack
    (b"\xdd\xff\xff\xff\xff", "malformed"),  # array header claiming 4 G items
    (b"\xc6\xff\xff\xff\xf0", "malformed"),  # bin header claiming 4 GB
    (pack(with_(T, v=SCHEMA_VERSION + 1)), "bad_version"),
    (pack(without(T, "v")), "bad_version"),
    (pack(with_(T, v=True)), "bad_version"),
    (pack(with_(T, type="SELFDESTRUCT")), "unknown_type"),
    (pack(with_(T, type=7)), "unknown_type"),
    (pack(without(T, "rew")), "missing_field"),
    (pack(with_(T, bonus=1)), "extra_field"),
    (pack(with_(T, first_seq="0")), "bad_type"),
    (pack(with_(T, first_seq=True)), "bad_type"),
    (pack(with_(T, first_seq=-5)), "out_of_range"),
    (pack(with_(T, stream_id="has space")), "out_of_range"),
    (pack(with_(T, obs=[1, 2])), "bad_type"),
    (pack(with_(T, obs=array("|O", [4, 3], bytes(48)))), "bad_dtype"),
    (pack(with_(T, obs=array("<f8", [4, 3], bytes(96)))), "bad_dtype"),
    (pack(with_(T, obs=array("<f4", [4, 3], bytes(44)))), "bad_shape"),
    (pack(with_(T, obs=array("<f4", [12], bytes(48)))), "bad_shape"),
    (pack(with_(T, obs=array("<f4", [4, -3], bytes(48)))), "bad_shape"),
    (pack(with_(T, obs=array("<f4", [2, 6], bytes(48)))), "bad_shape"),  # rows disagree with act
    (pack(with_(T, obs=array("<f4", [4, 3], np.full(12, np.nan, "<f4").tobytes()))), "non_finite"),
    (pack(with_(T, rew=array("<f4", [4], np.array([0, np.inf, 0, 0], "<f4").tobytes()))), "non_finite"),
    (pack(with_(T, logp=array("<f4", [4], np.array([0, -np.inf, 0, 0], "<f4").tobytes()))), "non_finite"),
    (pack(with_(T, source=array("|u1", [4], bytes([0, 1, 2, 9])))), "out_of_range"),
    (pack(with_(T, terminated=array("|b1", [4], bytes([0, 1, 2, 0])))), "out_of_range"),
    (pack(with_(T, obs=array("<f4", [10**9, 3], b""))), "out_of_range"),
    (pack(with_(T, obs=array("<f4", [0, 3], b""))), "bad_shape"),
    (pack(with_(T, obs={"dtype": "<f4", "shape": [4, 3]})), "bad_type"),
    (pack(with_(H, obs_names=["only one"])), "bad_shape"),
    (pack(with_(H, obs_dim=0)), "out_of_range"),
    (pack(with_(H, schema_hash="xyz")), "out_of_range"),
    (pack(with_(H, control_hz=float("nan"))), "non_finite"),
    (pack(with_(H, obs_names="ab")), "bad_type"),
    (pack(with_(H, gaps={"s": [30, 20]})), "out_of_range"),  # a range must not be empty or reversed
    (pack(with_(H, gaps={"s": [10, 20, 15, 30]})), "out_of_range"),  # ... nor overlap the previous one
    (pack(with_(H, gaps={"s": [10]})), "out_of_range"),  # [a, b) pairs
    (pack(with_(H, gaps={"s": 10})), "bad_type"),
    (pack(with_(P, onnx=b"tampered")), "bad_hash"),
    (pack(with_(P, metadata={"k": [1]})), "bad_type"),
    (pack(with_(P, metadata={1: "x"})), "malformed"),  # non-str key: msgpack strict_map_key
    (pack(with_(P, version=2**64 - 1)), "out_of_range"),  # uint64 above the int64 range
]


@pytest.mark.parametrize("buf, code", REJECTIONS)
def test_decoder_rejects_with_code(buf: bytes, code: str) -> None:
    decoder = MessageDecoder()
    with pytest.raises(ProtocolError) as info:
        decoder.decode(buf)
    assert info.value.code == code, str(info.value)
    assert code in ERROR_CODES and decoder.rejected[code] == 1 and decoder.rejected_total == 1
    assert str(info.value)  # a message a person can read


def test_size_limit_is_configurable() -> None:
    buf = encode(empty_transitions("s", 0, 64, 17, 6))
    assert isinstance(decode(buf), Transitions)
    with pytest.raises(ProtocolError) as info:
        decode(buf, Limits(max_message_bytes=1000))
    assert info.value.code == "oversized"
    with pytest.raises(ProtocolError) as info:
        decode(buf, Limits(max_rows=32))
    assert info.value.code == "out_of_range"


def test_encode_refuses_what_the_peer_would_reject() -> None:
    t = empty_transitions("s", 0, 4, 3, 2)
    t.obs[1, 1] = np.nan
    with pytest.raises(ProtocolError) as info:
        encode(t)
    assert info.value.code == "non_finite"
    with pytest.raises(ProtocolError):
        encode(Policy(version=1, sha256="0" * 64, onnx=b"x"))


def test_error_message_answers_a_rejection() -> None:
    try:
        decode(b"\xc1")
    except ProtocolError as exc:
        answer = decode(encode(error_for(exc, fatal=False)))
    assert isinstance(answer, Error) and answer.code == "malformed" and not answer.fatal


def test_counters_count_accepted_types() -> None:
    decoder = MessageDecoder()
    decoder.decode(encode(Ack(stream_id="s", acked_seq=5)))
    decoder.decode(encode(Heartbeat(seq=1, t_us=2, stats={"overruns": 0, "p99_ms": 0.2})))
    assert decoder.accepted["ACK"] == 1 and decoder.accepted["HEARTBEAT"] == 1 and decoder.rejected_total == 0


def test_policy_sha256_is_of_the_onnx_bytes() -> None:
    policy = Policy.from_onnx(4, b"\x08\x01model")
    assert policy.sha256 == hashlib.sha256(b"\x08\x01model").hexdigest()


def test_spec_states_the_current_schema_hash() -> None:
    """docs/protocol.md quotes the hash; a schema change must update the spec too."""
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    assert schema_hash() in spec

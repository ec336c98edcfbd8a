"""Line fault injection: reproducible, counted, and never lets the decoder accept a damaged frame."""

import numpy as np
import pytest

from firmware_bridge.virtual_robot.faults import ChannelFaults, FaultConfig, FaultConfigError
from protocol.frames import FrameDecoder, FrameType, encode_state, unpack_state
from protocol.robot_types import RobotState


def frames(n: int) -> list[bytes]:
    return [encode_state(RobotState(t_us=1000 * (i + 1)), seq=i) for i in range(n)]


def run_channel(cfg: FaultConfig, n: int = 400) -> bytes:
    ch = ChannelFaults(cfg, stream_id=1)
    return b"".join(ch.frame(f, now_s=i * 0.005) for i, f in enumerate(frames(n))) + ch.release_due(1e9)


def test_same_seed_same_damage_other_seed_other_damage():
    cfg = FaultConfig(corrupt_byte_prob=0.01, drop_frame_prob=0.05, duplicate_frame_prob=0.05, seed=3)
    assert run_channel(cfg) == run_channel(cfg)
    other = FaultConfig(corrupt_byte_prob=0.01, drop_frame_prob=0.05, duplicate_frame_prob=0.05, seed=4)
    assert run_channel(cfg) != run_channel(other)


def test_corrupted_stream_yields_only_frames_that_were_sent():
    cfg = FaultConfig(corrupt_byte_prob=0.01, drop_byte_prob=0.002, seed=1)
    ch = ChannelFaults(cfg, stream_id=1)
    sent = frames(1000)
    wire = b"".join(ch.frame(f, 0.0) for f in sent)
    decoder = FrameDecoder()
    got = decoder.feed(wire)
    assert ch.counters.bytes_corrupted > 500
    assert 0 < len(got) < len(sent)
    for frame in got:
        assert frame.type == FrameType.STATE
        assert unpack_state(frame.payload).t_us == 1000 * (frame.seq + 1)  # intact, not a look-alike
    assert decoder.dropped_total > 0


def test_drop_duplicate_and_delay_frames_are_counted_and_delayed_frames_arrive_later():
    cfg = FaultConfig(delay_frame_prob=0.2, delay_ms=12.0, seed=5)
    ch = ChannelFaults(cfg, stream_id=1)
    out = [ch.frame(f, now_s=i * 0.005) for i, f in enumerate(frames(100))]
    tail = ch.release_due(1e9)
    seqs = [f.seq for f in FrameDecoder().feed(b"".join(out) + tail)]
    assert sorted(seqs) == list(range(100))  # nothing lost, only reordered
    assert seqs != list(range(100)) and ch.counters.frames_delayed > 0

    cfg = FaultConfig(drop_frame_prob=0.1, duplicate_frame_prob=0.1, seed=6)
    ch = ChannelFaults(cfg, stream_id=1)
    got = FrameDecoder().feed(b"".join(ch.frame(f, 0.0) for f in frames(300)))
    c = ch.counters
    assert len(got) == 300 - c.frames_dropped + c.frames_duplicated
    assert c.frames_dropped > 0 and c.frames_duplicated > 0


def test_feed_splits_a_chunked_stream_at_delimiters():
    cfg = FaultConfig(drop_frame_prob=0.5, seed=2)
    wire = b"".join(frames(50))
    ch = ChannelFaults(cfg, stream_id=2)
    out = b"".join(ch.feed(wire[i : i + 7], 0.0) for i in range(0, len(wire), 7))
    got = FrameDecoder().feed(out)
    assert len(got) == 50 - ch.counters.frames_dropped and ch.counters.frames_in == 50


@pytest.mark.parametrize(
    "kwargs",
    [{"corrupt_byte_prob": 1.5}, {"drop_frame_prob": -0.1}, {"directions": "up"}, {"delay_ms": np.nan},
     {"stall_ms": -1.0}, {"duplicate_byte_prob": 2.0}],
)
def test_bad_fault_config_names_the_field(kwargs):
    with pytest.raises(FaultConfigError, match=next(iter(kwargs))):
        FaultConfig(**kwargs).validate()


def test_stall_holds_later_frames_in_order_and_duplicate_bytes_are_counted():
    cfg = FaultConfig(stall_prob=0.05, stall_ms=30.0, seed=9)
    ch = ChannelFaults(cfg, stream_id=1)
    decoder, arrivals = FrameDecoder(), []
    for i, f in enumerate(frames(200)):
        now = i * 0.005
        arrivals += [(now, fr.seq) for fr in decoder.feed(ch.frame(f, now))]
    arrivals += [(1e9, fr.seq) for fr in decoder.feed(ch.release_due(1e9))]
    assert [seq for _, seq in arrivals] == list(range(200))  # a stall delays, never reorders
    assert ch.counters.stalls > 0
    late = [now - seq * 0.005 for now, seq in arrivals if now < 1e9]
    assert max(late) > 0.02  # some frames really waited for the stall to end

    cfg = FaultConfig(duplicate_byte_prob=0.01, seed=3)
    ch = ChannelFaults(cfg, stream_id=1)
    sent = frames(300)
    wire = b"".join(ch.frame(f, 0.0) for f in sent)
    assert len(wire) == sum(map(len, sent)) + ch.counters.bytes_duplicated > sum(map(len, sent))
    got = FrameDecoder().feed(wire)
    assert all(unpack_state(f.payload).t_us == 1000 * (f.seq + 1) for f in got)

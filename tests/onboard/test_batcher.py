"""Transition recorder: full batches, age-based flush, drop-and-count when the sink refuses."""

from __future__ import annotations

import math

import numpy as np

from onboard.batcher import Row, TransitionRecorder
from protocol.messages import Source, Transitions, decode, encode


def row(i: int) -> Row:
    o = np.full(4, i, np.float32)
    return Row(o, np.array([0.1], np.float32), 1.0, o + 1, False, False, -1, math.nan, Source.CONTROLLER, 1000 * i)


def test_full_batches_are_emitted_and_encode_as_transitions():
    got = []
    rec = TransitionRecorder(4, 1, sink=lambda b: got.append(b) or True, batch_size=5)
    for i in range(12):
        rec.add(row(i))
    assert len(got) == 2 and rec.batches_emitted == 2
    msg = decode(encode(Transitions(stream_id="r-1", first_seq=0, **got[1])))
    assert msg.n_rows == 5 and msg.obs[0, 0] == 5.0 and msg.source[0] == Source.CONTROLLER


def test_partial_batch_flushes_when_old_and_refusals_are_counted():
    now = [0.0]
    accept = [False]
    got = []
    rec = TransitionRecorder(4, 1, sink=lambda b: accept[0] and (got.append(b) or True), batch_size=50,
                             max_batch_age_s=0.5, clock=lambda: now[0])
    for i in range(3):
        rec.add(row(i))
    rec.maybe_flush()
    assert not got and rec.batches_dropped == 0  # not old yet
    now[0] = 0.6
    rec.maybe_flush()
    assert rec.batches_dropped == 1 and rec.rows_dropped == 3  # sink full: dropped, counted
    accept[0] = True
    rec.add(row(9))
    now[0] = 1.2
    rec.maybe_flush()
    assert len(got) == 1 and got[0]["obs"].shape == (1, 4)

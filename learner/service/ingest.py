"""Ingest: validate a TRANSITIONS batch, drop what is already stored, append the rest.

Exactly-once in the store: each (robot, stream) is stored contiguously from its first row; a
batch's rows below `next_seq` are duplicates (a resend after a lost ACK or a reconnect) and are
dropped; a batch that starts beyond `next_seq` would leave a hole, so it is refused and the ACK
tells the robot where to resume. The caller ACKs only after `RealStore.sync()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from learner.service.store import RealStore, StoredBatch
from learner.service.wire import Transitions, WireError

log = logging.getLogger(__name__)

ROW_DTYPES = {"obs": np.float32, "act": np.float32, "rew": np.float32, "next_obs": np.float32,
              "done": np.bool_, "policy_version": np.int64}


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    acked_seq: int  # last contiguous row on this stream (durable after the next sync)


def validate_batch(batch: Transitions, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Check shapes, dtypes and finiteness; return the columns cast to the store's dtypes."""
    cols = batch.columns
    n = len(cols["rew"]) if cols["rew"].ndim == 1 else -1
    if n <= 0:
        raise WireError("bad_shape", "rew must be a non-empty 1-D column")
    expect = {"obs": (n, obs_dim), "act": (n, act_dim), "rew": (n,), "next_obs": (n, obs_dim),
              "done": (n,), "policy_version": (n,)}
    out = {}
    for name, shape in expect.items():
        arr = cols[name]
        if arr.shape != shape:
            raise WireError("bad_shape", f"{name}: {arr.shape} != {shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise WireError("non_finite", name)
        out[name] = arr.astype(ROW_DTYPES[name], copy=False)
    if batch.first_seq < 0 or batch.stream_id < 0:
        raise WireError("bad_seq", f"stream {batch.stream_id} first_seq {batch.first_seq}")
    return out


class Ingest:
    """Dedup + append into the store; hands newly stored rows to `sink` (the real buffer feed)."""

    def __init__(self, store: RealStore, obs_dim: int, act_dim: int,
                 sink: Callable[[dict[str, np.ndarray]], None] | None = None) -> None:
        self.store = store
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.sink = sink
        self.rows_stored = 0
        self.rows_duplicate = 0

    def ingest(self, robot_id: str, batch: Transitions) -> IngestResult:
        """Raises WireError for a bad batch or a sequence gap (with the resume point)."""
        cols = validate_batch(batch, self.obs_dim, self.act_dim)
        n = len(cols["rew"])
        expected = self.store.next_seq(robot_id, batch.stream_id)
        start = batch.first_seq
        if expected is not None and start > expected:
            raise WireError("seq_gap", f"stream {batch.stream_id}: got {start}, expected {expected}")
        skip = 0 if expected is None else max(0, expected - start)
        if skip >= n:
            self.rows_duplicate += n
            return IngestResult(0, n, expected - 1)
        if skip:
            cols = {k: v[skip:] for k, v in cols.items()}
        self.store.append(StoredBatch(robot_id, batch.stream_id, start + skip, cols))
        stored = n - skip
        self.rows_stored += stored
        self.rows_duplicate += skip
        if self.sink is not None:
            self.sink(cols)
        return IngestResult(stored, skip, start + n - 1)

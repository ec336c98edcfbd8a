"""Ingest: validate a TRANSITIONS batch, drop what is already stored, append the rest.

Exactly-once in the store: each (robot, stream) is stored contiguously from its first row; a
batch's rows below `next_seq` are duplicates (a resend after a lost ACK or a reconnect) and are
dropped; a batch that starts beyond `next_seq` would leave a hole, so it is refused and the ACK
tells the robot where to resume. The caller ACKs only after `RealStore.sync()`.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from learner.service.store import RealStore, StoredBatch
from learner.service.wire import Transitions, WireError, columns_of

log = logging.getLogger(__name__)



@dataclass
class IngestResult:
    stored: int
    duplicates: int
    acked_seq: int  # last contiguous row on this stream (durable after the next sync)


def validate_batch(batch: Transitions, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Check the batch fits this learner's task (the decoder checked dtypes, row counts and
    finiteness); return its columns."""
    if batch.obs.shape[1] != obs_dim or batch.act.shape[1] != act_dim:
        raise WireError("bad_shape", f"obs/act columns {batch.obs.shape[1]}/{batch.act.shape[1]}, "
                                     f"task needs {obs_dim}/{act_dim}")
    return columns_of(batch)


class Ingest:
    """Dedup + append into the store; hands newly stored rows to `sink` (the real buffer feed)."""

    def __init__(self, store: RealStore, obs_dim: int, act_dim: int,
                 sink: Callable[[str, str, dict[str, np.ndarray]], None] | None = None) -> None:
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
            self.sink(robot_id, batch.stream_id, cols)
        return IngestResult(stored, skip, start + n - 1)


class RealFeed:
    """Rows handed from the network thread to the trainer, which drains it every iteration.

    Bounded: past `max_rows` waiting rows the oldest chunks are dropped from the feed (counted in
    `rows_dropped`); they stay in the durable store, so nothing is lost, only not trained on.
    """

    def __init__(self, max_rows: int = 2_000_000) -> None:
        self._q: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self.max_rows = max_rows
        self._rows_waiting = 0
        self.rows_in = 0
        self.rows_dropped = 0

    def put(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["rew"])
        with self._lock:
            self._q.append(cols)
            self.rows_in += n
            self._rows_waiting += n
            while self._rows_waiting > self.max_rows and len(self._q) > 1:
                old = self._q.popleft()
                self._rows_waiting -= len(old["rew"])
                self.rows_dropped += len(old["rew"])

    def drain(self) -> list[dict[str, np.ndarray]]:
        with self._lock:
            out = list(self._q)
            self._q.clear()
            self._rows_waiting = 0
        return out

"""Ingest: validate a TRANSITIONS batch, drop what is already stored, append the rest.

Exactly-once in the store: each (robot, stream) is stored from seq 0 (or from where the robot
declared in HELLO that it holds rows; the server records the rows before that as lost); a batch's
rows the store already holds are duplicates (a resend after a lost ACK or a reconnect) and are
dropped; a batch that starts beyond the first row the store needs would leave a hole, so it is
refused and the ACK tells the robot where to resume. The caller ACKs only after
`RealStore.sync()`, then calls `commit()` (rows go to the trainer's feed) or, when the sync
failed, `rollback()`.

Bounds: rows whose observation, reward or action magnitude is beyond `Bounds` (finite garbage: a
sensor glitch, a bad robot) are stored and acknowledged like any other (the stream goes on and the
evidence is kept) but never reach the trainer; they are counted and the robot is told.
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


@dataclass(frozen=True)
class Bounds:
    """Largest magnitudes a trainable row may hold (|x| <= bound, elementwise)."""

    obs: float = 1e4
    rew: float = 1e5
    act: float = 1.0 + 1e-3  # policy units: the wire's actions are in [-1, 1]

    def mask(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Per-row True where every value is finite and within bounds."""
        ok = np.abs(cols["rew"]) <= self.rew
        ok &= (np.abs(cols["obs"]) <= self.obs).all(axis=1)
        ok &= (np.abs(cols["next_obs"]) <= self.obs).all(axis=1)
        ok &= (np.abs(cols["act"]) <= self.act).all(axis=1)
        return ok

    def filter(self, cols: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """(rows within bounds, number of rows refused)."""
        ok = self.mask(cols)
        bad = int(len(ok) - ok.sum())
        if bad == 0:
            return cols, 0
        return {k: v[ok] for k, v in cols.items()}, bad


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    acked_seq: int  # last contiguous row on this stream (durable after the next sync)
    out_of_bounds: int = 0  # stored rows kept out of training


def validate_batch(batch: Transitions, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Check the batch fits this learner's task (the decoder checked dtypes, row counts and
    finiteness); return its columns."""
    if batch.obs.shape[1] != obs_dim or batch.act.shape[1] != act_dim:
        raise WireError("bad_shape", f"obs/act columns {batch.obs.shape[1]}/{batch.act.shape[1]}, "
                                     f"task needs {obs_dim}/{act_dim}")
    return columns_of(batch)


class Ingest:
    """Dedup + append into the store; hands committed rows within bounds to `sink` (the real
    buffer feed)."""

    def __init__(self, store: RealStore, obs_dim: int, act_dim: int,
                 sink: Callable[[str, str, dict[str, np.ndarray]], None] | None = None,
                 bounds: Bounds | None = None) -> None:
        self.store = store
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.sink = sink
        self.bounds = bounds or Bounds()
        self.rows_stored = 0
        self.rows_duplicate = 0
        self.rows_out_of_bounds = 0
        self._pending: list[tuple[str, str, dict[str, np.ndarray]]] = []

    def ingest(self, robot_id: str, batch: Transitions) -> IngestResult:
        """Raises WireError for a bad batch or a sequence gap (with the resume point)."""
        cols = validate_batch(batch, self.obs_dim, self.act_dim)
        store, stream = self.store, batch.stream_id
        start, end = batch.first_seq, batch.first_seq + len(cols["rew"])
        stored = dup = bad = 0
        pos = start
        while pos < end:
            nxt = store.next_seq(robot_id, stream) or 0
            held_end = nxt if pos < nxt else store.covered_end(robot_id, stream, pos)
            if held_end > pos:  # rows the store holds already
                step = min(end, held_end) - pos
                dup += step
                pos += step
                continue
            if pos > nxt:
                raise WireError("seq_gap", f"stream {stream}: got {pos}, expected {nxt}")
            limit = store.next_held_start(robot_id, stream, pos)
            stop = end if limit is None else min(end, limit)
            part = {k: v[pos - start:stop - start] for k, v in cols.items()}
            store.append(StoredBatch(robot_id, stream, pos, part))
            good, refused = self.bounds.filter(part)
            bad += refused
            if len(good["rew"]):
                self._pending.append((robot_id, stream, good))
            stored += stop - pos
            pos = stop
        self.rows_stored += stored
        self.rows_duplicate += dup
        self.rows_out_of_bounds += bad
        return IngestResult(stored, dup, store.acked_seq(robot_id, stream), bad)

    def commit(self) -> None:
        """The store synced: hand the round's rows to the sink."""
        pending, self._pending = self._pending, []
        if self.sink is not None:
            for robot_id, stream, cols in pending:
                self.sink(robot_id, stream, cols)

    def rollback(self) -> None:
        """The store's sync failed: the round's rows were cut off and will be resent."""
        self._pending.clear()


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

"""Builds transitions with provenance into columnar batches, without blocking the loop.

Why columnar: the learner ingests arrays, and a batch of 50 rows as a dict of numpy arrays
encodes to msgpack as a few raw buffers. Rows are written into preallocated arrays (one store
per column per tick); a full batch (or one older than `max_batch_age_s`) is handed to a sink
with a non-blocking call; when the sink refuses (queue full) the batch is dropped and counted.
(Not a recording: firmware_bridge/recorder.py records the serial line's bytes to MCAP.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from protocol.messages import Source

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One transition and where it came from (the TRANSITIONS columns of protocol/messages.py)."""

    obs: np.ndarray
    act: np.ndarray
    rew: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    policy_version: int  # -1: no policy (controller)
    logp: float  # NaN when the controller acted
    source: Source
    t_us: int  # firmware time of `obs`
    flags: int = 0  # task_contract.episodes.RowFlag: nonzero outside a task episode


def empty_batch(n: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Columns named and typed as `protocol.messages.Transitions` fields."""
    return {
        "obs": np.zeros((n, obs_dim), np.float32),
        "act": np.zeros((n, act_dim), np.float32),
        "rew": np.zeros(n, np.float32),
        "next_obs": np.zeros((n, obs_dim), np.float32),
        "terminated": np.zeros(n, np.bool_),
        "truncated": np.zeros(n, np.bool_),
        "policy_version": np.full(n, -1, np.int64),
        "logp": np.full(n, np.nan, np.float32),
        "t_us": np.zeros(n, np.uint64),
        "source": np.zeros(n, np.uint8),
        "flags": np.zeros(n, np.uint8),
    }


BatchSink = Callable[[dict[str, np.ndarray]], bool]  # non-blocking; False = refused (dropped)


class TransitionRecorder:
    """Accumulates rows; emits a batch when full or when its first row is too old."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        sink: BatchSink,
        batch_size: int = 50,
        max_batch_age_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.sink = sink
        self.batch_size = batch_size
        self.max_batch_age_s = max_batch_age_s
        self.clock = clock
        self.rows_recorded = 0
        self.batches_emitted = 0
        self.batches_dropped = 0
        self.rows_dropped = 0
        self._new_batch()

    def _new_batch(self) -> None:
        self._b = empty_batch(self.batch_size, self.obs_dim, self.act_dim)
        self._n = 0
        self._first_t = 0.0

    def add(self, r: Row) -> None:
        b, i = self._b, self._n
        if i == 0:
            self._first_t = self.clock()
        b["obs"][i] = r.obs
        b["act"][i] = r.act
        b["rew"][i] = r.rew
        b["next_obs"][i] = r.next_obs
        b["terminated"][i] = r.terminated
        b["truncated"][i] = r.truncated
        b["policy_version"][i] = r.policy_version
        b["logp"][i] = r.logp
        b["t_us"][i] = r.t_us
        b["source"][i] = int(r.source)
        b["flags"][i] = r.flags
        self._n += 1
        self.rows_recorded += 1
        if self._n >= self.batch_size:
            self.flush()

    @property
    def pending_rows(self) -> int:
        """Rows recorded but not yet handed to the sink (the partial batch)."""
        return self._n

    def maybe_flush(self) -> None:
        """Emit a partial batch once its first row is older than `max_batch_age_s`."""
        if self._n and self.clock() - self._first_t >= self.max_batch_age_s:
            self.flush()

    def flush(self) -> None:
        if self._n == 0:
            return
        n = self._n
        batch = self._b if n == self.batch_size else {k: v[:n].copy() for k, v in self._b.items()}
        if self.sink(batch):
            self.batches_emitted += 1
        else:
            self.batches_dropped += 1
            self.rows_dropped += n
            log.warning("transition batch of %d rows dropped: streamer queue full", n)
        self._new_batch()

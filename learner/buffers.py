"""Replay buffers: the real buffer (fixed offline part + streamed rows) and the FIFO sim buffer.

Why this layout: a batch is gathered with ONE index_select from a preallocated float32 tensor
[capacity, row] on the training device, where a row packs (obs, act, rew, next_obs, done). The
batch fields are views into that gathered block: no numpy round trip, no per-field copies.

Thread safety: the learner service appends streamed robot rows from its ingest thread while the
trainer samples; a lock guards append and sample (both are short: one copy / one gather).

Real-data statistics (mean/std per dimension of the states and of the state changes s' - s) are
kept exactly over the rows currently stored: H2O's s' perturbation sigma is the std of the *real*
states (the reference used the std of the zero-padded buffer, ~0.3x too small; see
learner/algorithms/h2o.py), and the classifiers' "normalized" inputs standardise by them
(learner/algorithms/classifiers.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch


class BufferError(ValueError):
    """Bad rows offered to a buffer (wrong shape, non-finite values, too many rows)."""


@dataclass
class Batch:
    """A sampled minibatch; every field is float32 on the buffer's device. done is 1.0 at a terminal.
    A single learner's fields are [B, dim] (rew, done [B]); a population's [P, B, dim] ([P, B])."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]

    @property
    def rows(self) -> int:
        """Rows per member: B of a [B, dim] batch and of a population's [P, B, dim] batch."""
        return self.rew.shape[-1]


@dataclass
class RealStats:
    """Per-dimension mean and std of the real states and of the real state changes s' - s.
    A single buffer's fields are [obs_dim]; a population's (`stack`) [P, obs_dim]."""

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    delta_mean: torch.Tensor
    delta_std: torch.Tensor

    @staticmethod
    def stack(stats: "list[RealStats]") -> "RealStats":
        return RealStats(*(torch.stack([getattr(x, f) for x in stats])
                           for f in ("obs_mean", "obs_std", "delta_mean", "delta_std")))


def batch_from_arrays(obs, act, rew, next_obs, done, device: str | torch.device = "cpu") -> Batch:
    """Build a Batch from array-likes (tests, evaluation); copies to float32 on `device`."""

    def t(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)

    return Batch(t(obs), t(act), t(rew).reshape(-1), t(next_obs), t(done).reshape(-1))


class TransitionBuffer:
    """Preallocated transition store with an optional frozen prefix.

    Rows [0, n_fixed) are set once (`load_fixed`: the offline dataset) and never evicted; rows
    appended later fill [n_fixed, capacity) and then overwrite the oldest appended row (FIFO).
    The sim buffer is this with n_fixed = 0.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, device: str | torch.device = "cpu", seed: int = 0):
        if capacity <= 0:
            raise BufferError(f"capacity must be positive, got {capacity}")
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.device = torch.device(device)
        o, a = obs_dim, act_dim
        self._slices = {
            "obs": slice(0, o),
            "act": slice(o, o + a),
            "rew": slice(o + a, o + a + 1),
            "next_obs": slice(o + a + 1, 2 * o + a + 1),
            "done": slice(2 * o + a + 1, 2 * o + a + 2),
        }
        self.row_dim = 2 * o + a + 2
        self._rows = torch.zeros(capacity, self.row_dim, dtype=torch.float32, device=self.device)
        self._n_fixed = 0
        self._size = 0
        self._cursor = 0  # next row to write in the FIFO part
        self._lock = threading.Lock()
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed)
        # exact sums over the stored rows, float64, for the mean/std of obs and of next_obs - obs
        self._obs_sum = torch.zeros(o, dtype=torch.float64, device=self.device)
        self._obs_sumsq = torch.zeros(o, dtype=torch.float64, device=self.device)
        self._delta_sum = torch.zeros(o, dtype=torch.float64, device=self.device)
        self._delta_sumsq = torch.zeros(o, dtype=torch.float64, device=self.device)
        self.rejected_batches = 0  # counter of `add`/`load_fixed` calls refused for bad input

    # ---- writing -------------------------------------------------------------------------------
    def _pack(self, obs, act, rew, next_obs, done) -> torch.Tensor:
        def t(x, width: int, name: str) -> torch.Tensor:
            x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
            x = x.to(self.device, torch.float32).reshape(x.shape[0] if x.dim() else 1, -1)
            if x.shape[1] != width:
                raise BufferError(f"{name}: expected width {width}, got shape {tuple(x.shape)}")
            return x

        cols = [
            t(obs, self.obs_dim, "obs"),
            t(act, self.act_dim, "act"),
            t(rew, 1, "rew"),
            t(next_obs, self.obs_dim, "next_obs"),
            t(done, 1, "done"),
        ]
        n = cols[0].shape[0]
        if any(c.shape[0] != n for c in cols):
            raise BufferError(f"columns disagree on row count: {[c.shape[0] for c in cols]}")
        rows = torch.cat(cols, dim=1)
        if not bool(torch.isfinite(rows).all()):
            raise BufferError("non-finite values in transitions")
        return rows

    def _account(self, rows: torch.Tensor, sign: float) -> None:
        obs = rows[:, self._slices["obs"]].double()
        delta = rows[:, self._slices["next_obs"]].double() - obs
        self._obs_sum += sign * obs.sum(0)
        self._obs_sumsq += sign * (obs * obs).sum(0)
        self._delta_sum += sign * delta.sum(0)
        self._delta_sumsq += sign * (delta * delta).sum(0)

    def load_fixed(self, data: Mapping[str, np.ndarray]) -> int:
        """Set the frozen prefix from D4RL-style arrays (observations, actions, rewards,
        next_observations, terminals). Only once, before any `add`. Returns the row count."""
        try:
            rows = self._pack(
                data["observations"], data["actions"], data["rewards"], data["next_observations"], data["terminals"]
            )
        except (KeyError, BufferError) as exc:
            self.rejected_batches += 1
            raise BufferError(f"bad offline dataset: {exc}") from exc
        with self._lock:
            if self._size:
                raise BufferError("load_fixed must come before any other rows")
            if rows.shape[0] >= self.capacity:
                raise BufferError(f"dataset of {rows.shape[0]} rows leaves no room in capacity {self.capacity}")
            n = rows.shape[0]
            self._rows[:n] = rows
            self._n_fixed = self._size = self._cursor = n
            self._account(rows, +1.0)
        return n

    def add(self, obs, act, rew, next_obs, done) -> int:
        """Append rows (FIFO over the non-fixed part). Returns the number of rows written."""
        try:
            rows = self._pack(obs, act, rew, next_obs, done)
        except BufferError:
            self.rejected_batches += 1
            raise
        with self._lock:
            room = self.capacity - self._n_fixed
            if rows.shape[0] > room:
                rows = rows[-room:]  # only the newest fit
            n = rows.shape[0]
            first = self._cursor
            idx = (torch.arange(n, device=self.device) + (first - self._n_fixed)) % room + self._n_fixed
            live = idx[idx < self._size]  # rows about to be overwritten leave the statistics
            if live.numel():
                self._account(self._rows.index_select(0, live), -1.0)
            self._rows.index_copy_(0, idx, rows)
            self._account(rows, +1.0)
            self._size = min(self.capacity, self._size + n)
            self._cursor = int((first - self._n_fixed + n) % room + self._n_fixed)
        return n

    # ---- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    @property
    def n_fixed(self) -> int:
        return self._n_fixed

    def sample(self, batch_size: int) -> Batch:
        """Uniform sample with replacement: one randint + one index_select, fields are views."""
        with self._lock:
            if self._size == 0:
                raise BufferError("cannot sample from an empty buffer")
            idx = torch.randint(0, self._size, (batch_size,), device=self.device, generator=self._gen)
            block = self._rows.index_select(0, idx)
        s = self._slices
        return Batch(
            block[:, s["obs"]],
            block[:, s["act"]],
            block[:, s["rew"]].squeeze(1),
            block[:, s["next_obs"]],
            block[:, s["done"]].squeeze(1),
        )

    def obs_mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std (population) of the stored obs, float32."""
        with self._lock:
            return _mean_std(self._obs_sum, self._obs_sumsq, self._size)

    def stats(self) -> RealStats:
        """Mean and std of the stored obs and of next_obs - obs (float32, per dimension)."""
        with self._lock:
            return RealStats(*_mean_std(self._obs_sum, self._obs_sumsq, self._size),
                             *_mean_std(self._delta_sum, self._delta_sumsq, self._size))

    def arrays(self) -> dict[str, np.ndarray]:
        """All stored rows as D4RL-style numpy arrays (for tests and dataset dumps)."""
        with self._lock:
            rows = self._rows[: self._size].cpu().numpy()
        s = self._slices
        return {
            "observations": rows[:, s["obs"]],
            "actions": rows[:, s["act"]],
            "rewards": rows[:, s["rew"]][:, 0],
            "next_observations": rows[:, s["next_obs"]],
            "terminals": rows[:, s["done"]][:, 0],
        }

    def state_dict(self) -> dict:
        with self._lock:
            return {
                "rows": self._rows[: self._size].cpu().clone(),
                "n_fixed": self._n_fixed,
                "cursor": self._cursor,
                "gen": self._gen.get_state(),
            }

    def load_state_dict(self, state: dict) -> None:
        with self._lock:
            rows = state["rows"].to(self.device)
            if rows.shape[0] > self.capacity or rows.shape[1] != self.row_dim:
                raise BufferError(f"saved buffer {tuple(rows.shape)} does not fit {self.capacity}x{self.row_dim}")
            n_fixed, cursor = int(state["n_fixed"]), int(state["cursor"])
            if rows.shape[0] < self.capacity and cursor != rows.shape[0]:
                # A FIFO that had wrapped, resumed into a larger buffer (e.g. a checkpoint written before
                # the capacity rule changed): put its oldest row first so the next rows append after the
                # newest instead of overwriting live rows while unwritten slots count as stored.
                rows = torch.cat([rows[:n_fixed], rows[cursor:], rows[n_fixed:cursor]])
                cursor = rows.shape[0]
            self._rows.zero_()
            self._rows[: rows.shape[0]] = rows
            self._size, self._n_fixed, self._cursor = rows.shape[0], n_fixed, cursor
            for total in (self._obs_sum, self._obs_sumsq, self._delta_sum, self._delta_sumsq):
                total.zero_()
            self._account(rows, +1.0)
            self._gen.set_state(state["gen"])


class PopulationSampler:
    """Population batches [P, n, dim] from P member buffers, each sampled with its own generator.

    Member k's rows are exactly what `buffers[k].sample(n)` would give (same generator, same
    draws); they are gathered straight into one [P, n, row] block (index_select with out=), so a
    population batch costs P small gathers and no concatenation. The fields are views into it.
    """

    def __init__(self, buffers: list[TransitionBuffer]):
        if not buffers:
            raise BufferError("a population sampler needs at least one buffer")
        b0 = buffers[0]
        if any(b.row_dim != b0.row_dim or b.device != b0.device for b in buffers):
            raise BufferError("population buffers must share obs/act sizes and device")
        self.buffers = buffers
        self._idx: dict[int, torch.Tensor] = {}  # preallocated index rows per batch size

    def __len__(self) -> int:
        return len(self.buffers)

    def sample(self, n: int) -> Batch:
        b0 = self.buffers[0]
        idx = self._idx.get(n)
        if idx is None:
            idx = self._idx[n] = torch.empty((len(self.buffers), n), dtype=torch.long, device=b0.device)
        block = torch.empty((len(self.buffers), n, b0.row_dim), dtype=torch.float32, device=b0.device)
        for k, buf in enumerate(self.buffers):
            with buf._lock:
                if buf._size == 0:
                    raise BufferError(f"cannot sample from member {k}'s empty buffer")
                torch.randint(0, buf._size, (n,), generator=buf._gen, out=idx[k])
                torch.index_select(buf._rows, 0, idx[k], out=block[k])
        s = b0._slices
        return Batch(block[..., s["obs"]], block[..., s["act"]], block[..., s["rew"]].squeeze(-1),
                     block[..., s["next_obs"]], block[..., s["done"]].squeeze(-1))


def _mean_std(total: torch.Tensor, total_sq: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, population std) as float32 from float64 running sums over n rows."""
    n = max(n, 1)
    mean = total / n
    return mean.float(), (total_sq / n - mean * mean).clamp(min=0.0).sqrt().float()

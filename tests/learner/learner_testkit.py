"""Shared helpers for the learner tests (imported by name: conftest.py puts this folder on sys.path,
because --import-mode=importlib does not make conftest importable)."""

from __future__ import annotations

import numpy as np
import torch

from learner.algorithms.base import lift
from learner.buffers import Batch, batch_from_arrays

OBS_DIM, ACT_DIM = 3, 2
TINY = "32-32"


def synthetic_batch(n: int, seed: int, shift: float = 0.0, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> Batch:
    """Random transitions; `shift` moves s' (a different "dynamics") so classifiers can tell them apart."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim))
    act = rng.uniform(-1, 1, (n, act_dim))
    next_obs = obs + 0.1 * act.sum(1, keepdims=True) + shift + 0.05 * rng.standard_normal((n, obs_dim))
    rew = -np.square(next_obs).sum(1)
    done = (rng.uniform(size=n) < 0.05).astype(np.float32)
    return batch_from_arrays(obs, act, rew, next_obs, done)


def one(n: int, seed: int, shift: float = 0.0) -> Batch:
    """synthetic_batch as a population of one ([1, n, dim]): what the algorithms' terms take."""
    return lift(synthetic_batch(n, seed, shift))


def set_constant_logits(disc, logits: tuple[float, float]) -> None:
    """Make every member of a PopulationDiscriminator output exactly `logits` (each in (-2, 2))."""
    last = disc.net.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor(logits) / 2.0).expand_as(last.bias))


def set_constant_q(critic, values: tuple[float, ...]) -> None:
    """Make every member's critic i of a PopulationQ return values[i] on every input."""
    last = critic.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1, 1).expand_as(last.bias))


def stack_batches(batches: list[Batch]) -> Batch:
    """Member batches [B, dim] -> one population batch [P, B, dim]."""
    return Batch(*(torch.stack([getattr(b, f) for b in batches]) for f in ("obs", "act", "rew", "next_obs", "done")))


class RecordingNoise:
    """A noise source that passes another's draws through and keeps them (a population's noise, to
    replay to single learners)."""

    def __init__(self, inner):
        self.inner, self.draws = inner, []

    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        self.draws.append(t.clone())
        return t

    def normal(self, shape):
        return self._keep(self.inner.normal(shape))

    def uniform(self, shape):
        return self._keep(self.inner.uniform(shape))

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state) -> None:
        self.inner.set_state(state)


class ReplayNoise:
    """Gives a single learner member k's share ([k:k+1]) of a recorded population's draws, in order."""

    def __init__(self, recorder: RecordingNoise, k: int):
        self.recorder, self.k, self.i = recorder, k, 0

    def _next(self, shape) -> torch.Tensor:
        draw = self.recorder.draws[self.i][self.k:self.k + 1]
        self.i += 1
        assert tuple(draw.shape) == tuple(shape), f"replayed draw {tuple(draw.shape)} != requested {tuple(shape)}"
        return draw.clone()

    normal = uniform = _next

    def get_state(self):
        return torch.tensor([self.i])

    def set_state(self, state) -> None:
        self.i = int(state[0])

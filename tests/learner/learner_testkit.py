"""Shared helpers for the learner tests (imported by name: conftest.py puts this folder on sys.path,
because --import-mode=importlib does not make conftest importable)."""

from __future__ import annotations

import numpy as np
import torch

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


def set_constant_logits(disc, logits: tuple[float, float]) -> None:
    """Make a Discriminator output exactly `logits` (each in (-2, 2)) for every input."""
    last = disc.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor(logits) / 2.0))


def set_constant_q(critic, values: tuple[float, ...]) -> None:
    """Make a TwinQ return values[i] for critic i on every input."""
    last = critic.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1))

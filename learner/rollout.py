"""Environments for the learner: env factory, sim rollouts with the current policy, evaluation.

Why separate from train.py: the rollout is the piece a worker pool (processes, mujoco.rollout, a
GPU simulator) would replace; it takes a policy *function* and returns plain numpy arrays, so it
has no tie to torch or to the algorithm.

Task names: a sim_models task (`stand_still`, `move_straight`, ... see docs/interfaces.md) built
with `sim_models.make_env(task, profile, seed)`, or `gym:<id>` for any gymnasium env (useful
before sim_models exists and for quick checks); for gym tasks the "profile" is either `nominal`
or comma-separated env kwargs, e.g. `g=12.0` for Pendulum-v1's gravity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

PolicyFn = Callable[[np.ndarray], np.ndarray]  # obs [obs_dim] -> action [act_dim] in [-1, 1]
# A policy object may also have reset() (a stateful controller): it is called at every episode start.


def _episode_start(policy: PolicyFn) -> None:
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
GYM_PREFIX = "gym:"


class EnvSpecError(ValueError):
    """A task or profile name the learner cannot build."""


def _parse_kwargs(profile: str) -> dict[str, float | str]:
    if profile in ("", "nominal"):
        return {}
    out: dict[str, float | str] = {}
    for part in profile.split(","):
        if "=" not in part:
            raise EnvSpecError(f"gym profile must be 'nominal' or 'key=value,...', got {profile!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def make_env(task: str, profile: str = "nominal", seed: int | None = None):
    """A gymnasium env for `task` under dynamics `profile` (see module docstring)."""
    import gymnasium as gym

    if task.startswith(GYM_PREFIX):
        env = gym.make(task[len(GYM_PREFIX):], **_parse_kwargs(profile))
    else:
        try:
            import sim_models
        except ImportError as exc:  # pragma: no cover - depends on the checkout
            raise EnvSpecError(f"sim_models is not importable for task {task!r}: {exc}") from exc
        env = sim_models.make_env(task, profile, seed=seed)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def env_dims(env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


class ActionScaler:
    """Maps a policy action in [-1, 1] to the env's Box bounds (identity for [-1, 1] envs)."""

    def __init__(self, env):
        low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
        self.center, self.half = (high + low) / 2, (high - low) / 2

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self.center + self.half * np.clip(a, -1.0, 1.0)


@dataclass
class Transitions:
    """Columnar transitions (float32), `terminals` = true termination (no bootstrap)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_returns: list[float]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in
                ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}


def rollout(env, policy: PolicyFn, n_steps: int, seed: int, max_episode_steps: int | None = None) -> Transitions:
    """Run `policy` for n_steps from a fresh reset(seed), resetting at episode ends.

    Starting every call from reset(seed) makes a call a pure function of (seed, policy): a run
    resumed from a checkpoint then replays exactly what the uninterrupted run did.
    """
    scale = ActionScaler(env)
    obs_l, act_l, rew_l, next_l, term_l, tout_l, returns = [], [], [], [], [], [], []
    obs, _ = env.reset(seed=seed)
    _episode_start(policy)
    ep_ret, ep_len = 0.0, 0
    for _ in range(n_steps):
        a = np.asarray(policy(np.asarray(obs, np.float32)), np.float32).reshape(-1)
        next_obs, r, terminated, truncated, _ = env.step(scale(a))
        ep_ret += float(r)
        ep_len += 1
        truncated = truncated or (max_episode_steps is not None and ep_len >= max_episode_steps)
        obs_l.append(obs); act_l.append(a); rew_l.append(r); next_l.append(next_obs)
        term_l.append(terminated); tout_l.append(truncated and not terminated)
        if terminated or truncated:
            returns.append(ep_ret)
            ep_ret, ep_len = 0.0, 0
            obs, _ = env.reset()
            _episode_start(policy)
        else:
            obs = next_obs
    f = np.float32
    return Transitions(np.asarray(obs_l, f), np.asarray(act_l, f), np.asarray(rew_l, f), np.asarray(next_l, f),
                       np.asarray(term_l, f), np.asarray(tout_l, f), returns)


def evaluate(env, policy: PolicyFn, episodes: int, seed: int, max_episode_steps: int | None = None) -> dict:
    """Mean/std return and mean length of `episodes` full episodes (deterministic policy expected)."""
    scale = ActionScaler(env)
    rets, lens = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        _episode_start(policy)
        ret, n, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(scale(policy(np.asarray(obs, np.float32))))
            ret += float(r)
            n += 1
            done = terminated or truncated or (max_episode_steps is not None and n >= max_episode_steps)
        rets.append(ret)
        lens.append(n)
    return {"return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)), "length_mean": float(np.mean(lens))}

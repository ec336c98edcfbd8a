"""The dataset behaviours, defined once: which policy each episode runs, and the collection loop.

Why one module: the collect CLI (`python -m sim_models.collect`), the experiment grid
(`learner.experiments.datasets`) and `learner.train --collect-*` each had their own behaviours,
with two spellings (`medium-replay` / `medium_replay`) and two meanings for the same name. The
grid's definitions won (committed results were trained on its data, and a test keeps its data
bit-identical: tests/experiments/test_dataset_identity.py); docs/sim_models.md says what changed
for the CLI.

Behaviours (canonical names use underscores; D4RL's hyphenated spellings are accepted as aliases
by `canonical_behaviour`, the one place names are normalised):

- medium: the detuned LQR (`BalanceController(detuned=True)`) + Gaussian action noise (0.3). The
  tuned controller plus noise is nearly expert on this robot (behaviour cloning alone would match
  it), so "medium" must come from a weaker controller.
- medium_replay: what a learner's replay buffer holds on its way to medium: each episode's gain
  ramps from 40% of the detuned gain to all of it over the budget, the noise from 0.8 to `noise`.
- medium_expert: alternating episodes, detuned then tuned, both at `noise` (D4RL's mix of medium
  and expert data, interleaved rather than concatenated).
- expert: the tuned controller + noise 0.1.
- noisy: the tuned controller + noise 0.3 (give another `noise` for other levels).
- random: uniform actions in [-1, 1] (the only behaviour that needs no controller: gym tasks).

The collection loop: episode k starts from `env.reset(seed=seed * 100_003 + k)`, one
`np.random.default_rng(seed)` draws all noise, and the last row of an episode cut by the step
budget is a timeout, never a termination (the episode did not end there, so a critic must
bootstrap). Stored actions are in [-1, 1]; an env with other bounds receives them rescaled.

NUMPY ONLY plus sim_models.controller (itself task_contract, numpy-only): the env is passed in,
so this module imports neither mujoco nor gymnasium.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sim_models.controller import BalanceController

BEHAVIOURS: tuple[str, ...] = ("medium", "medium_replay", "medium_expert", "expert", "noisy", "random")
DEFAULT_NOISE: dict[str, float] = {"medium": 0.3, "medium_replay": 0.3, "medium_expert": 0.3, "expert": 0.1,
                                   "noisy": 0.3, "random": 0.0}
REPLAY_GAIN_START = 0.4  # medium_replay: first episodes use 40% of the detuned gain ...
REPLAY_NOISE_START = 0.8  # ... and this much action noise, both ramping to the medium values
EPISODE_SEED_STRIDE = 100_003  # episode k of a collection with seed s resets with s * stride + k
D4RL_COLUMNS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


class UnknownBehaviourError(ValueError):
    """A behaviour name that is not one of BEHAVIOURS (nor its D4RL hyphen spelling)."""


def canonical_behaviour(name: str) -> str:
    """The canonical (underscore) name of `name`; D4RL's `medium-replay` gives `medium_replay`.

    Raises UnknownBehaviourError listing the valid names for anything else.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in BEHAVIOURS:
        raise UnknownBehaviourError(f"unknown behaviour {name!r}; valid: {', '.join(BEHAVIOURS)} "
                                    "(D4RL's hyphenated spellings such as 'medium-replay' are accepted too)")
    return key


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode `episode` of a collection seeded `seed`."""
    return seed * EPISODE_SEED_STRIDE + episode


@dataclass(frozen=True)
class EpisodePlan:
    """What one episode runs: a controller plus Gaussian noise of std `noise`, or uniform random
    actions when `controller` is None."""

    controller: BalanceController | None
    noise: float


class Behaviour:
    """A named behaviour on one task: `plan(episode, progress)` says what each episode runs.

    `noise` None takes the behaviour's default (DEFAULT_NOISE). Controllers are built only when
    the behaviour uses one, so `random` works on tasks without a controller (gym:<id>).
    """

    def __init__(self, name: str, task: str, noise: float | None = None) -> None:
        self.name = canonical_behaviour(name)
        self.task = task
        self.noise = DEFAULT_NOISE[self.name] if noise is None else float(noise)
        if not np.isfinite(self.noise) or self.noise < 0:
            raise ValueError(f"behaviour noise must be a finite std >= 0, got {noise!r}")
        uses_tuned = self.name in ("expert", "noisy", "medium_expert")
        uses_detuned = self.name in ("medium", "medium_replay", "medium_expert")
        self.tuned = BalanceController(task) if uses_tuned else None
        self.detuned = BalanceController(task, detuned=True) if uses_detuned else None

    def plan(self, episode: int, progress: float) -> EpisodePlan:
        """The policy of episode number `episode`, begun after `progress` (0..1) of the budget."""
        if self.name == "random":
            return EpisodePlan(None, 0.0)
        if self.name in ("expert", "noisy") or (self.name == "medium_expert" and episode % 2 == 1):
            return EpisodePlan(self.tuned, self.noise)
        if self.name == "medium_replay":
            ctrl = BalanceController(self.task, detuned=True)
            ctrl.gain = self.detuned.gain * (REPLAY_GAIN_START + (1 - REPLAY_GAIN_START) * progress)
            return EpisodePlan(ctrl, REPLAY_NOISE_START + (self.noise - REPLAY_NOISE_START) * progress)
        return EpisodePlan(self.detuned, self.noise)


@dataclass
class Episode:
    """One collected episode: its D4RL rows (lists, one entry a step), return and length."""

    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in D4RL_COLUMNS})
    ret: float = 0.0

    @property
    def length(self) -> int:
        return len(self.rows["rewards"])


def _to_env_action(space: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Map a [-1, 1] action to the env's Box bounds; the identity for [-1, 1] envs (bit for bit)."""
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if np.all(low == -1.0) and np.all(high == 1.0):
        return lambda a: a
    center, half = (high + low) / 2, (high - low) / 2
    return lambda a: center + half * a


def run_episode(env: Any, plan: EpisodePlan, rng: np.random.Generator, seed: int, max_steps: int,
                max_episode_steps: int | None = None) -> Episode:
    """One episode of `plan` from env.reset(seed), at most `max_steps` rows.

    An episode cut by `max_steps` or `max_episode_steps` ends in a timeout row, never a
    termination.
    """
    obs, _ = env.reset(seed=seed)
    if plan.controller is not None:
        plan.controller.reset()
    shape = env.action_space.shape
    to_env = _to_env_action(env.action_space)
    ep = Episode()
    for _ in range(max_steps):
        if plan.controller is None:
            a = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        else:
            a = np.clip(np.asarray(plan.controller.act(obs), np.float32) + plan.noise * rng.standard_normal(shape),
                        -1.0, 1.0).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(to_env(a))
        ep.ret += float(r)
        trunc = trunc or (max_episode_steps is not None and ep.length + 1 >= max_episode_steps)
        for k, v in zip(D4RL_COLUMNS, (obs, a, r, nxt, term, trunc and not term)):
            ep.rows[k].append(v)
        obs = nxt
        if term or trunc:
            break
    if ep.length and not ep.rows["terminals"][-1]:
        ep.rows["timeouts"][-1] = True  # cut by the step budget: a time-out, never a termination
    return ep


@dataclass
class Collection:
    """The result of `collect`: D4RL columns (float32; terminals and timeouts bool) and per-episode
    returns and lengths."""

    data: dict[str, np.ndarray]
    episode_returns: list[float]
    episode_lengths: list[int]

    @property
    def episodes(self) -> int:
        return len(self.episode_returns)


def collect(env: Any, behaviour: Behaviour, steps: int, seed: int,
            max_episode_steps: int | None = None) -> Collection:
    """Run `behaviour` in `env` for exactly `steps` transitions (see the module docstring)."""
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in D4RL_COLUMNS}
    returns: list[float] = []
    lengths: list[int] = []
    n = 0
    while n < steps:
        plan = behaviour.plan(len(returns), n / steps)
        ep = run_episode(env, plan, rng, episode_seed(seed, len(returns)), steps - n, max_episode_steps)
        for k in cols:
            cols[k].extend(ep.rows[k])
        returns.append(ep.ret)
        lengths.append(ep.length)
        n += ep.length
    data = {k: np.asarray(v, np.float32) for k, v in cols.items()}
    data["terminals"] = data["terminals"].astype(bool)
    data["timeouts"] = data["timeouts"].astype(bool)
    return Collection(data, returns, lengths)

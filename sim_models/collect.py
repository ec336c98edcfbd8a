"""Collect an offline dataset on any profile with a behaviour policy; write D4RL-layout HDF5.

    python -m sim_models.collect --task stand_still --profile moderate --behaviour medium \
        --steps 10000 --seed 0 --out data/stand_still-moderate-medium.hdf5

Behaviours (D4RL-like quality levels; "medium" must be genuinely medium: the tuned controller plus
noise is nearly expert here, so behaviour cloning alone would match it and the benchmark would not
separate the algorithms):
  expert          tuned LQR controller + Gaussian action noise 0.1
  medium          detuned controller + noise 0.3
  random          uniform actions in [-1, 1]
  medium-replay   episodes whose policy moves from random to medium over the run (a training
                  run's replay buffer, coarsely)
  medium-expert   half the steps medium, half expert (as D4RL concatenates them)
  noisy           tuned controller + noise --noise (default 0.3)
The stored action is the policy's clean action (what the env received).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim_models.controller import BalanceController
from sim_models.datasets import save_d4rl
from sim_models.envs import make_env
from sim_models.profiles import load_profile

log = logging.getLogger(__name__)

BEHAVIOURS: tuple[str, ...] = ("expert", "medium", "random", "medium-replay", "medium-expert", "noisy")
EXPERT_NOISE = 0.1
MEDIUM_NOISE = 0.3


@dataclass
class CollectConfig:
    """What to collect."""

    task: str = "stand_still"
    """Task name (stand_still, move_straight, turn, locomotion)."""
    profile: str = "nominal"
    """Dynamics profile: nominal, mild, moderate, severe or a .toml path."""
    behaviour: str = "medium"
    """Behaviour policy: expert, medium, random, medium-replay, medium-expert, noisy."""
    steps: int = 10_000
    """Number of transitions to collect."""
    seed: int = 0
    """Seed of the env resets and the behaviour noise."""
    noise: float = 0.3
    """Action-noise std for the "noisy" behaviour."""
    out: str = "data/dataset.hdf5"
    """Output HDF5 path."""


class CollectConfigError(ValueError):
    """A collection config value is invalid."""


class BehaviourPolicy:
    """Controller + noise, random, or a schedule mixing them across episodes."""

    def __init__(self, task: str, behaviour: str, total_steps: int, rng: np.random.Generator,
                 act_dim: int, noise: float = 0.3) -> None:
        if behaviour not in BEHAVIOURS:
            raise CollectConfigError(f"unknown behaviour {behaviour!r}; expected one of {BEHAVIOURS}")
        self.behaviour, self.total_steps, self.rng, self.act_dim = behaviour, total_steps, rng, act_dim
        self.noise = noise
        self.tuned = BalanceController(task)
        self.detuned = BalanceController(task, detuned=True)
        self._mode = ("random", 0.0)

    def start_episode(self, steps_done: int) -> None:
        """Choose this episode's policy (the mixtures change it with progress)."""
        self.tuned.reset()
        self.detuned.reset()
        frac = steps_done / max(1, self.total_steps)
        b = self.behaviour
        if b == "expert":
            self._mode = ("tuned", EXPERT_NOISE)
        elif b == "medium":
            self._mode = ("detuned", MEDIUM_NOISE)
        elif b == "noisy":
            self._mode = ("tuned", self.noise)
        elif b == "random":
            self._mode = ("random", 0.0)
        elif b == "medium-expert":
            self._mode = ("detuned", MEDIUM_NOISE) if frac < 0.5 else ("tuned", EXPERT_NOISE)
        else:  # medium-replay: random early, then detuned with shrinking noise
            self._mode = ("random", 0.0) if frac < 0.2 else ("detuned", 1.0 - 0.7 * frac)

    def act(self, obs: np.ndarray) -> np.ndarray:
        kind, noise = self._mode
        if kind == "random":
            return self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        base = (self.tuned if kind == "tuned" else self.detuned).act(obs)
        return np.clip(base + self.rng.normal(0.0, noise, self.act_dim), -1, 1).astype(np.float32)


def collect(config: CollectConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run the behaviour policy for `config.steps` transitions; return (arrays, metadata)."""
    if config.steps <= 0:
        raise CollectConfigError(f"steps must be > 0, got {config.steps}")
    profile = load_profile(config.profile)
    env = make_env(config.task, profile)
    rng = np.random.default_rng(config.seed)
    act_dim = env.action_space.shape[0]
    policy = BehaviourPolicy(config.task, config.behaviour, config.steps, rng, act_dim, config.noise)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards",
                                             "next_observations", "terminals", "timeouts")}
    returns: list[float] = []
    episode = 0
    while len(rows["rewards"]) < config.steps:
        obs, _ = env.reset(seed=config.seed * 100_003 + episode)
        policy.start_episode(len(rows["rewards"]))
        ret = 0.0
        while True:
            action = policy.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # The last row of a budget cut is a timeout too: the episode did not end there.
            cut = len(rows["rewards"]) + 1 >= config.steps
            for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                               ("next_observations", next_obs), ("terminals", terminated),
                               ("timeouts", (truncated or cut) and not terminated)):
                rows[key].append(value)
            ret += reward
            obs = next_obs
            if terminated or truncated or cut:
                break
        returns.append(ret)
        episode += 1
    data = {k: np.asarray(v) for k, v in rows.items()}
    metadata = {
        "task": config.task,
        "profile": profile.to_dict(),
        "behaviour": config.behaviour,
        "seed": config.seed,
        "steps": config.steps,
        "episodes": episode,
        "mean_episode_return": float(np.mean(returns)),
        "mean_reward": float(np.mean(data["rewards"])),
        "created_unix": time.time(),
        "generator": "sim_models.collect",
    }
    return data, metadata


def parse_args(argv: list[str] | None = None) -> CollectConfig:
    parser = argparse.ArgumentParser(
        prog="python -m sim_models.collect",
        description="Collect a D4RL-layout HDF5 dataset with a behaviour policy on a profile.")
    parser.add_argument("--config", type=Path, help="TOML file with CollectConfig fields (CLI wins)")
    defaults = CollectConfig()
    helps = {
        "task": "task name or id with observation options: stand_still, move_straight, turn, locomotion, e.g. stand_still:action_history=2",
        "profile": "dynamics profile: nominal, mild, moderate, severe, or a .toml path",
        "behaviour": f"behaviour policy: {', '.join(BEHAVIOURS)}",
        "steps": "number of transitions to collect",
        "seed": "seed for resets and behaviour noise",
        "noise": "action-noise std of the 'noisy' behaviour",
        "out": "output .hdf5 path",
    }
    for f in dataclasses.fields(CollectConfig):
        parser.add_argument(f"--{f.name}", type=type(getattr(defaults, f.name)), default=None,
                            help=f"{helps[f.name]} (default {getattr(defaults, f.name)!r})")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(tomllib.loads(args.config.read_text()))
        unknown = set(values) - {f.name for f in dataclasses.fields(CollectConfig)}
        if unknown:
            parser.error(f"unknown key(s) in {args.config}: {sorted(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return CollectConfig(**values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    data, metadata = collect(config)
    path = save_d4rl(config.out, data, metadata)
    print(f"wrote {path}: {len(data['rewards'])} transitions, {metadata['episodes']} episodes, "
          f"mean episode return {metadata['mean_episode_return']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Collect an offline dataset on any profile with a behaviour policy; write D4RL-layout HDF5.

    python -m sim_models.collect --task stand_still --profile moderate --behaviour medium \
        --steps 10000 --seed 0 --out data/stand_still-moderate-medium.hdf5

Behaviours (defined once in sim_models.behaviours, shared with the experiment grid and
`learner.train`; D4RL's hyphenated spellings such as `medium-replay` are accepted):
  medium          detuned LQR controller + Gaussian action noise (default 0.3)
  medium_replay   gain ramping from 40% of the detuned gain to all of it, noise 0.8 -> --noise
  medium_expert   alternating episodes: detuned, then tuned, both at --noise
  expert          tuned controller + noise (default 0.1)
  noisy           tuned controller + noise (default 0.3)
  random          uniform actions in [-1, 1]
"medium" must be genuinely medium: the tuned controller plus noise is nearly expert here, so
behaviour cloning alone would match it and the benchmark would not separate the algorithms.
The stored action is the noisy action the env received.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging
from sim_models.behaviours import BEHAVIOURS, DEFAULT_NOISE, Behaviour
from sim_models.behaviours import collect as collect_behaviour
from sim_models.datasets import save_d4rl
from sim_models.envs import make_env
from sim_models.profiles import load_profile

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    """What to collect."""

    task: str = "stand_still"
    """Task name (stand_still, move_straight, turn, locomotion)."""
    profile: str = "nominal"
    """Dynamics profile: nominal, mild, moderate, severe or a .toml path."""
    behaviour: str = "medium"
    """Behaviour policy: one of sim_models.behaviours.BEHAVIOURS (or its D4RL hyphen spelling)."""
    steps: int = 10_000
    """Number of transitions to collect."""
    seed: int = 0
    """Seed of the env resets and the behaviour noise."""
    noise: float | None = None
    """Action-noise std of the behaviour's controller; None = the behaviour's default."""
    out: str = "data/dataset.hdf5"
    """Output HDF5 path."""


class CollectConfigError(ValueError):
    """A collection config value is invalid."""


def collect(config: CollectConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run the behaviour policy for `config.steps` transitions; return (arrays, metadata)."""
    if config.steps <= 0:
        raise CollectConfigError(f"steps must be > 0, got {config.steps}")
    try:
        behaviour = Behaviour(config.behaviour, config.task, config.noise)
    except ValueError as exc:  # UnknownBehaviourError or a bad noise
        raise CollectConfigError(str(exc)) from exc
    profile = load_profile(config.profile)
    env = make_env(config.task, profile, seed=config.seed)
    got = collect_behaviour(env, behaviour, config.steps, config.seed)
    metadata = {
        "task": config.task,
        "profile": profile.to_dict(),
        "behaviour": behaviour.name,
        "noise": behaviour.noise,
        "seed": config.seed,
        "steps": config.steps,
        "episodes": got.episodes,
        "mean_episode_return": float(np.mean(got.episode_returns)),
        "mean_reward": float(np.mean(got.data["rewards"])),
        "created_unix": time.time(),
        "generator": "sim_models.collect",
    }
    return got.data, metadata


def parse_args(argv: list[str] | None = None) -> CollectConfig:
    parser = ArgumentParser(
        prog="python -m sim_models.collect",
        description="Collect a D4RL-layout HDF5 dataset with a behaviour policy on a profile.",
        example="python -m sim_models.collect --task stand_still --profile moderate --behaviour medium "
                "--steps 20000 --out data/stand_still-moderate-medium.hdf5")
    parser.add_argument("--config", type=Path, help="TOML file with CollectConfig fields (CLI wins)")
    defaults = CollectConfig()
    helps = {
        "task": "task name or id with observation options: stand_still, move_straight, turn, locomotion, e.g. stand_still:action_history=2",
        "profile": "dynamics profile: nominal, mild, moderate, severe, or a .toml path",
        "behaviour": f"behaviour policy: {', '.join(BEHAVIOURS)}",
        "steps": "number of transitions to collect",
        "seed": "seed for resets and behaviour noise",
        "noise": "action-noise std of the behaviour's controller; default: the behaviour's own ("
                 + ", ".join(f"{k} {v}" for k, v in DEFAULT_NOISE.items() if k != "random") + ")",
        "out": "output .hdf5 path",
    }
    for f in dataclasses.fields(CollectConfig):
        kind = float if f.name == "noise" else type(getattr(defaults, f.name))
        parser.add_argument(f"--{f.name}", type=kind, default=None,
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
    setup_logging("INFO")
    config = parse_args(argv)
    data, metadata = collect(config)
    path = save_d4rl(config.out, data, metadata)
    print(f"wrote {path}: {len(data['rewards'])} transitions, {metadata['episodes']} episodes, "
          f"mean episode return {metadata['mean_episode_return']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

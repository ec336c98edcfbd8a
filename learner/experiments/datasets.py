"""Offline "real" datasets for the grid: genuinely medium behaviour, D4RL layout.

The behaviours are defined once, in sim_models.behaviours (the collect CLI and `learner.train`
use the same definitions); the grid offers three of them:

- medium: the detuned LQR (sim_models.controller, detuned=True) plus Gaussian noise; on a gap
  profile it loses balance after a second or two, about a third of the tuned return. (The tuned
  controller plus noise is nearly expert: behaviour cloning alone would then win trivially.)
- medium_replay: what a learner's replay buffer holds on its way to "medium": episodes whose
  controller gain ramps from 40% of the detuned gain up to it, with noise ramping 0.8 -> noise.
- medium_expert: alternating medium and tuned-controller episodes (D4RL's medium-expert).

D4RL's hyphenated spellings (`medium-replay`) are accepted as `kind` and stored as the canonical
underscore name. The data of a (spec, task, profile, seed) is bit-identical to what the committed
results were trained on (tests/experiments/test_dataset_identity.py).

Every dataset is collected in the REAL profile (the robot) and written as HDF5 with the D4RL keys
(observations, actions, rewards, next_observations, terminals, timeouts; sim_models.datasets)
plus a JSON sidecar with the behaviour's mean episode return and reference returns (the tuned and
the detuned controller without noise), so a results table can say how "medium" the data really is.
This module adds those reference returns and the once-per-grid caching the driver needs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol import strict_json

log = logging.getLogger(__name__)

GRID_BEHAVIOURS = ("medium", "medium_replay", "medium_expert")  # defined in sim_models.behaviours
KINDS = (*GRID_BEHAVIOURS, "file")


class DatasetSpecError(ValueError):
    """A dataset spec the grid cannot build (unknown kind, missing file, bad size)."""


@dataclass
class DatasetSpec:
    """One dataset column of the grid; `kind = "file"` uses `path` (D4RL HDF5) as given."""

    name: str
    kind: str = "medium"
    steps: int = 15_000  # transitions to collect (ignored for files)
    noise: float = 0.3  # Gaussian action-noise std of the behaviour controller
    path: str = ""  # for kind = "file"; may contain {task}, {gap}, {dataset}

    def __post_init__(self) -> None:
        if self.kind.replace("-", "_") in GRID_BEHAVIOURS:  # D4RL's spelling -> the canonical one
            from sim_models.behaviours import canonical_behaviour

            self.kind = canonical_behaviour(self.kind)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise DatasetSpecError(f"dataset {self.name!r}: kind {self.kind!r}, expected one of {KINDS}")
        if self.kind == "file" and not self.path:
            raise DatasetSpecError(f"dataset {self.name!r}: kind 'file' needs a path")
        if self.kind != "file" and self.steps <= 0:
            raise DatasetSpecError(f"dataset {self.name!r}: steps must be positive, got {self.steps}")


def controller_return(task: str, profile: str, detuned: bool, episodes: int = 3, seed: int = 90_000) -> float:
    """Mean return of the noise-free controller in `profile` (reference figure for the table)."""
    from learner.rollout import make_env
    from sim_models.behaviours import EpisodePlan, run_episode
    from sim_models.controller import BalanceController

    env = make_env(task, profile, seed=seed)
    plan = EpisodePlan(BalanceController(task, detuned=detuned), 0.0)
    rng = np.random.default_rng(seed)
    return float(np.mean([run_episode(env, plan, rng, seed + i, 10**7).ret for i in range(episodes)]))


def collect(spec: DatasetSpec, task: str, profile: str, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Collect spec.steps transitions in `profile`; returns (D4RL columns, metadata)."""
    from learner.rollout import make_env
    from sim_models.behaviours import Behaviour
    from sim_models.behaviours import collect as collect_behaviour

    spec.validate()
    env = make_env(task, profile, seed=seed)
    got = collect_behaviour(env, Behaviour(spec.kind, task, spec.noise), spec.steps, seed)
    meta = {"task": task, "profile": profile, "kind": spec.kind, "noise": spec.noise, "seed": seed,
            "transitions": int(sum(got.episode_lengths)), "episodes": got.episodes,
            "behaviour_return_mean": float(np.mean(got.episode_returns)),
            "behaviour_length_mean": float(np.mean(got.episode_lengths))}
    return got.data, meta


def save_hdf5(path: Path, data: dict[str, np.ndarray], meta: dict) -> None:
    """D4RL-layout HDF5 through the sim_models.datasets contract, plus a `.json` sidecar."""
    from sim_models.datasets import save_d4rl

    save_d4rl(path, data, meta)
    path.with_suffix(".json").write_text(strict_json.dumps(meta, indent=2) + "\n")


def ensure_dataset(spec: DatasetSpec, task: str, profile: str, out_dir: Path, seed: int = 0) -> tuple[Path, dict]:
    """The dataset file for (spec, task, profile): collected once, reused by every cell and resume."""
    if spec.kind == "file":
        path = Path(spec.path)
        if not path.exists():
            raise DatasetSpecError(f"dataset {spec.name!r}: file {path} does not exist")
        side = path.with_suffix(".json")
        return path, (json.loads(side.read_text()) if side.exists() else {"kind": "file", "path": str(path)})
    path = out_dir / f"{task}_{profile}_{spec.name}.hdf5".replace("/", "_")
    side = path.with_suffix(".json")
    if path.exists() and side.exists():
        return path, json.loads(side.read_text())
    data, meta = collect(spec, task, profile, seed)
    meta["tuned_return"] = controller_return(task, profile, detuned=False)
    meta["detuned_return"] = controller_return(task, profile, detuned=True)
    save_hdf5(path, data, meta)
    log.info("dataset %s: %d transitions, behaviour return %.0f (tuned %.0f)", path, meta["transitions"],
             meta["behaviour_return_mean"], meta["tuned_return"])
    return path, meta

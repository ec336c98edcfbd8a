"""Offline "real" datasets for the grid: genuinely medium behaviour, D4RL layout.

Why not train.py's own collection: it uses the tuned controller plus noise, which is nearly expert
(an earlier prototype measured behaviour cloning at ~99% of the controller on such data, so an
offline-only baseline wins trivially). The paper's point needs data like D4RL's:

- medium: the detuned LQR (sim_models.controller, detuned=True) plus Gaussian noise; on a gap
  profile it loses balance after a second or two, about a third of the tuned return.
- medium_replay: what a learner's replay buffer holds on its way to "medium": episodes whose
  controller gain ramps from a fraction of the detuned gain up to it, with noise ramping down.
- medium_expert: half medium episodes, half tuned-controller episodes (D4RL's medium-expert).

Every dataset is collected in the REAL profile (the robot) and written as HDF5 with the D4RL keys
(observations, actions, rewards, next_observations, terminals, timeouts; sim_models.datasets)
plus a JSON sidecar with the behaviour's mean episode return and reference returns (the tuned and
the detuned controller without noise), so a results table can say how "medium" the data really is.
sim_models.collect offers similar behaviours as a CLI; this module adds the reference returns and
the once-per-grid caching the driver needs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol import strict_json

log = logging.getLogger(__name__)

KINDS = ("medium", "medium_replay", "medium_expert", "file")
REPLAY_GAIN_START = 0.4  # medium_replay: first episodes use 40% of the detuned gain
REPLAY_NOISE_START = 0.8  # ... and this much action noise, ramping to the medium values


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

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise DatasetSpecError(f"dataset {self.name!r}: kind {self.kind!r}, expected one of {KINDS}")
        if self.kind == "file" and not self.path:
            raise DatasetSpecError(f"dataset {self.name!r}: kind 'file' needs a path")
        if self.kind != "file" and self.steps <= 0:
            raise DatasetSpecError(f"dataset {self.name!r}: steps must be positive, got {self.steps}")


def _episode(env, ctrl, noise: float, rng: np.random.Generator, seed: int, max_steps: int) -> dict:
    """One episode of `ctrl` + noise from reset(seed), at most max_steps transitions."""
    obs, _ = env.reset(seed=seed)
    ctrl.reset()
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                              "terminals", "timeouts")}
    ret = 0.0
    for _ in range(max_steps):
        a = np.clip(np.asarray(ctrl.act(obs), np.float32) + noise * rng.standard_normal(env.action_space.shape),
                    -1.0, 1.0).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        ret += float(r)
        for k, v in zip(rows, (obs, a, r, nxt, term, trunc and not term)):
            rows[k].append(v)
        obs = nxt
        if term or trunc:
            break
    if rows["timeouts"] and not rows["terminals"][-1]:
        rows["timeouts"][-1] = True  # cut by the step budget: a time-out, never a termination
    return {"rows": rows, "return": ret, "length": len(rows["rewards"])}


def controller_return(task: str, profile: str, detuned: bool, episodes: int = 3, seed: int = 90_000) -> float:
    """Mean return of the noise-free controller in `profile` (reference figure for the table)."""
    from learner.rollout import make_env
    from sim_models.controller import BalanceController

    env = make_env(task, profile, seed=seed)
    ctrl = BalanceController(task, detuned=detuned)
    rng = np.random.default_rng(seed)
    return float(np.mean([_episode(env, ctrl, 0.0, rng, seed + i, 10**7)["return"] for i in range(episodes)]))


def collect(spec: DatasetSpec, task: str, profile: str, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Collect spec.steps transitions in `profile`; returns (D4RL columns, metadata)."""
    from learner.rollout import make_env
    from sim_models.controller import BalanceController

    spec.validate()
    env = make_env(task, profile, seed=seed)
    rng = np.random.default_rng(seed)
    detuned, tuned = BalanceController(task, detuned=True), BalanceController(task, detuned=False)
    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                              "terminals", "timeouts")}
    returns, lengths, ep, n = [], [], 0, 0
    while n < spec.steps:
        progress = n / spec.steps
        if spec.kind == "medium_replay":
            ctrl = BalanceController(task, detuned=True)
            ctrl.gain = detuned.gain * (REPLAY_GAIN_START + (1 - REPLAY_GAIN_START) * progress)
            noise = REPLAY_NOISE_START + (spec.noise - REPLAY_NOISE_START) * progress
        elif spec.kind == "medium_expert" and ep % 2 == 1:
            ctrl, noise = tuned, spec.noise
        else:
            ctrl, noise = detuned, spec.noise
        out = _episode(env, ctrl, noise, rng, seed * 100_003 + ep, spec.steps - n)
        for k in cols:
            cols[k].extend(out["rows"][k])
        returns.append(out["return"])
        lengths.append(out["length"])
        n += out["length"]
        ep += 1
    data = {k: np.asarray(v, np.float32) for k, v in cols.items()}
    data["terminals"] = data["terminals"].astype(bool)
    data["timeouts"] = data["timeouts"].astype(bool)
    meta = {"task": task, "profile": profile, "kind": spec.kind, "noise": spec.noise, "seed": seed,
            "transitions": int(n), "episodes": ep, "behaviour_return_mean": float(np.mean(returns)),
            "behaviour_length_mean": float(np.mean(lengths))}
    return data, meta


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

"""Learner settings that depend on the task, in one place for train, serve, the demo and the grid.

Why: the algorithms' defaults are the paper's, tuned on D4RL HalfCheetah, whose rewards are a few
units per step. The robot tasks pay a constant "alive" term per step (stand_still 30,
move_straight and turn 15, locomotion 10), so a balancing policy's Q is ~ 30 / (1 - 0.99) = 3,000:
about 30x what the critics' learning rates, the target networks' Polyak rate and the penalty
weights expect, and the critic spends most of its budget just climbing to that scale. Scaling the
reward so one step pays at most ~1 keeps the optimum (a positive scale changes no argmax) and puts
Q where the paper's hyper-parameters were tuned.

Measured, not assumed (docs/results.md, "Learner defaults for the robot tasks" and "SAC with the
normalised observation"): the scale is a default only for the algorithms it helped: on the
Markov-gap `stand_still` data it made CQL learn; with the normalised observation it keeps SAC
from collapsing in its simulator (the first sanity gate). H2O keeps the paper's scale: scaled, it
learns earlier on the latency row but swings more, and on the Markov row one seed in three fell
back; DARC and DARC+ were not measured with it and keep 1 too.

H2O's penalty clip (`penalty_clip`): the reference clips the penalty's difference term at
+-1000, a bound sized for HalfCheetah's Q. With the robot's raw rewards (H2O keeps them, above) Q
reaches 1,200-3,000, the clip binds for whole epochs late in training, and there the penalty has no
gradient: H2O's regulariser is off. So the robot tasks lift it (inf). Measured in docs/results.md
("The penalty clip"), 5 seeds each: on move_straight / severe / medium 80 % of the tuned
controller at the end instead of 58 % (the swing between evaluations halved); on stand_still /
severe / medium-replay the same (68 % vs 69 %; over the second half 64 % vs 63 %). Better on one
row, no worse on the other.

Observation normalisation (`obs_normalisation`): the networks read (obs - centre) / scale. The
scale is per field, from FIELD_SCALES: the size of a change a balancing policy must resolve (0.05
rad of pitch), not the data's spread. The centre is the robot's operating point, which the caller
measures: learner.train takes the real dataset's mean, the service the mean of the robot's first
streamed rows (learner/service/trainer.py says why). Why: the pitch a policy must act on differs
from the robot's lean by a few hundredths of a radian while x moves by metres; fed raw, that
signal is a small offset on a large input. Measured in docs/results.md ("Observation
normalisation"): scaled and centred on the lean, sim-only SAC in the hidden profile reaches the
tuned controller where the raw observation stays at about a third of it; either half alone does not.

Precedence, lowest first: the algorithm's dataclass default < these task defaults < the user's
explicit `algo` overrides (`--set reward_scale=1` restores the paper's setting). HalfCheetah and
any `gym:` task keep the paper's defaults (scale 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# 1 / (the task's constant per-step reward): a step pays at most ~1 after scaling.
TASK_REWARD_SCALE: dict[str, float] = {
    "stand_still": 1.0 / 30.0,
    "move_straight": 1.0 / 15.0,
    "turn": 1.0 / 15.0,
    "locomotion": 1.0 / 10.0,
}

# H2O's penalty clip on the robot tasks (see above): none.
ROBOT_PENALTY_CLIP = float("inf")

# Algorithms measured to learn better on the robot tasks with the scaled reward (see above). BC
# ignores rewards; listing it keeps its config honest about what it was given.
SCALED_REWARD_ALGORITHMS = frozenset({"cql", "bc", "sac"})


def task_algo_defaults(task: str, algorithm: str) -> dict[str, Any]:
    """Algorithm-config values this task sets unless the user overrides them ({} for gym tasks)."""
    from learner import algorithms

    names = {f.name for f in dataclasses.fields(algorithms.config_class(algorithm))}
    out: dict[str, Any] = {}
    base = task.split(":", 1)[0]  # a task id's options (history) do not change the reward
    if base in TASK_REWARD_SCALE and algorithm in SCALED_REWARD_ALGORITHMS and "reward_scale" in names:
        out["reward_scale"] = TASK_REWARD_SCALE[base]
    if base in TASK_REWARD_SCALE and "penalty_clip" in names:
        out["penalty_clip"] = ROBOT_PENALTY_CLIP
    return out


def algorithm_config(algorithm: str, task: str, *, hidden: str, seed: int, disc_hidden: str | None = None,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config dict `learner.algorithms.make` gets: shared sizes < task defaults < overrides.

    One function for `learner.train` and the service's trainer, so a run and the robot's learner
    build the same algorithm from the same settings.
    """
    from learner import algorithms

    cfg: dict[str, Any] = {"hidden": hidden, "seed": seed, **task_algo_defaults(task, algorithm)}
    if disc_hidden is not None and "disc_hidden" in {f.name for f in dataclasses.fields(algorithms.config_class(algorithm))}:
        cfg["disc_hidden"] = disc_hidden
    cfg.update(overrides or {})
    return cfg


# The size of a change the policy must resolve, per raw observation field (history entries take
# their field's; past actions are in [-1, 1] already and keep 1). Measured on the paper tasks'
# fields only: tasks with any other field (turn, locomotion) keep the identity until measured.
FIELD_SCALES: dict[str, float] = {"x": 0.5, "v": 0.5, "pitch": 0.05, "pitch_rate": 0.5}


def obs_normalisation(task: str, real_mean: "np.ndarray") -> "tuple[np.ndarray, np.ndarray] | None":
    """(centre, scale) of the networks' input for `task` (a task id with options), or None (the
    identity: gym tasks and tasks whose fields have no measured scale). `real_mean` [obs_dim]:
    the real data's per-entry mean, which centres it (see the module docstring)."""
    if not task or task.startswith("gym:") or task.split(":", 1)[0] not in TASK_REWARD_SCALE:
        return None
    from task_contract.history import ObsLayout

    names = ObsLayout.of(task).names()
    fields = [n.split("@", 1)[0] for n in names]
    if any(not f.startswith("action") and f not in FIELD_SCALES for f in fields):
        return None
    mean = np.asarray(real_mean, np.float32).reshape(-1)
    if mean.shape != (len(names),):
        raise ValueError(f"real mean has {mean.size} entries; task {task!r} observes {len(names)}")
    scale = np.array([1.0 if f.startswith("action") else FIELD_SCALES[f] for f in fields], np.float32)
    return np.nan_to_num(mean), scale

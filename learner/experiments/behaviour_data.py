"""D4RL-style datasets without D4RL: train SAC in the REAL dynamics, then roll out its snapshots.

    python -m learner.experiments.behaviour_data --out-dir data/halfcheetah_selfmade \
        --env-steps 20000 --hidden 128-128 --transitions 10000

Why: the paper's HalfCheetah grid (configs/experiments/halfcheetah_paper.toml) needs
halfcheetah-{medium,medium-replay,medium-expert}-v2.hdf5. D4RL made those by training SAC on the
unmodified HalfCheetah and rolling out an early ("medium") and the final ("expert") policy; this
does the same with the learner's own SAC (learner.algorithms, learner.buffers, learner.rollout),
at whatever budget the machine allows. With a small budget the "expert" is only the best policy
this budget reaches: the JSON written next to the files says how good each level really is.

Training: epochs of [--steps-per-epoch env steps with the current stochastic policy (uniform
random actions for the first --random-steps) -> replay buffer] then [--updates-per-epoch SAC
updates, starting once --start-updates steps are stored], in the profile --profile (default
`nominal` = the real dynamics). Every --eval-every env steps the deterministic policy is
evaluated (--eval-episodes episodes) and a copy of it is kept.

The medium snapshot: the first evaluated policy whose return reaches
    initial + --medium-fraction x (final - initial)
(initial = the untrained policy's return, final = the last evaluation's), i.e. a policy part of
the way from random to the final one; D4RL's halfcheetah medium is ~45% of its expert return.
--medium-step N picks instead the first snapshot at or after env step N.

Files written to --out-dir (`<prefix>` = --prefix, default derived from --task):
    <prefix>-medium-v2.hdf5         --transitions steps of the medium policy (stochastic actions)
    <prefix>-medium-replay-v2.hdf5  the replay buffer up to the medium snapshot (every training step)
    <prefix>-medium-expert-v2.hdf5  the medium rows, then --transitions steps of the final policy
    <prefix>-expert-v2.hdf5         the final policy's rows alone
    <prefix>-full-replay-v2.hdf5    the whole replay buffer (medium-replay is its prefix)
    <prefix>-behaviour.json         returns per level, the learning curve, the settings
    <file>.json next to each HDF5   that level's behaviour return (the grid driver's sidecar layout)
All in the D4RL layout through sim_models.datasets.save_d4rl (observations, actions, rewards,
next_observations, terminals, timeouts; the last row of every rollout is marked a time-out).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from protocol.logs import setup_logging
from learner import algorithms
from learner.buffers import TransitionBuffer
from protocol.config_cli import ArgumentParser, add_dataclass_arguments, help_field, merge_layers
from learner.rollout import GYM_PREFIX, Transitions, env_dims, evaluate, make_env, rollout
from protocol import strict_json

log = logging.getLogger("learner.experiments.behaviour_data")

EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seeds disjoint from training and collection
COLLECT_SEED_OFFSET = 20_000
D4RL_REFERENCE = {"halfcheetah": {"random": -280.2, "medium": 4770.3, "expert": 10656.4}}  # D4RL v2 returns
LEVELS = ("medium", "medium_replay", "medium_expert", "expert", "full_replay")

_f = help_field


class BehaviourDataError(ValueError):
    """Settings that cannot produce the datasets (bad budget, no usable medium snapshot)."""


@dataclass
class BehaviourConfig:
    """Settings of one dataset build; TOML keys = these names, CLI flags = --name-with-dashes."""

    task: str = _f("halfcheetah", "sim_models task or gym:<id> (e.g. gym:Hopper-v5)")
    profile: str = _f("nominal", "dynamics profile the behaviour policy trains and collects in (the REAL one)")
    out_dir: str = _f("data/halfcheetah_selfmade", "folder for the HDF5 files and the JSON")
    prefix: str = _f("", "file name prefix (default: the task name, lower case, e.g. halfcheetah)")
    # SAC training
    env_steps: int = _f(20_000, "env steps of SAC training in total")
    steps_per_epoch: int = _f(1000, "env steps collected before each block of updates")
    updates_per_epoch: int = _f(1000, "SAC updates after each collection block")
    random_steps: int = _f(1000, "first env steps use uniform random actions (SAC warm-up; whole blocks)")
    start_updates: int = _f(1000, "no updates until the buffer holds this many steps")
    batch: int = _f(256, "SAC batch size")
    hidden: str = _f("256-256", "policy/critic hidden sizes")
    algo: dict = _f({}, "SAC config overrides, CLI: --set key=value (e.g. --set gamma=0.99)")
    eval_every: int = _f(2000, "env steps between evaluations (each keeps a policy snapshot)")
    eval_episodes: int = _f(2, "deterministic evaluation episodes")
    max_episode_steps: int = _f(1000, "episode cap in training, evaluation and collection (0 = the env's own; "
                                      "sim_models' halfcheetah env never truncates by itself, D4RL's episodes are 1000)")
    # the datasets
    medium_fraction: float = _f(0.5, "medium = first snapshot at initial + fraction x (final - initial)")
    medium_step: int = _f(0, "if > 0: medium = first snapshot at or after this env step (overrides the fraction)")
    transitions: int = _f(10_000, "rows of the medium and of the expert rollouts")
    seed: int = _f(0, "seeds SAC, the envs and the collection")
    device: str = _f("cpu", "torch device")
    threads: int = _f(1, "torch CPU threads")

    def validate(self) -> None:
        for name in ("env_steps", "steps_per_epoch", "updates_per_epoch", "batch", "eval_every", "eval_episodes",
                     "transitions", "threads"):
            if getattr(self, name) <= 0:
                raise BehaviourDataError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("random_steps", "start_updates", "max_episode_steps", "medium_step"):
            if getattr(self, name) < 0:
                raise BehaviourDataError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.medium_fraction < 1.0:
            raise BehaviourDataError(f"medium_fraction must be in (0, 1), got {self.medium_fraction}")
        if self.medium_step >= self.env_steps:
            raise BehaviourDataError(f"medium_step {self.medium_step} must be below env_steps {self.env_steps}")
        if self.eval_every > self.env_steps:
            raise BehaviourDataError(f"eval_every {self.eval_every} exceeds env_steps {self.env_steps}: no snapshot")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BehaviourDataError("device cuda requested but torch.cuda.is_available() is False")

    @property
    def file_prefix(self) -> str:
        return self.prefix or self.task.replace(GYM_PREFIX, "").replace("/", "_").lower()

    def path(self, level: str) -> Path:
        """File of one level, named like D4RL's (halfcheetah-medium-replay-v2.hdf5)."""
        return Path(self.out_dir) / f"{self.file_prefix}-{level.replace('_', '-')}-v2.hdf5"


@dataclass
class Snapshot:
    """A deterministic evaluation during training and the policy that scored it."""

    env_steps: int
    updates: int
    eval_return: float
    policy: torch.nn.Module


class SnapshotPolicy:
    """A frozen policy copy as a rollout policy function: stochastic or deterministic actions."""

    def __init__(self, policy: torch.nn.Module, deterministic: bool, seed: int, device: torch.device):
        self.policy, self.deterministic, self.device = policy, deterministic, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, np.float32), device=self.device).reshape(1, -1)
        a, _ = self.policy(x, deterministic=self.deterministic, generator=self.gen)
        return a[0].cpu().numpy()


def _concat(parts: list[Transitions]) -> dict[str, np.ndarray]:
    cols = [p.as_dict() for p in parts]
    return {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}


def _end_as_timeout(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A rollout cut by the step budget ends in a time-out (never a termination): D4RL's convention."""
    data = {k: v.copy() for k, v in data.items()}
    if len(data["timeouts"]) and not data["terminals"][-1]:
        data["timeouts"][-1] = 1.0
    return data


def train_behaviour(cfg: BehaviourConfig) -> tuple[list[Transitions], list[Snapshot], float]:
    """Online SAC in cfg.profile. Returns (the replay buffer as collected blocks, snapshots, seconds)."""
    device = torch.device(cfg.device)
    env = make_env(cfg.task, cfg.profile, seed=cfg.seed)
    eval_env = make_env(cfg.task, cfg.profile, seed=cfg.seed + EVAL_SEED_OFFSET)
    obs_dim, act_dim = env_dims(env)
    sac = algorithms.make("sac", obs_dim, act_dim, {"hidden": cfg.hidden, "seed": cfg.seed, **cfg.algo}, device)
    buffer = TransitionBuffer(obs_dim, act_dim, cfg.env_steps + 1, device, seed=cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed)
    cap = cfg.max_episode_steps or None

    def stochastic(obs: np.ndarray) -> np.ndarray:
        return sac.act(obs, deterministic=False)

    def deterministic(obs: np.ndarray) -> np.ndarray:
        return sac.act(obs, deterministic=True)

    def snapshot(steps: int) -> Snapshot:
        ret = evaluate(eval_env, deterministic, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET, cap)["return_mean"]
        log.info("env step %d, %d updates: eval return %.1f", steps, sac.step, ret)
        return Snapshot(steps, sac.step, ret, sac.policy_for_export().to(sac.device))

    blocks: list[Transitions] = []
    snapshots = [snapshot(0)]
    steps, epoch, t0 = 0, 0, time.perf_counter()
    while steps < cfg.env_steps:
        n = min(cfg.steps_per_epoch, cfg.env_steps - steps)
        random_phase = steps < cfg.random_steps
        policy = (lambda _o: rng.uniform(-1.0, 1.0, act_dim)) if random_phase else stochastic
        # Each block starts from reset(seed): episodes never span blocks, so with steps_per_epoch a
        # multiple of the episode length the buffer holds whole episodes; a cut episode is a time-out.
        block = rollout(env, policy, n, seed=cfg.seed * 1_000_003 + epoch, max_episode_steps=cap)
        block.timeouts[-1] = 0.0 if block.terminals[-1] else 1.0
        blocks.append(block)
        buffer.add(block.observations, block.actions, block.rewards, block.next_observations, block.terminals)
        steps += n
        epoch += 1
        if steps >= cfg.start_updates:
            for _ in range(cfg.updates_per_epoch):
                sac.update(real_batch=None, sim_batch=buffer.sample(cfg.batch))
        if steps // cfg.eval_every > (steps - n) // cfg.eval_every or steps >= cfg.env_steps:
            snapshots.append(snapshot(steps))
    return blocks, snapshots, time.perf_counter() - t0


def pick_medium(cfg: BehaviourConfig, snapshots: list[Snapshot]) -> Snapshot:
    """The medium snapshot (module docstring): by env step, or by fraction of the return gain."""
    trained = snapshots[1:]
    if cfg.medium_step:
        for s in trained:
            if s.env_steps >= cfg.medium_step:
                return s
        raise BehaviourDataError(f"no snapshot at or after env step {cfg.medium_step}")
    initial, final = snapshots[0].eval_return, snapshots[-1].eval_return
    if final <= initial:
        raise BehaviourDataError(
            f"the policy did not improve (initial return {initial:.1f}, final {final:.1f}): raise --env-steps, "
            "or fix the snapshot with --medium-step")
    threshold = initial + cfg.medium_fraction * (final - initial)
    return next(s for s in trained if s.eval_return >= threshold)  # the final one always qualifies


def collect_level(cfg: BehaviourConfig, snap: Snapshot, seed: int) -> tuple[dict[str, np.ndarray], list[float]]:
    """cfg.transitions rows of `snap`'s stochastic policy in the real profile (D4RL collects stochastically)."""
    env = make_env(cfg.task, cfg.profile, seed=seed)
    policy = SnapshotPolicy(snap.policy, deterministic=False, seed=seed, device=torch.device(cfg.device))
    data = rollout(env, policy, cfg.transitions, seed=seed, max_episode_steps=cfg.max_episode_steps or None)
    return _end_as_timeout(data.as_dict()), data.episode_returns


def _stats(returns: list[float]) -> dict:
    return {"episodes": len(returns), "return_mean": float(np.mean(returns)) if returns else None,
            "return_std": float(np.std(returns)) if returns else None}


def build(cfg: BehaviourConfig) -> dict:
    """Train, pick the snapshots, collect, write every file; returns the report (also the JSON)."""
    from sim_models.datasets import save_d4rl

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    log.info("training SAC in %s/%s for %d env steps (hidden %s)", cfg.task, cfg.profile, cfg.env_steps, cfg.hidden)
    blocks, snapshots, train_s = train_behaviour(cfg)
    medium, expert = pick_medium(cfg, snapshots), snapshots[-1]
    log.info("medium snapshot: env step %d, eval return %.1f; final: %.1f", medium.env_steps, medium.eval_return,
             expert.eval_return)
    full = _concat(blocks)
    replay = {k: v[: medium.env_steps] for k, v in full.items()}
    med_rows, med_returns = collect_level(cfg, medium, cfg.seed + COLLECT_SEED_OFFSET)
    exp_rows, exp_returns = collect_level(cfg, expert, cfg.seed + COLLECT_SEED_OFFSET + 1)
    datasets = {"medium": med_rows, "medium_replay": replay, "expert": exp_rows, "full_replay": full,
                "medium_expert": {k: np.concatenate([med_rows[k], exp_rows[k]]) for k in med_rows}}
    episode_returns = {"medium": med_returns, "expert": exp_returns, "medium_expert": med_returns + exp_returns,
                       "medium_replay": [r for b in blocks for r in b.episode_returns][: _episodes_in(blocks, medium)],
                       "full_replay": [r for b in blocks for r in b.episode_returns]}
    meta = {"task": cfg.task, "profile": cfg.profile, "seed": cfg.seed, "behaviour": "sac (learner.algorithms)",
            "medium_env_steps": medium.env_steps, "expert_env_steps": expert.env_steps}
    report: dict = {"settings": asdict(cfg), "train_seconds": train_s, "updates": int(expert.updates),
                    "learning_curve": [{"env_steps": s.env_steps, "updates": s.updates, "eval_return": s.eval_return}
                                       for s in snapshots],
                    "medium_snapshot": {"env_steps": medium.env_steps, "eval_return": medium.eval_return},
                    "expert_snapshot": {"env_steps": expert.env_steps, "eval_return": expert.eval_return},
                    "levels": {}, "d4rl_reference_returns": D4RL_REFERENCE.get(cfg.file_prefix)}
    for level in LEVELS:
        path = save_d4rl(cfg.path(level), datasets[level], {**meta, "level": level})
        report["levels"][level] = {"file": str(path), "transitions": int(len(datasets[level]["rewards"])),
                                   **_stats(episode_returns[level])}
        log.info("%s: %d transitions, mean episode return %s -> %s", level, len(datasets[level]["rewards"]),
                 report["levels"][level]["return_mean"], path)
    json_path = Path(cfg.out_dir) / f"{cfg.file_prefix}-behaviour.json"
    json_path.write_text(strict_json.dumps(report, indent=2) + "\n")
    write_sidecars(report)
    report["json"] = str(json_path)
    return report


def write_sidecars(report: dict) -> None:
    """<file>.json next to each HDF5, the layout learner.experiments.datasets uses for its own data:
    the grid driver reads it for `kind = "file"` datasets (behaviour return of the data, expert's)."""
    for level, info in report["levels"].items():
        side = {"kind": "file", "level": level, "path": info["file"], "transitions": info["transitions"],
                "behaviour": "sac (learner.experiments.behaviour_data)",
                "behaviour_return_mean": info["return_mean"],
                "medium_eval_return": report["medium_snapshot"]["eval_return"],
                "expert_eval_return": report["expert_snapshot"]["eval_return"]}
        Path(info["file"]).with_suffix(".json").write_text(strict_json.dumps(side, indent=2) + "\n")


def _episodes_in(blocks: list[Transitions], snap: Snapshot) -> int:
    """Completed training episodes within the first snap.env_steps steps."""
    count, steps = 0, 0
    for b in blocks:
        if steps >= snap.env_steps:
            break
        count += len(b.episode_returns)
        steps += len(b.observations)
    return count


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m learner.experiments.behaviour_data", description=__doc__)
    p.add_argument("--config", help="TOML file with the keys below (underscored); CLI flags override it")
    add_dataclass_arguments(p, BehaviourConfig, flag_names={"algo": "--set"})
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    try:
        cfg = BehaviourConfig(**merge_layers(BehaviourConfig, args.config, args))
        report = build(cfg)
    except (ValueError, LookupError, OSError, tomllib.TOMLDecodeError) as exc:  # bad settings, unknown task/profile
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {level: {k: v for k, v in info.items() if k != "file"} for level, info in report["levels"].items()}
    print(strict_json.dumps({"json": report["json"], "medium": report["medium_snapshot"], "expert": report["expert_snapshot"],
                      "levels": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

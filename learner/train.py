"""Offline benchmark runner: one algorithm, one task, sim profile vs "real" profile, fixed budget.

    python -m learner.train --algorithm h2o --task stand_still --real-profile moderate \
        --total-updates 20000 --seeds 0 1 --run-dir runs/

Schedule (reference): epochs of [sim_steps_per_epoch env steps with the current stochastic policy
in the SIM profile -> sim buffer] then [updates_per_epoch updates], until total_updates. The real
buffer holds the offline dataset (a D4RL-style HDF5 file, or one collected here in the REAL
profile with the task's behaviour policy plus noise). Evaluation (deterministic policy) runs in
the real profile AND in sim: simulation-based evaluation alone can mislead (H2O paper).

Seeds: `--seeds 0 1 2` trains the seeds as ONE population (learner/algorithms/base.py: one
process, one batched update for all of them, sim rollouts and evaluations through the batched
envs with one policy call per step); each seed still writes its own run folder. `--separate-seeds`
trains them one after the other instead (each a population of one: the same code).

Run dir per seed: config.toml (resolved; --config reads it back), progress.csv, checkpoint.pt (atomic, exact resume,
loaded with torch.load(weights_only=True)), summary.json, learning_curve.png, train.log, and
TensorBoard events if tensorboard is installed and --tensorboard is given.

Exact resume: every epoch's sim rollout starts from reset(seed derived from (seed, epoch)), the
evaluation uses its own fixed seeds, and each seed's checkpoint holds its member of the algorithm
(networks, targets, optimisers, alpha, step), the population's noise generator, both buffers (with
their sampling generators) and the epoch. Resuming the same seeds therefore produces the same
numbers as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import os
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tomli_w
import torch

from learner import algorithms
from learner.algorithms.base import sample_update_batches
from learner.buffers import PopulationSampler, RealStats, TransitionBuffer
from protocol.config_cli import ArgumentParser, add_dataclass_arguments, help_field, merge_layers
from protocol.atomic_file import write_atomic
from learner.device import check_device
from learner.tb_writer import add_scalars, open_writer
from learner.rollout import (GYM_PREFIX, PopulationEnvs, Transitions, make_env, population_evaluate,
                             population_rollout)
from learner.task_defaults import algorithm_config, obs_normalisation
from protocol import strict_json
from protocol.logs import setup_logging

log = logging.getLogger("learner.train")

EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seeds disjoint from the training rollouts
CHECKPOINT_INFO = "checkpoint.json"  # beside checkpoint.pt: the update count it holds


_f = help_field


@dataclass
class TrainConfig:
    """Everything a benchmark run needs; TOML keys = these names, CLI flags = --name-with-dashes."""

    # what to run
    algorithm: str = _f("h2o", "algorithm: h2o, sac, cql, darc, darc_plus, h2o_plus, bc")
    task: str = _f("stand_still", "sim_models task name, or gym:<id> for a gymnasium env")
    sim_profile: str = _f("nominal", "dynamics profile of the simulator (name, TOML path, or gym kwargs)")
    real_profile: str = _f("moderate", "dynamics profile playing the real robot")
    # real (offline) data
    dataset: str = _f("", "D4RL-style HDF5 of real transitions, or minari:<id> (a Minari dataset under "
                          "$MINARI_DATASETS_PATH) or minari:<folder>; empty = collect one in the real profile")
    collect_steps: int = _f(10_000, "transitions to collect when no dataset is given")
    collect_noise: float = _f(0.3, "Gaussian action noise std of the behaviour policy during collection")
    collect_detuned: bool = _f(True, "collect with the detuned controller (genuinely medium data: the tuned one plus noise is near-expert)")
    # budget and schedule
    total_updates: int = _f(100_000, "gradient updates in total")
    updates_per_epoch: int = _f(1000, "updates after each sim rollout phase")
    sim_steps_per_epoch: int = _f(1000, "sim env steps per epoch with the current stochastic policy")
    sim_buffer_factor: int = _f(10, "sim buffer capacity = factor x dataset size (reference 10), at least the run's sim steps")
    max_episode_steps: int = _f(0, "cap on episode length in rollouts and evaluation (0 = the env's own)")
    # batches and networks
    real_batch: int = _f(128, "real rows per update (a critic trained on one source gets real+sim rows of it)")
    sim_batch: int = _f(128, "sim rows per update")
    disc_batch: int = _f(256, "rows per source for each classifier update (h2o, darc)")
    hidden: str = _f("256-256", "policy/critic hidden sizes, e.g. 256-256")
    obs_normalisation: bool = _f(True, "networks read the observation centred on the real data's mean and "
                                 "scaled per field (learner/task_defaults.py; the robot's paper tasks only)")
    disc_hidden: str = _f("256-256", "classifier hidden sizes (h2o, darc)")
    algo: dict = _f({}, "algorithm config overrides, CLI: --set key=value (e.g. --set beta=0.02); they win over "
                        "the task's defaults in learner/task_defaults.py (e.g. the robot tasks' reward scale)")
    # evaluation and output
    eval_every: int = _f(10_000, "updates between evaluations (also at 0 and at the end)")
    eval_episodes: int = _f(5, "deterministic evaluation episodes per profile")
    checkpoint_every: int = _f(10_000, "updates between checkpoints (rounded to whole epochs)")
    run_dir: str = _f("runs", "parent folder; each seed writes <run_dir>/<name>_seed<k>/")
    name: str = _f("", "run name (default: <task>_<algorithm>_<real_profile>)")
    resume: bool = _f(False, "continue from checkpoint.pt in the run folder if present")
    tensorboard: bool = _f(False, "also write TensorBoard events into each run folder's tb/ (needs the tensorboard "
                           "package: the learner extra)")
    progress: bool = _f(True, "show a tqdm progress bar")
    # machine
    seeds: list = _f([0], "seeds to run, one run folder each; trained together as one population", nargs="+",
                     type=int)
    separate_seeds: bool = _f(False, "train each seed on its own (one after the other) instead of as one population")
    device: str = _f("cpu", "torch device: cpu or cuda")
    threads: int = _f(2, "torch CPU threads (torch.set_num_threads)")

    def validate(self) -> None:
        if self.algorithm not in algorithms.REGISTRY:
            raise ValueError(f"algorithm {self.algorithm!r}; choices: {', '.join(sorted(algorithms.REGISTRY))}")
        for name in ("total_updates", "updates_per_epoch", "real_batch", "sim_batch", "disc_batch", "eval_every",
                     "eval_episodes", "checkpoint_every", "threads", "sim_buffer_factor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sim_steps_per_epoch < 0 or self.collect_steps < 0:
            raise ValueError("sim_steps_per_epoch and collect_steps must be >= 0")
        if not self.dataset and self.collect_steps == 0:
            raise ValueError("give --dataset or a positive --collect-steps")
        check_device(self.device)  # DeviceError (a ValueError) says what to do

    @property
    def run_name(self) -> str:
        task = self.task.replace(GYM_PREFIX, "").replace("/", "_")
        # A profile given as a TOML path names the folder by its file stem: the path's slashes
        # would otherwise nest the seed folders under configs/experiments/profiles/...
        real = Path(self.real_profile).stem if self.real_profile.endswith(".toml") else self.real_profile
        return self.name or f"{task}_{self.algorithm}_{real}".replace(",", "_").replace("=", "").replace("/", "_")


# ---- config: defaults <- TOML <- CLI -----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m learner.train", description=__doc__)
    p.add_argument("--config", help="TOML file with TrainConfig keys (CLI flags override it)")
    add_dataclass_arguments(p, TrainConfig, flag_names={"algo": "--set"})
    return p


def load_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**merge_layers(TrainConfig, args.config, args))
    cfg.validate()
    return cfg


# ---- data ------------------------------------------------------------------------------------------
def load_dataset(path: str) -> dict[str, np.ndarray]:
    """D4RL-style HDF5 through the sim_models contract (also reads original D4RL files), or a
    Minari dataset given as minari:<id or folder> (sim_models/minari_io.py)."""
    from sim_models.datasets import load_dataset as load

    data, _meta = load(path)
    return data


def collect_behaviour(cfg: TrainConfig) -> str:
    """The sim_models.behaviours name the --collect-* flags select: the detuned controller
    ("medium") or the tuned one ("noisy"), both at --collect-noise; "random" for gym tasks, which
    have no controller."""
    if cfg.task.startswith(GYM_PREFIX):
        return "random"
    return "medium" if cfg.collect_detuned else "noisy"


def collect_dataset(cfg: TrainConfig, seed: int) -> dict[str, np.ndarray]:
    """cfg.collect_steps real transitions in the real profile, by the loop every collector uses."""
    from sim_models.behaviours import Behaviour
    from sim_models.behaviours import collect as collect_with

    env = make_env(cfg.task, cfg.real_profile, seed=seed)
    behaviour = Behaviour(collect_behaviour(cfg), cfg.task, cfg.collect_noise)
    got = collect_with(env, behaviour, cfg.collect_steps, seed, max_episode_steps=cfg.max_episode_steps or None)
    log.info("collected %d real transitions (%s, noise %.2f), mean episode return %.1f over %d episodes",
             cfg.collect_steps, behaviour.name, behaviour.noise, np.mean(got.episode_returns), got.episodes)
    return got.data


def sim_capacity(cfg: TrainConfig, n_real: int) -> int:
    """Sim buffer capacity: the reference's 10x the dataset, but never less than the run's own sim
    steps. With D4RL's 0.2-2M-row datasets the reference's FIFO is never overwritten within a run;
    with a small robot dataset (the SAC gate's 2,000 rows: 20k of its 60k sim steps) it would be,
    and a FIFO that holds only the last 20 epochs of a balancing policy forgets what falling looks
    like (SAC in the gate: 82 % of the controller from 24k updates with 20k rows, 94 % with all;
    docs/learner.md, "Buffers")."""
    epochs = -(-cfg.total_updates // max(1, cfg.updates_per_epoch))
    return max(cfg.sim_buffer_factor * n_real, epochs * cfg.sim_steps_per_epoch, 1)


# ---- one population run ------------------------------------------------------------------------
@dataclass
class MemberSpec:
    """One member of a population run: its seed, real data, profiles and run folder."""

    seed: int
    dir: Path
    dataset: str = ""  # D4RL-style file; empty = collect in the real profile
    sim_profile: str = "nominal"
    real_profile: str = "moderate"


def member_specs(cfg: TrainConfig, seeds: Sequence[int]) -> list[MemberSpec]:
    """The members `learner.train` makes of a config: one per seed, <run_dir>/<name>_seed<k>/."""
    return [MemberSpec(int(s), Path(cfg.run_dir) / f"{cfg.run_name}_seed{int(s)}", cfg.dataset, cfg.sim_profile,
                       cfg.real_profile) for s in seeds]


class InconsistentResumeError(ValueError):
    """Members of one population hold checkpoints from different points (or only some of them do)."""


class Member:
    """One seed's share of a population run: its buffers, counters, CSV rows and run folder."""

    def __init__(self, cfg: TrainConfig, spec: MemberSpec, obs_dim: int, act_dim: int, device: torch.device):
        self.cfg, self.spec, self.seed = dataclasses.replace(cfg, dataset=spec.dataset, sim_profile=spec.sim_profile,
                                                             real_profile=spec.real_profile), spec, spec.seed
        self.dir = spec.dir
        self.dir.mkdir(parents=True, exist_ok=True)
        data = load_dataset(spec.dataset) if spec.dataset else collect_dataset(self.cfg, self.seed)
        if spec.dataset and not cfg.task.startswith(GYM_PREFIX):
            from learner.latency import check_simulator  # a simulator without the data's latency: warn

            check_simulator(data, cfg.task, spec.sim_profile, f"dataset {spec.dataset}")
        n_real = len(data["observations"])
        self.real = TransitionBuffer(obs_dim, act_dim, n_real + 1, device, seed=self.seed * 2 + 1)
        self.real.load_fixed(data)
        self.sim = TransitionBuffer(obs_dim, act_dim, sim_capacity(cfg, n_real), device, seed=self.seed * 2 + 2)
        self.env_steps = 0
        self.ckpt_path = self.dir / "checkpoint.pt"
        # the one before, kept while a population save is under way (Run.save_checkpoint)
        self.prev_ckpt_path = self.dir / "checkpoint.prev.pt"
        self.csv_path = self.dir / "progress.csv"
        self.rows: list[dict] = []
        self.tb = None

    def load_checkpoint(self, device: torch.device) -> dict | None:
        """The member's checkpoint (a safe weights_only load), or None when there is none."""
        return self.load_checkpoints(device)[0] if self.ckpt_path.exists() else None

    def load_checkpoints(self, device: torch.device) -> list[dict]:
        """The latest checkpoint and, if a population save was cut short, the one before it."""
        return [torch.load(p, map_location=device, weights_only=True)
                for p in (self.ckpt_path, self.prev_ckpt_path) if p.exists()]

    def restore(self, state: dict) -> None:
        self.real.load_state_dict(state["real"])
        self.sim.load_state_dict(state["sim"])
        self.env_steps, self.rows = int(state["env_steps"]), list(state["rows"])
        self.rewrite_csv()  # drop rows written after the checkpoint

    def rewrite_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        write_atomic(self.csv_path, out.getvalue().encode())

    def log_row(self, row: dict) -> None:
        self.rows.append(row)
        self.rewrite_csv()
        if self.tb is not None:
            add_scalars(self.tb, row, row["update"], skip=("update",))


class Run:
    """The seeds (members) of one configuration trained as ONE population: one algorithm instance
    with P = len(members) (learner/algorithms/base.py), each member with its own data, buffers,
    run folder, progress.csv, checkpoint and summary. P = 1 is a single run of the same code.

    `seeds`: an int, a list of seeds (members from the config, see member_specs), or explicit
    MemberSpec objects (the grid driver: members from different cells, e.g. gaps or datasets).
    """

    def __init__(self, cfg: TrainConfig, seeds: int | Sequence[int] | Sequence[MemberSpec]):
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        specs = [s if isinstance(s, MemberSpec) else member_specs(cfg, [s])[0] for s in seeds]
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        cap = cfg.max_episode_steps or None
        self.sim_envs = PopulationEnvs(cfg.task, [s.sim_profile for s in specs], cap)
        e = cfg.eval_episodes
        self.real_eval_envs = PopulationEnvs(cfg.task, [s.real_profile for s in specs for _ in range(e)], cap)
        self.sim_eval_envs = PopulationEnvs(cfg.task, [s.sim_profile for s in specs for _ in range(e)], cap)
        obs_dim, act_dim = self.sim_envs.obs_dim, self.sim_envs.act_dim
        self.members = [Member(cfg, s, obs_dim, act_dim, self.device) for s in specs]
        self.seeds = [m.seed for m in self.members]
        member_cfgs = [algorithm_config(cfg.algorithm, cfg.task, hidden=cfg.hidden, seed=m.seed,
                                        disc_hidden=cfg.disc_hidden, overrides=cfg.algo) for m in self.members]
        self.algo = algorithms.make_population(cfg.algorithm, obs_dim, act_dim, member_cfgs, self.device)
        stats = RealStats.stack([m.real.stats() for m in self.members])
        self.algo.set_real_stats(stats)
        norm = obs_normalisation(cfg.task, stats.obs_mean[0].cpu().numpy()) if cfg.obs_normalisation else None
        if norm is not None:  # each member centred on its own real data
            self.algo.set_obs_normalisation(np.nan_to_num(stats.obs_mean.cpu().numpy()), norm[1])
        self.real = PopulationSampler([m.real for m in self.members])
        self.sim = PopulationSampler([m.sim for m in self.members])
        self.epoch = 0
        self.update_seconds = 0.0
        # wall time of the whole run (sim rollouts and evaluations included), kept across resumes
        self.wall_base, self.wall_t0 = 0.0, time.perf_counter()

    @property
    def population(self) -> int:
        return len(self.members)

    def wall_seconds(self) -> float:
        """Wall time this population has trained so far, over every sitting (checkpoints keep it)."""
        return self.wall_base + time.perf_counter() - self.wall_t0

    # -- state --
    def save_checkpoint(self) -> None:
        """Each member's own checkpoint (its slice of the population and its buffers), in two phases
        so that a process killed part-way never leaves a population without a common point: each
        member's previous checkpoint is set aside (checkpoint.prev.pt) before its new one is written
        atomically, and the set-aside ones are removed only once every member holds the new one.
        try_resume then finds the latest point all members hold."""
        for k, m in enumerate(self.members):
            state = {"algo": self.algo.member_state_dict(k), "real": m.real.state_dict(), "sim": m.sim.state_dict(),
                     "epoch": self.epoch, "env_steps": m.env_steps, "update_seconds": self.update_seconds,
                     "wall_seconds": self.wall_seconds(),
                     "rows": m.rows, "config": asdict(m.cfg), "seed": m.seed, "population_seeds": self.seeds}
            buf = io.BytesIO()
            torch.save(state, buf)
            if m.ckpt_path.exists():
                os.replace(m.ckpt_path, m.prev_ckpt_path)  # set aside, not rewritten
            write_atomic(m.ckpt_path, buf.getvalue())
            # what the grid driver reads to group cells by resume point, without loading the checkpoint
            write_atomic(m.dir / CHECKPOINT_INFO, strict_json.dumps({"updates": self.algo.step, "epoch": self.epoch,
                                                              "population_seeds": self.seeds}).encode())
        for m in self.members:  # every member holds the new point: the previous ones can go
            m.prev_ckpt_path.unlink(missing_ok=True)

    def resume_states(self) -> list[dict] | None:
        """One checkpoint per member, all from the same point: the latest point every member holds
        (after a save cut short, some members' previous checkpoint), or None to start afresh.

        Members that share no point raise InconsistentResumeError, except after a first save cut
        short (every checkpoint written by this very population, none set aside): that starts afresh.
        """
        held = [m.load_checkpoints(self.device) for m in self.members]
        if not any(held):
            return None

        def point(state: dict) -> tuple[int, int]:
            return int(state["epoch"]), int(state["algo"]["step"])

        common = set.intersection(*({point(s) for s in states} for states in held))
        if common:
            best = max(common)
            chosen = [next(s for s in states if point(s) == best) for states in held]
            if any(point(states[0]) != best for states in held):
                log.warning("the last checkpoint was cut short part-way through the population; resuming every "
                            "member from the last point all of them hold (%d updates)", best[1])
            return chosen
        torn_first_save = all(len(states) <= 1 for states in held) and all(
            list(states[0].get("population_seeds", [])) == self.seeds for states in held if states)
        if torn_first_save:
            log.warning("the first checkpoint was cut short part-way through the population: starting afresh")
            return None
        raise InconsistentResumeError(
            f"members' checkpoints disagree ({[m.dir.name for m in self.members]}: "
            f"{[[point(s)[1] for s in states] for states in held]} updates); resume them in "
            "populations of their own (e.g. --separate-seeds) or remove the stale checkpoint.pt files")

    def try_resume(self) -> bool:
        """Continue from the members' checkpoints when cfg.resume: all of them from the same update
        (exact continuation when the population is the one that wrote them), or none."""
        if not self.cfg.resume:
            return False
        states = self.resume_states()
        if states is None:
            return False
        self.algo.load_state_dict(algorithms.stack_member_states([s["algo"] for s in states]))
        for m, s in zip(self.members, states):
            m.restore(s)
        self.epoch, self.update_seconds = int(states[0]["epoch"]), float(states[0]["update_seconds"])
        self.wall_base, self.wall_t0 = float(states[0].get("wall_seconds", 0.0)), time.perf_counter()
        if list(states[0].get("population_seeds", self.seeds)) != self.seeds:
            log.info("resuming seeds %s that were trained with %s: the continuation is valid but not the "
                     "uninterrupted run's numbers", self.seeds, states[0].get("population_seeds"))
        log.info("resumed %d member(s) at epoch %d (%d updates)", self.population, self.epoch, self.algo.step)
        return True

    # -- evaluation and data --
    def evaluate(self) -> list[dict]:
        """Deterministic returns of every member in its real profile and in sim (one policy call
        per step for all members and episodes)."""
        e = self.cfg.eval_episodes

        def policy(online: bool = False) -> Callable[[np.ndarray], np.ndarray]:
            return lambda obs: self.algo.act_population(obs.reshape(self.population, e, -1), deterministic=True,
                                                        online=online).reshape(len(obs), -1)

        seeds = [s + EVAL_SEED_OFFSET for s in self.seeds]
        real = population_evaluate(self.real_eval_envs, policy(), e, seeds)
        sim = population_evaluate(self.sim_eval_envs, policy(), e, seeds)
        out = [{"eval/real_return": r["return_mean"], "eval/real_return_std": r["return_std"],
                "eval/real_length": r["length_mean"], "eval/sim_return": s["return_mean"],
                "eval/sim_return_std": s["return_std"], "eval/sim_length": s["length_mean"]} for r, s in zip(real, sim)]
        if self.algo.deployed_policy is not self.algo.policy:  # averaged policy: the online one beside it
            for row, r in zip(out, population_evaluate(self.real_eval_envs, policy(online=True), e, seeds)):
                row["eval/real_return_online"] = r["return_mean"]
        return out

    def collect_sim(self) -> list[Transitions]:
        """sim_steps_per_epoch steps per member with its current stochastic policy, into its sim
        buffer; every epoch's rollout starts from a reset seeded by (seed, epoch)."""
        data = population_rollout(self.sim_envs, lambda obs: self.algo.act_population(obs[:, None])[:, 0],
                                  self.cfg.sim_steps_per_epoch, [s * 1_000_003 + self.epoch for s in self.seeds])
        for m, d in zip(self.members, data):
            m.sim.add(d.observations, d.actions, d.rewards, d.next_observations, d.terminals)
            m.env_steps += len(d.observations)
        return data

    def sample(self) -> dict:
        """Batches [P, rows, dim] for one update: every critic gets real_batch + sim_batch rows (see
        learner.algorithms.base.sample_update_batches), each member from its own buffers."""
        c = self.cfg
        return sample_update_batches(self.algo, self.real.sample, self.sim.sample, c.real_batch, c.sim_batch,
                                     c.disc_batch)

    # -- the loop --
    def train(self) -> list[dict]:
        """Train to cfg.total_updates (resuming if asked); one summary per member."""
        c = self.cfg
        self.wall_t0 = time.perf_counter()
        self.try_resume()
        if c.tensorboard:
            for m in self.members:
                m.tb = open_writer(m.dir)
        for m in self.members:
            # this seed's resolved settings, in the TOML that `--config` reads back
            write_atomic(m.dir / "config.toml", tomli_w.dumps({**asdict(m.cfg), "seeds": [m.seed]}))
        if self.algo.step == 0 and not self.members[0].rows:
            for m, ev in zip(self.members, self.evaluate()):
                m.log_row({"update": 0, "epoch": 0, "env_steps": 0, **ev})
        bar = None
        if c.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.total_updates, initial=self.algo.step, unit="upd", leave=False,
                       desc=f"{self.members[0].dir.name}" + (f" +{self.population - 1}" if self.population > 1 else ""))
        last_ckpt = self.algo.step
        while self.algo.step < c.total_updates:
            sim_data = self.collect_sim() if (self.algo.uses_sim and c.sim_steps_per_epoch) else None
            n = min(c.updates_per_epoch, c.total_updates - self.algo.step)
            sums: np.ndarray | None = None
            t0 = time.perf_counter()
            for _ in range(n):
                stats = self.algo.update_population(**self.sample())
                vals = np.asarray(list(stats.values()))  # [keys, P]
                sums = vals if sums is None else sums + vals
            dt = time.perf_counter() - t0
            self.update_seconds += dt
            self.epoch += 1
            done = self.algo.step >= c.total_updates
            evals = self.evaluate() if done or self.algo.step // c.eval_every > (self.algo.step - n) // c.eval_every \
                else [{}] * self.population
            for k, m in enumerate(self.members):
                row = {"update": self.algo.step, "epoch": self.epoch, "env_steps": m.env_steps,
                       "perf/updates_per_s": n / max(dt, 1e-9),
                       **{key: float(v) for key, v in zip(stats, sums[:, k] / n)}}
                if sim_data is not None and sim_data[k].episode_returns:
                    row["charts/sim_rollout_return"] = float(np.mean(sim_data[k].episode_returns))
                row.update(evals[k])
                m.log_row(row)
            if evals[0]:
                log.info("update %d: real return %s, sim return %s", self.algo.step,
                         " ".join(f"{ev['eval/real_return']:.1f}" for ev in evals),
                         " ".join(f"{ev['eval/sim_return']:.1f}" for ev in evals))
            if bar is not None:
                bar.update(n)
                bar.set_postfix(upd_s=f"{n / max(dt, 1e-9):.0f}", members=self.population)
            if done or self.algo.step - last_ckpt >= c.checkpoint_every:
                self.save_checkpoint()
                last_ckpt = self.algo.step
        if bar is not None:
            bar.close()
        for m in self.members:
            if m.tb is not None:
                m.tb.close()
        return [self.finish(m) for m in self.members]

    def finish(self, m: Member) -> dict:
        evals = [r for r in m.rows if "eval/real_return" in r]
        last = evals[-1]
        summary = {
            "run_dir": str(m.dir), "algorithm": self.cfg.algorithm, "task": self.cfg.task, "seed": m.seed,
            "sim_profile": m.spec.sim_profile, "real_profile": m.spec.real_profile,
            "updates": self.algo.step, "env_steps": m.env_steps, "real_transitions": m.real.n_fixed,
            "final_real_return": last["eval/real_return"], "final_sim_return": last["eval/sim_return"],
            "best_real_return": max(r["eval/real_return"] for r in evals),
            "initial_real_return": evals[0]["eval/real_return"],
            "updates_per_s": self.algo.step / max(self.update_seconds, 1e-9),
            "wall_s": self.wall_seconds(),  # the whole population's, shared by its members
            "population": self.population,
        }
        write_atomic(m.dir / "summary.json", (strict_json.dumps(summary, indent=2) + "\n").encode())
        plot_learning_curve(evals, m.dir / "learning_curve.png", m.dir.name)
        return summary


def plot_learning_curve(evals: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["update"] for r in evals]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("eval/real_return", "real profile"), ("eval/sim_return", "sim")):
        y = np.array([r[key] for r in evals])
        s = np.array([r[key + "_std"] for r in evals])
        ax.plot(x, y, label=label, marker="o", ms=3)
        ax.fill_between(x, y - s, y + s, alpha=0.2)
    ax.set_xlabel("updates")
    ax.set_ylabel("return (deterministic policy)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(cfg.threads)
    setup_logging("INFO", file=Path(cfg.run_dir) / "train.log")
    try:
        if cfg.separate_seeds:
            summaries = [s for seed in cfg.seeds for s in Run(cfg, [seed]).train()]
        else:
            summaries = Run(cfg, cfg.seeds).train()
    except (ValueError, OSError) as exc:  # bad dataset file, unknown task/profile, bad rows
        log.error("run failed: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(strict_json.dumps(summaries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

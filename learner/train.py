"""Offline benchmark runner: one algorithm, one task, sim profile vs "real" profile, fixed budget.

    python -m learner.train --algorithm h2o --task stand_still --real-profile moderate \
        --total-updates 20000 --seeds 0 1 --run-dir runs/

Schedule (reference): epochs of [sim_steps_per_epoch env steps with the current stochastic policy
in the SIM profile -> sim buffer] then [updates_per_epoch updates], until total_updates. The real
buffer holds the offline dataset (a D4RL-style HDF5 file, or one collected here in the REAL
profile with the task's behaviour policy plus noise). Evaluation (deterministic policy) runs in
the real profile AND in sim: simulation-based evaluation alone can mislead (H2O paper).

Run dir per seed: config.toml (resolved), progress.csv, checkpoint.pt (atomic, exact resume),
summary.json, learning_curve.png, train.log, and TensorBoard events if tensorboard is installed
and --tensorboard is given.

Exact resume: every epoch's sim rollout starts from reset(seed derived from (seed, epoch)), the
evaluation uses its own fixed seeds, and the checkpoint holds the algorithm (networks, targets,
optimisers, alpha, noise generator, step), both buffers (with their sampling generators) and the
epoch. A resumed run therefore produces the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import algorithms
from learner.algorithms.base import sample_update_batches
from learner.buffers import TransitionBuffer
from learner.cli_config import add_dataclass_arguments, help_field, merge_layers
from learner.export import write_atomic
from learner.rollout import GYM_PREFIX, Transitions, env_dims, evaluate, make_env, rollout
from learner.task_defaults import algorithm_config

log = logging.getLogger("learner.train")

EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seeds disjoint from the training rollouts


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
    dataset: str = _f("", "D4RL-style HDF5 of real transitions; empty = collect one in the real profile")
    collect_steps: int = _f(10_000, "transitions to collect when no dataset is given")
    collect_noise: float = _f(0.3, "Gaussian action noise std of the behaviour policy during collection")
    collect_detuned: bool = _f(True, "collect with the detuned controller (genuinely medium data, benchmark_notes.md)")
    # budget and schedule
    total_updates: int = _f(100_000, "gradient updates in total")
    updates_per_epoch: int = _f(1000, "updates after each sim rollout phase")
    sim_steps_per_epoch: int = _f(1000, "sim env steps per epoch with the current stochastic policy")
    sim_buffer_factor: int = _f(10, "sim buffer capacity = factor x dataset size (reference 10)")
    max_episode_steps: int = _f(0, "cap on episode length in rollouts and evaluation (0 = the env's own)")
    # batches and networks
    real_batch: int = _f(128, "real rows per update (a critic trained on one source gets real+sim rows of it)")
    sim_batch: int = _f(128, "sim rows per update")
    disc_batch: int = _f(256, "rows per source for each classifier update (h2o, darc)")
    hidden: str = _f("256-256", "policy/critic hidden sizes, e.g. 256-256")
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
    tensorboard: bool = _f(False, "also write TensorBoard events (needs the tensorboard package)")
    progress: bool = _f(True, "show a tqdm progress bar")
    # machine
    seeds: list = _f([0], "seeds to run, one run folder each", nargs="+", type=int)
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
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device cuda requested but torch.cuda.is_available() is False")

    @property
    def run_name(self) -> str:
        task = self.task.replace(GYM_PREFIX, "").replace("/", "_")
        return self.name or f"{task}_{self.algorithm}_{self.real_profile}".replace(",", "_").replace("=", "")


# ---- config: defaults <- TOML <- CLI -----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m learner.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with TrainConfig keys (CLI flags override it)")
    add_dataclass_arguments(p, TrainConfig, flag_names={"algo": "--set"})
    return p


def load_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**merge_layers(TrainConfig, args.config, args))
    cfg.validate()
    return cfg


def dump_toml(values: dict) -> str:
    """Minimal TOML writer for the flat config (+ one [algo] table), keys sorted."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if v is None:
            return '""'
        return json.dumps(str(v))

    lines = [f"{k} = {fmt(v)}" for k, v in sorted(values.items()) if not isinstance(v, dict)]
    for k, v in sorted(values.items()):
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {fmt(vv)}" for kk, vv in sorted(v.items())]
    return "\n".join(lines) + "\n"


# ---- data ------------------------------------------------------------------------------------------
def load_dataset(path: str) -> dict[str, np.ndarray]:
    """D4RL-style HDF5 through the sim_models contract (also reads original D4RL files)."""
    from sim_models.datasets import load_d4rl

    data, _meta = load_d4rl(path)
    return data


class BehaviourPolicy:
    """The task's classical controller plus Gaussian noise (sim_models tasks); uniform random for gym.
    Stateful (the controller integrates): rollout() calls reset() at every episode start."""

    def __init__(self, cfg: TrainConfig, act_dim: int, rng: np.random.Generator):
        self.act_dim, self.noise, self.rng = act_dim, cfg.collect_noise, rng
        self.ctrl = None
        if not cfg.task.startswith(GYM_PREFIX):
            from sim_models.controller import BalanceController

            self.ctrl = BalanceController(cfg.task, detuned=cfg.collect_detuned)

    def reset(self) -> None:
        if self.ctrl is not None:
            self.ctrl.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.ctrl is None:
            return self.rng.uniform(-1.0, 1.0, self.act_dim)
        a = np.asarray(self.ctrl.act(obs)) + self.noise * self.rng.standard_normal(self.act_dim)
        return np.clip(a, -1.0, 1.0)


def collect_dataset(cfg: TrainConfig, seed: int) -> dict[str, np.ndarray]:
    env = make_env(cfg.task, cfg.real_profile, seed=seed)
    policy = BehaviourPolicy(cfg, env_dims(env)[1], np.random.default_rng(seed))
    data = rollout(env, policy, cfg.collect_steps, seed=seed, max_episode_steps=cfg.max_episode_steps or None)
    log.info("collected %d real transitions, mean episode return %.1f over %d episodes", cfg.collect_steps,
             np.mean(data.episode_returns) if data.episode_returns else float("nan"), len(data.episode_returns))
    return data.as_dict()


# ---- one run -----------------------------------------------------------------------------------
class Run:
    """One seed of one configuration: owns envs, buffers, algorithm, logs and checkpoints."""

    def __init__(self, cfg: TrainConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.dir = Path(cfg.run_dir) / f"{cfg.run_name}_seed{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(cfg.device)
        self.sim_env = make_env(cfg.task, cfg.sim_profile, seed=seed)
        self.real_eval_env = make_env(cfg.task, cfg.real_profile, seed=seed + EVAL_SEED_OFFSET)
        self.sim_eval_env = make_env(cfg.task, cfg.sim_profile, seed=seed + EVAL_SEED_OFFSET)
        obs_dim, act_dim = env_dims(self.sim_env)
        data = load_dataset(cfg.dataset) if cfg.dataset else collect_dataset(cfg, seed)
        n_real = len(data["observations"])
        self.real = TransitionBuffer(obs_dim, act_dim, n_real + 1, self.device, seed=seed * 2 + 1)
        self.real.load_fixed(data)
        self.sim = TransitionBuffer(obs_dim, act_dim, max(cfg.sim_buffer_factor * n_real, cfg.sim_steps_per_epoch, 1),
                                    self.device, seed=seed * 2 + 2)
        algo_cfg = algorithm_config(cfg.algorithm, cfg.task, hidden=cfg.hidden, seed=seed, disc_hidden=cfg.disc_hidden,
                                    overrides=cfg.algo)
        self.algo = algorithms.make(cfg.algorithm, obs_dim, act_dim, algo_cfg, self.device)
        if hasattr(self.algo, "set_real_state_std"):
            self.algo.set_real_state_std(self.real.obs_mean_std()[1])
        self.epoch = 0
        self.env_steps = 0
        self.update_seconds = 0.0
        self.ckpt_path = self.dir / "checkpoint.pt"
        self.csv_path = self.dir / "progress.csv"
        self.rows: list[dict] = []
        self.tb = None

    # -- state --
    def save_checkpoint(self) -> None:
        state = {"algo": self.algo.state_dict(), "real": self.real.state_dict(), "sim": self.sim.state_dict(),
                 "epoch": self.epoch, "env_steps": self.env_steps, "update_seconds": self.update_seconds,
                 "rows": self.rows, "config": asdict(self.cfg), "seed": self.seed}
        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic(self.ckpt_path, buf.getvalue())

    def try_resume(self) -> bool:
        if not (self.cfg.resume and self.ckpt_path.exists()):
            return False
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self.algo.load_state_dict(state["algo"])
        self.real.load_state_dict(state["real"])
        self.sim.load_state_dict(state["sim"])
        self.epoch, self.env_steps = int(state["epoch"]), int(state["env_steps"])
        self.update_seconds, self.rows = float(state["update_seconds"]), list(state["rows"])
        self._rewrite_csv()  # drop rows written after the checkpoint
        log.info("resumed %s at epoch %d (%d updates)", self.dir, self.epoch, self.algo.step)
        return True

    # -- logging --
    def _rewrite_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        write_atomic(self.csv_path, out.getvalue().encode())

    def _log_row(self, row: dict) -> None:
        self.rows.append(row)
        self._rewrite_csv()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "update":
                    self.tb.add_scalar(k, v, row["update"])

    def evaluate(self) -> dict:
        def policy(obs):
            return self.algo.act(obs, deterministic=True)

        cap = self.cfg.max_episode_steps or None
        real = evaluate(self.real_eval_env, policy, self.cfg.eval_episodes, self.seed + EVAL_SEED_OFFSET, cap)
        sim = evaluate(self.sim_eval_env, policy, self.cfg.eval_episodes, self.seed + EVAL_SEED_OFFSET, cap)
        return {"eval/real_return": real["return_mean"], "eval/real_return_std": real["return_std"],
                "eval/real_length": real["length_mean"], "eval/sim_return": sim["return_mean"],
                "eval/sim_return_std": sim["return_std"], "eval/sim_length": sim["length_mean"]}

    # -- the loop --
    def collect_sim(self) -> Transitions:
        data = rollout(self.sim_env, lambda o: self.algo.act(o, deterministic=False), self.cfg.sim_steps_per_epoch,
                       seed=self.seed * 1_000_003 + self.epoch, max_episode_steps=self.cfg.max_episode_steps or None)
        self.sim.add(data.observations, data.actions, data.rewards, data.next_observations, data.terminals)
        self.env_steps += len(data.observations)
        return data

    def sample(self) -> dict:
        """Batches for one update: every critic gets real_batch + sim_batch rows (see
        learner.algorithms.base.sample_update_batches)."""
        c = self.cfg
        return sample_update_batches(self.algo, self.real.sample, self.sim.sample, c.real_batch, c.sim_batch,
                                     c.disc_batch)

    def train(self) -> dict:
        c = self.cfg
        self.try_resume()
        if c.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:
                log.warning("tensorboard is not installed; writing CSV only")
        write_atomic(self.dir / "config.toml", dump_toml({**asdict(c), "seed": self.seed}).encode())
        if self.algo.step == 0 and not self.rows:
            self._log_row({"update": 0, "epoch": 0, "env_steps": 0, **self.evaluate()})
        bar = None
        if c.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.total_updates, initial=self.algo.step, desc=self.dir.name, unit="upd", leave=False)
        last_ckpt = self.algo.step
        while self.algo.step < c.total_updates:
            sim_data = self.collect_sim() if (self.algo.uses_sim and c.sim_steps_per_epoch) else None
            n = min(c.updates_per_epoch, c.total_updates - self.algo.step)
            sums: dict[str, float] = {}
            t0 = time.perf_counter()
            for _ in range(n):
                stats = self.algo.update(**self.sample())
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
            dt = time.perf_counter() - t0
            self.update_seconds += dt
            self.epoch += 1
            row = {"update": self.algo.step, "epoch": self.epoch, "env_steps": self.env_steps,
                   "perf/updates_per_s": n / max(dt, 1e-9), **{k: v / n for k, v in sums.items()}}
            if sim_data is not None and sim_data.episode_returns:
                row["charts/sim_rollout_return"] = float(np.mean(sim_data.episode_returns))
            done = self.algo.step >= c.total_updates
            if done or self.algo.step // c.eval_every > (self.algo.step - n) // c.eval_every:
                row.update(self.evaluate())
                log.info("update %d: real return %.1f, sim return %.1f", self.algo.step,
                         row["eval/real_return"], row["eval/sim_return"])
            self._log_row(row)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(upd_s=f"{row['perf/updates_per_s']:.0f}")
            if done or self.algo.step - last_ckpt >= c.checkpoint_every:
                self.save_checkpoint()
                last_ckpt = self.algo.step
        if bar is not None:
            bar.close()
        if self.tb is not None:
            self.tb.close()
        return self.finish()

    def finish(self) -> dict:
        evals = [r for r in self.rows if "eval/real_return" in r]
        last = evals[-1]
        summary = {
            "run_dir": str(self.dir), "algorithm": self.cfg.algorithm, "task": self.cfg.task, "seed": self.seed,
            "sim_profile": self.cfg.sim_profile, "real_profile": self.cfg.real_profile,
            "updates": self.algo.step, "env_steps": self.env_steps, "real_transitions": self.real.n_fixed,
            "final_real_return": last["eval/real_return"], "final_sim_return": last["eval/sim_return"],
            "best_real_return": max(r["eval/real_return"] for r in evals),
            "initial_real_return": evals[0]["eval/real_return"],
            "updates_per_s": self.algo.step / max(self.update_seconds, 1e-9),
        }
        write_atomic(self.dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        plot_learning_curve(evals, self.dir / "learning_curve.png", self.dir.name)
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


def setup_logging(run_dir: Path) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(run_dir / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(fh)
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(cfg.threads)
    setup_logging(Path(cfg.run_dir))
    try:
        summaries = [Run(cfg, seed).train() for seed in cfg.seeds]
    except (ValueError, OSError) as exc:  # bad dataset file, unknown task/profile, bad rows
        log.error("run failed: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summaries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

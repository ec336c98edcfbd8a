"""Env step cost vs raw mj_step for the same physics steps, and batched rollout throughput.

    .venv/bin/python benchmarks/bench_env.py [--steps 4000] [--workers 0] [--tasks stand_still ...]

Prints, per task: best env steps/s, best raw mj_step (nstep = substeps per control step) calls/s
on the same compiled model, and the median over paired chunks of env/raw time (target <= 1.25).
Then rollout throughput with one process vs a multiprocessing pool on all cores (each worker owns
an env). Raw and env chunks alternate in one process so the shared machine's noise hits both.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import mujoco
import numpy as np

from sim_models.envs import make_env
from sim_models.tasks import TASKS


def _env_rate(env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - t0)


def _raw_rate(env, n: int) -> float:
    m, d = env.sim.model, env.sim.data
    nstep = env.sim.n_substeps
    env.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(n):
        mujoco.mj_step(m, d, nstep=nstep)
        if i % 200 == 199:  # keep the state near the operating point, as the env does
            env.sim.reset()
    return n / (time.perf_counter() - t0)


def step_cost(task: str, steps: int, chunks: int = 12) -> dict[str, float]:
    """Alternate short env and raw chunks; the ratio is the median of the paired chunk ratios,
    so a burst of load from other processes hits one pair, not the whole figure."""
    env = make_env(task, "nominal")
    rng = np.random.default_rng(0)
    per_chunk = max(50, steps // chunks)
    # Small actions keep the robot up long enough that resets are rare in both loops.
    actions = rng.uniform(-0.05, 0.05, (per_chunk, env.action_space.shape[0])).astype(np.float32)
    env_rates, raw_rates = [], []
    for _ in range(chunks):
        env_rates.append(_env_rate(env, actions))
        raw_rates.append(_raw_rate(env, per_chunk))
    ratios = np.array(raw_rates) / np.array(env_rates)
    return {"env_steps_per_s": max(env_rates), "raw_steps_per_s": max(raw_rates),
            "ratio": float(np.median(ratios)), "substeps": env.sim.n_substeps}


def _worker(args: tuple[str, int, int]) -> int:
    task, steps, seed = args
    env = make_env(task, "nominal")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-0.05, 0.05, env.action_space.shape))
        if terminated or truncated:
            env.reset()
    return steps


def rollout_throughput(task: str, steps_per_worker: int, workers: int) -> dict[str, float]:
    t0 = time.perf_counter()
    _worker((task, steps_per_worker, 0))
    single = steps_per_worker / (time.perf_counter() - t0)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_worker, [(task, 10, i) for i in range(workers)])  # warm up imports
        t0 = time.perf_counter()
        done = sum(pool.map(_worker, [(task, steps_per_worker, i) for i in range(workers)]))
        pooled = done / (time.perf_counter() - t0)
    return {"single_steps_per_s": single, "pool_steps_per_s": pooled, "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per timing run")
    parser.add_argument("--workers", type=int, default=0, help="pool size (0 = all cores)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks to time")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"mujoco {mujoco.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"{'task':<14} {'env steps/s':>12} {'raw mj_step/s':>14} {'env/raw (median)':>17} substeps")
    for task in args.tasks:
        r = step_cost(task, args.steps)
        print(f"{task:<14} {r['env_steps_per_s']:>12.0f} {r['raw_steps_per_s']:>14.0f} "
              f"{r['ratio']:>17.2f} {r['substeps']:>8}")
    r = rollout_throughput("stand_still", args.steps, workers)
    print(f"rollout stand_still: 1 process {r['single_steps_per_s']:.0f} steps/s, "
          f"{workers} processes {r['pool_steps_per_s']:.0f} steps/s "
          f"(x{r['pool_steps_per_s'] / r['single_steps_per_s']:.2f})")


if __name__ == "__main__":
    main()

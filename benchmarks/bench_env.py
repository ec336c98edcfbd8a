"""Env step cost vs raw mj_step for the same physics steps, and batched rollout throughput.

    .venv/bin/python benchmarks/bench_env.py [--steps 4000] [--workers 0] [--tasks stand_still ...]
                                             [--num-envs 16]

What "raw" is: the env's own physics replayed. A recording pass runs the env once (seed 0, small
random actions, its resets) and keeps, per step, the ctrl it wrote and, at each reset, the full
MuJoCo state. The raw loop then restores those states and calls mj_step(nstep = substeps per
control step) with the same ctrl: the same physics, bit for bit, with no env Python around it
(an open-loop raw loop would wander into other states, e.g. a fallen robot with more contacts,
whose physics costs more or less than the env's).

Times are CPU time of this process (`time.process_time`): on the shared 2-core VM other
processes take the cores for whole scheduler slices, which wall time would charge to whichever
chunk was running. Env and raw chunks alternate; each ratio is the median of the paired chunk
ratios (target: env/raw <= 1.25, docs/benchmarks.md).

Prints, per task: best env steps/s, best raw steps/s, env/raw for the env's fast path and for its
reference path (`fast = False`: the TaskSpec functions on a RobotState, what every step cost
before the fast path). Then the batched env (sim_models.vector_env, --num-envs robots per call):
per-robot step time / raw time of the same robots' physics. Then rollout throughput (wall time)
with one process vs a multiprocessing pool on all cores (each worker owns an env).
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
from sim_models.vector_env import WheelLeggedVectorEnv

_clock = time.process_time
_STATE = mujoco.mjtState.mjSTATE_INTEGRATION


def _get_state(sim) -> np.ndarray:
    out = np.empty(mujoco.mj_stateSize(sim.model, _STATE))
    mujoco.mj_getState(sim.model, sim.data, out, _STATE)
    return out


class _Replay:
    """One robot's recorded physics: the state at each (re)start step and the ctrl of each step."""

    def __init__(self, sim, steps: int) -> None:
        self.model, self.data, self.nstep = sim.model, sim.data, sim.n_substeps
        self.ctrl = np.zeros((steps, sim.model.nu))
        self.starts: dict[int, np.ndarray] = {0: _get_state(sim)}


def _replay_rate(replays: list[_Replay], steps: int) -> float:
    """Raw mj_step calls per second over the recorded robots, in turn (as a batch steps them)."""
    step, set_state = mujoco.mj_step, mujoco.mj_setState
    t0 = _clock()
    for t in range(steps):
        for r in replays:
            start = r.starts.get(t)
            if start is not None:
                set_state(r.model, r.data, start, _STATE)
            r.data.ctrl[:] = r.ctrl[t]
            step(r.model, r.data, nstep=r.nstep)
    return steps * len(replays) / (_clock() - t0)


def _env_run(env, actions: np.ndarray, replay: _Replay | None = None) -> float:
    """Env steps per second from reset(seed=0); records into `replay` if given."""
    env.reset(seed=0)
    t0 = _clock()
    for t, a in enumerate(actions):
        _, _, terminated, truncated, _ = env.step(a)
        if replay is not None:
            replay.ctrl[t] = env.sim.data.ctrl
        if terminated or truncated:
            env.reset()
            if replay is not None:
                replay.starts[t + 1] = _get_state(env.sim)
    return len(actions) / (_clock() - t0)


def step_cost(task: str, steps: int, chunks: int = 12) -> dict[str, float]:
    """Alternate env (fast path), reference-path env and raw-replay chunks of the same physics."""
    env = make_env(task, "nominal")
    ref = make_env(task, "nominal")
    ref.fast = False
    rng = np.random.default_rng(0)
    per_chunk = max(50, steps // chunks)
    actions = rng.uniform(-0.05, 0.05, (per_chunk, env.action_space.shape[0])).astype(np.float32)
    env.reset(seed=0)
    replay = _Replay(env.sim, per_chunk)
    _env_run(env, actions, replay)
    env_rates, ref_rates, raw_rates = [], [], []
    for _ in range(chunks):
        env_rates.append(_env_run(env, actions))
        ref_rates.append(_env_run(ref, actions))
        raw_rates.append(_replay_rate([replay], per_chunk))
    raw = np.array(raw_rates)
    return {"env_steps_per_s": max(env_rates), "raw_steps_per_s": max(raw_rates),
            "ratio": float(np.median(raw / np.array(env_rates))),
            "ref_ratio": float(np.median(raw / np.array(ref_rates))), "substeps": env.sim.n_substeps}


def _vector_run(venv: WheelLeggedVectorEnv, actions: np.ndarray,
                replays: list[_Replay] | None = None) -> float:
    """Robot steps per second from reset(seed=0) (autoreset inside step); records if asked."""
    venv.reset(seed=0)
    t0 = _clock()
    for t, a in enumerate(actions):
        _, _, _, _, infos = venv.step(a)
        if replays is not None:
            # The ctrl the batch wrote (a reset robot's data has been zeroed since).
            ctrl = venv._kernel.ctrl_batch(np.clip(a.astype(np.float64), -1.0, 1.0))
            for i, r in enumerate(replays):
                r.ctrl[t] = ctrl[i]
                if "_final_obs" in infos and infos["_final_obs"][i]:
                    r.starts[t + 1] = _get_state(venv.envs[i].sim)
    return actions.shape[0] * venv.num_envs / (_clock() - t0)


def vector_cost(task: str, steps: int, num_envs: int, chunks: int = 12) -> dict[str, float]:
    """Per-robot step time of the batched env vs raw replay of the same robots' physics."""
    venv = WheelLeggedVectorEnv(task, num_envs, "nominal")
    rng = np.random.default_rng(0)
    calls = max(8, max(50, steps // chunks) // num_envs)
    actions = rng.uniform(-0.05, 0.05, (calls, num_envs, venv.task.act_dim)).astype(np.float32)
    venv.step(np.zeros((num_envs, venv.task.act_dim), np.float32))  # first step: gains into the models
    venv.reset(seed=0)
    replays = [_Replay(e.sim, calls) for e in venv.envs]
    _vector_run(venv, actions, replays)
    vec_rates, raw_rates = [], []
    for _ in range(chunks):
        vec_rates.append(_vector_run(venv, actions))
        raw_rates.append(_replay_rate(replays, calls))
    return {"robot_steps_per_s": max(vec_rates), "raw_steps_per_s": max(raw_rates),
            "ratio": float(np.median(np.array(raw_rates) / np.array(vec_rates)))}


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
    parser.add_argument("--num-envs", type=int, default=16, help="robots per batched env call")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"mujoco {mujoco.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"{'task':<14} {'env steps/s':>12} {'raw mj_step/s':>14} {'env/raw (median)':>17} "
          f"{'reference/raw':>14} substeps")
    for task in args.tasks:
        r = step_cost(task, args.steps)
        print(f"{task:<14} {r['env_steps_per_s']:>12.0f} {r['raw_steps_per_s']:>14.0f} "
              f"{r['ratio']:>17.2f} {r['ref_ratio']:>14.2f} {r['substeps']:>8}")
    print(f"batched env, {args.num_envs} robots per call:")
    print(f"{'task':<14} {'robot steps/s':>14} {'raw mj_step/s':>14} {'per-robot/raw (median)':>23}")
    for task in args.tasks:
        r = vector_cost(task, args.steps, args.num_envs)
        print(f"{task:<14} {r['robot_steps_per_s']:>14.0f} {r['raw_steps_per_s']:>14.0f} "
              f"{r['ratio']:>23.2f}")
    r = rollout_throughput("stand_still", args.steps, workers)
    print(f"rollout stand_still: 1 process {r['single_steps_per_s']:.0f} steps/s, "
          f"{workers} processes {r['pool_steps_per_s']:.0f} steps/s "
          f"(x{r['pool_steps_per_s'] / r['single_steps_per_s']:.2f})")


if __name__ == "__main__":
    main()

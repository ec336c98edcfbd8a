"""Member-updates per second: one population process vs P separate processes on the same cores.

    .venv/bin/python benchmarks/bench_population.py          # H2O; P = 1 3 6 12 24; 32-32 64-64 256-256
    .venv/bin/python benchmarks/bench_population.py --algorithms h2o sac cql --sizes 64-64 --populations 6 12

For each (algorithm, network size, P), side by side in one run:
- population: ONE process with `--threads` torch threads (default 2, the machine's cores) trains
  P members with `make_population` + `PopulationSampler` (each member its own buffers);
- separate: P processes started together (spawn), each a single learner (P = 1, the same code)
  with 1 torch thread and its own buffers, all timing the same window after a barrier;
member-updates/s = P x population updates/s, vs the sum of the separate processes' rates
("wall" columns, and their ratio). On a machine shared with other busy processes the wall figures
mostly measure the scheduler (P processes get a larger share of the cores than one), so the run
also reports member-updates per CPU-second of each side ("cpu" columns, process CPU time, all
threads): their ratio is the speed-up on cores that are all yours, e.g. the grid's two population
workers on 2 cores vs 2 x P separate single-learner processes on the same 2 cores.

With a CUDA device present (and no --no-cuda), each row is followed by a `cuda` row: the same
population on the GPU (networks, buffers and sampling there), wall member-updates/s against the
same separate CPU processes. Not measured yet: no GPU was available to this project's runs.

Batches as `learner.train` draws them: real_batch + sim_batch = 128 + 128 critic rows and 256 + 256
classifier rows, synthetic data, obs 17 / act 6 (--obs-dim/--act-dim).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import numpy as np
import torch

from learner.algorithms import REGISTRY, make_population
from learner.algorithms.base import sample_update_batches
from learner.buffers import PopulationSampler, RealStats, TransitionBuffer


def member_buffers(p: int, obs_dim: int, act_dim: int, n: int = 20_000, device: str = "cpu") -> tuple[list, list]:
    """Synthetic real and sim buffers for P members (each its own data and generators)."""
    real, sim = [], []
    for k in range(p):
        rng = np.random.default_rng(k)
        for out, seed in ((real, 2 * k + 1), (sim, 2 * k + 2)):
            buf = TransitionBuffer(obs_dim, act_dim, n + 1, torch.device(device), seed=seed)
            buf.load_fixed({"observations": rng.standard_normal((n, obs_dim)), "actions": rng.uniform(-1, 1, (n, act_dim)),
                            "rewards": rng.standard_normal(n), "next_observations": rng.standard_normal((n, obs_dim)),
                            "terminals": np.zeros(n)})
            out.append(buf)
    return real, sim


class Subject:
    """P members of one algorithm with their buffers, ready to be timed."""

    def __init__(self, algorithm: str, p: int, hidden: str, obs_dim: int, act_dim: int, batch: int, disc_batch: int,
                 device: str = "cpu"):
        cfg: dict = {"hidden": hidden}
        if "disc_hidden" in REGISTRY[algorithm].config_cls.__dataclass_fields__:
            cfg["disc_hidden"] = hidden
        self.device = device
        self.algo = make_population(algorithm, obs_dim, act_dim, [dict(cfg, seed=k) for k in range(p)],
                                    torch.device(device))
        real, sim = member_buffers(p, obs_dim, act_dim, device=device)
        self.real, self.sim = PopulationSampler(real), PopulationSampler(sim)
        self.algo.set_real_stats(RealStats.stack([b.stats() for b in real]))
        self.batch, self.disc_batch = batch, disc_batch
        for _ in range(3):  # warm-up (allocator, first-call paths)
            self.step()

    def step(self) -> None:
        kw = sample_update_batches(self.algo, self.real.sample, self.sim.sample, self.batch, self.batch,
                                   self.disc_batch)
        self.algo.update_population(**kw)

    def updates_in(self, seconds: float) -> tuple[int, float, float]:
        """(updates, wall seconds, CPU seconds of this process) in a window of `seconds`."""
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            self.step()
            n += 1
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()  # queued kernels belong to this window
        return n, time.perf_counter() - t0, time.process_time() - c0


def _separate_worker(args: tuple, barrier, results) -> None:
    algorithm, hidden, obs_dim, act_dim, batch, disc_batch, seconds = args
    torch.set_num_threads(1)
    subject = Subject(algorithm, 1, hidden, obs_dim, act_dim, batch, disc_batch)
    barrier.wait()
    results.put(subject.updates_in(seconds))


def separate_rate(p: int, args: tuple) -> tuple[float, float]:
    """(summed member-updates per wall second, member-updates per CPU second) of P single-learner
    processes running at once."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(p), ctx.Queue()
    procs = [ctx.Process(target=_separate_worker, args=(args, barrier, results)) for _ in range(p)]
    for proc in procs:
        proc.start()
    runs = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    return sum(n / dt for n, dt, _ in runs), sum(n for n, _, _ in runs) / sum(cpu for _, _, cpu in runs)


def population_rate(p: int, args: tuple, threads: int, device: str = "cpu") -> tuple[float, float]:
    """(member-updates per wall second, per CPU second) of one population process."""
    algorithm, hidden, obs_dim, act_dim, batch, disc_batch, seconds = args
    torch.set_num_threads(threads)
    subject = Subject(algorithm, p, hidden, obs_dim, act_dim, batch, disc_batch, device)
    n, dt, cpu = subject.updates_in(seconds)
    return p * n / dt, p * n / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algorithms", nargs="+", default=["h2o"], help="registry names")
    ap.add_argument("--sizes", nargs="+", default=["32-32", "64-64", "256-256"], help="hidden sizes of every network")
    ap.add_argument("--populations", nargs="+", type=int, default=[1, 3, 6, 12, 24], help="P values")
    ap.add_argument("--seconds", type=float, default=4.0, help="timing window per measurement")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the population process (2 spins badly on a loaded machine)")
    ap.add_argument("--batch", type=int, default=128, help="rows per source (real, sim) per update")
    ap.add_argument("--disc-batch", type=int, default=256, help="rows per source per classifier update")
    ap.add_argument("--obs-dim", type=int, default=17)
    ap.add_argument("--act-dim", type=int, default=6)
    ap.add_argument("--no-cuda", action="store_true", help="skip the cuda rows even when a GPU is present")
    a = ap.parse_args()
    cuda = torch.cuda.is_available() and not a.no_cuda
    print(f"member-updates/s, population (1 process, {a.threads} threads) vs P separate processes (1 thread each); "
          f"batch {a.batch}+{a.batch}, classifiers {a.disc_batch}+{a.disc_batch}, obs {a.obs_dim}/act {a.act_dim}, "
          f"{a.seconds:.0f} s windows; {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'':<23}{'--- wall member-upd/s ---':>30}{'--- per CPU-second ---':>30}")
    print(f"{'algorithm':<10}{'nets':>9}{'P':>4}{'population':>12}{'separate':>10}{'ratio':>8}"
          f"{'population':>12}{'separate':>10}{'ratio':>8}")
    for algorithm in a.algorithms:
        for hidden in a.sizes:
            for p in a.populations:
                args = (algorithm, hidden, a.obs_dim, a.act_dim, a.batch, a.disc_batch, a.seconds)
                pop, pop_cpu = population_rate(p, args, a.threads)
                sep, sep_cpu = separate_rate(p, args)
                print(f"{algorithm:<10}{hidden:>9}{p:>4}{pop:>12.1f}{sep:>10.1f}{pop / sep:>7.2f}x"
                      f"{pop_cpu:>12.1f}{sep_cpu:>10.1f}{pop_cpu / sep_cpu:>7.2f}x", flush=True)
                if cuda:
                    gpu, _ = population_rate(p, args, a.threads, "cuda")
                    print(f"{'  cuda':<10}{hidden:>9}{p:>4}{gpu:>12.1f}{sep:>10.1f}{gpu / sep:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()

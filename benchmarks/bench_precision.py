"""Would bfloat16 make the population update faster on this CPU? fp32 vs bf16 autocast, side by side.

    .venv/bin/python benchmarks/bench_precision.py                       # H2O and CQL, P = 5, 64-64
    .venv/bin/python benchmarks/bench_precision.py --algorithms sac --populations 1 5

Why: the population benchmark (bench_population.py) found the 64-64 update bound by batched
matmuls that stay per member, and CPUs with AMX / AVX512-BF16 run bf16 matmuls several times
faster than fp32 ones. Two figures per setting, measured alternately in the same process:
1. raw `torch.bmm` at the shapes the critics see (CQL's 30 proposals x 256 rows per member and
   critic, a plain 256-row batch, the classifiers' perturbed rows), GFLOP/s in fp32 and bf16;
2. one population update (bench_population.Subject: make_population + PopulationSampler, the
   learner's batches) in fp32 and under `torch.autocast("cpu", dtype=torch.bfloat16)`, CPU ms per
   member-update (process CPU time, so a loaded machine changes both sides alike).
The learner has no bf16 mode; this script says whether one would pay.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import torch

from bench_population import Subject

# (batch of matrices, rows, in, out): P=5 members x 2 critics
BMM_SHAPES = {"CQL proposals (10 x 7680 x 23 -> 64)": (10, 7680, 23, 64),
              "CQL hidden (10 x 7680 x 64 -> 64)": (10, 7680, 64, 64),
              "critic batch (10 x 256 x 64 -> 64)": (10, 256, 64, 64),
              "classifier perturbation (5 x 1280 x 40 -> 64)": (5, 1280, 40, 64)}


def bmm_gflops(shape: tuple[int, int, int, int], dtype: torch.dtype, reps: int = 30) -> float:
    b, n, k, m = shape
    x, w = torch.randn(b, n, k).to(dtype), torch.randn(b, k, m).to(dtype)
    for _ in range(3):
        torch.bmm(x, w)
    t0 = time.process_time()
    for _ in range(reps):
        torch.bmm(x, w)
    return 2 * b * n * k * m * reps / (time.process_time() - t0) / 1e9


def update_ms(subject: Subject, population: int, n: int, bf16: bool) -> float:
    """CPU milliseconds per member-update over n population updates."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        subject.step()  # first call of this mode outside the window
        t0 = time.process_time()
        for _ in range(n):
            subject.step()
    return (time.process_time() - t0) / n / population * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algorithms", nargs="+", default=["h2o", "cql"], help="registry names")
    ap.add_argument("--populations", nargs="+", type=int, default=[5], help="P values")
    ap.add_argument("--hidden", default="64-64", help="hidden sizes of every network")
    ap.add_argument("--updates", type=int, default=40, help="population updates per timing (CQL: a quarter)")
    ap.add_argument("--repeats", type=int, default=2, help="alternate fp32 / bf16 this many times")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"fp32 vs bf16 on {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'bmm shape':<48}{'fp32 GFLOP/s':>14}{'bf16 GFLOP/s':>14}{'ratio':>8}")
    for name, shape in BMM_SHAPES.items():
        f32, b16 = bmm_gflops(shape, torch.float32), bmm_gflops(shape, torch.bfloat16)
        print(f"{name:<48}{f32:>14.1f}{b16:>14.1f}{b16 / f32:>7.2f}x", flush=True)
    print(f"{'update (CPU ms per member-update)':<34}{'P':>4}{'fp32':>10}{'bf16 autocast':>15}{'speed-up':>10}")
    for algorithm in a.algorithms:
        for p in a.populations:
            subject = Subject(algorithm, p, a.hidden, 17, 6, 128, 256)
            n = max(4, a.updates // 4) if algorithm == "cql" else a.updates
            f32 = min(update_ms(subject, p, n, False) for _ in range(a.repeats))
            b16 = min(update_ms(subject, p, n, True) for _ in range(a.repeats))
            print(f"{algorithm:<34}{p:>4}{f32:>10.2f}{b16:>15.2f}{f32 / b16:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()

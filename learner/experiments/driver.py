"""Runs the grid's cells as population jobs in a process pool (torch threads = 1 per process).

Population jobs: the unfinished cells that share a task and an algorithm (so their networks have
the same shapes: the grid's [train] sizes are common) and the same resume point are trained as
ONE population (learner.train.Run with one MemberSpec per cell: its own seed, dataset, profiles,
run folder, checkpoint and summary), split into at most `population` members per job and into at
least as many jobs as there are workers. `population = 1` gives the old one-cell-per-process pool.

Resume rules (so an interrupted grid is restarted with the same command):
- a cell whose summary.json reports the full budget is done and skipped, whether in its run folder
  or in the results folder's archive (learner/experiments/archive.py: each finished cell's summary
  and progress are copied there as its job ends, so a grid run over several sittings resumes from
  the committed results even when the run folders are gone);
- any other cell runs with train.py's `resume = true`: it continues from its checkpoint.pt when
  one exists (train.py resumes exactly), else starts fresh. Cells are grouped by the update count
  their checkpoint holds (checkpoint.json), so a job never mixes resume points. Raising the budget
  therefore extends finished cells from their last checkpoint.
A job that raises is logged with its traceback in each of its cells' error.txt and the grid goes
on.

Executors: the jobs run in a local process pool by default, or as Ray tasks on a cluster when
given an address (`[grid] ray_address` or `--ray-address`; learner/experiments/cluster.py). The
job body (run_job), the resume rules and the collecting on the head are the same for both; on a
cluster a job whose node dies is retried elsewhere and resumes from its cells' checkpoints.
While jobs run, the parent logs every `progress_every_s` seconds the updates done inside the
cells (from their progress.csv) and an estimated time to finish.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from learner.experiments.archive import archive_cell, source_for
from learner.experiments.config import GridConfig
from learner.experiments.datasets import ensure_dataset
from protocol.logs import file_handler

log = logging.getLogger(__name__)


@dataclass
class CellJob:
    """One cell of a population job (plain data: it crosses a process boundary)."""

    key: str
    run_dir: str  # the cell's own folder
    seed: int
    dataset: str  # file path
    sim_profile: str
    real_profile: str


@dataclass
class PopulationJob:
    """Cells trained as one population: same task, algorithm, [train] settings and resume point."""

    cells: list  # list[CellJob]
    train: dict  # TrainConfig keys shared by the cells

    @property
    def key(self) -> str:
        first = self.cells[0].key.rsplit("/", 1)[0]
        return first if len(self.cells) == 1 else f"{first} +{len(self.cells) - 1} cell(s)"


def prepare_datasets(cfg: GridConfig) -> dict[tuple[str, str, str], tuple[Path, dict]]:
    """Collect (or find) every dataset once, in the parent, before any cell starts."""
    out: dict[tuple[str, str, str], tuple[Path, dict]] = {}
    data_dir = Path(cfg.out_dir) / "data"
    for task in cfg.tasks:
        for gap in cfg.gaps:
            for ds in cfg.datasets:
                spec = ds
                if ds.kind == "file":
                    spec = type(ds)(**{**ds.__dict__, "path": ds.path.format(task=task, gap=gap.name, dataset=ds.name)})
                out[(task, gap.name, ds.name)] = ensure_dataset(spec, task, gap.real_profile, data_dir)
    return out


def resume_point(run_dir: Path) -> int:
    """Updates held by the cell's checkpoint (0 without one)."""
    try:
        return int(json.loads((run_dir / "checkpoint.json").read_text())["updates"])
    except (OSError, ValueError, KeyError):
        return 0


def make_jobs(cfg: GridConfig, datasets: dict) -> tuple[list[PopulationJob], list[str]]:
    """(population jobs to run, keys already done)."""
    groups: dict[tuple, list[CellJob]] = {}
    done = []
    for cell in cfg.cells():
        run_dir = cell.run_dir(Path(cfg.out_dir))
        if source_for(cfg, cell) is not None:  # finished here, or archived beside the results table
            done.append(cell.key)
            continue
        path, _meta = datasets[(cell.task, cell.gap.name, cell.dataset.name)]
        groups.setdefault((cell.task, cell.algorithm, resume_point(run_dir)), []).append(
            CellJob(cell.key, str(run_dir), cell.seed, str(path), cell.gap.sim_profile, cell.gap.real_profile))
    jobs = []
    for (task, algorithm, _), cells in groups.items():
        train = {**cfg.train, "algorithm": algorithm, "task": task, "total_updates": cfg.updates_for(algorithm),
                 "resume": True, "threads": 1, "progress": False}
        if cfg.algo_overrides(algorithm):
            train["algo"] = cfg.algo_overrides(algorithm)
        size = cfg.population if cfg.population > 0 else len(cells)
        n = math.ceil(len(cells) / size)
        jobs += [PopulationJob(cells[i::n], train) for i in range(n)]  # round-robin: balanced sizes
    while len(jobs) < cfg.workers and max((len(j.cells) for j in jobs), default=1) > 1:
        big = max(jobs, key=lambda j: len(j.cells))  # give every worker a job
        jobs.remove(big)
        jobs += [PopulationJob(big.cells[0::2], big.train), PopulationJob(big.cells[1::2], big.train)]
    return jobs, done


def run_job(job: PopulationJob, where: str = "") -> dict:
    """Worker body: one learner.train population Run with its own log file per cell; never raises
    (errors are returned and written to each cell's error.txt). `where` names the machine (a Ray
    node on a cluster) in each cell's train.log, so a log shows every attempt at the cell."""
    import torch

    from learner.train import MemberSpec, Run, TrainConfig

    torch.set_num_threads(1)
    root = logging.getLogger()
    handlers = []
    for c in job.cells:
        Path(c.run_dir).mkdir(parents=True, exist_ok=True)
        handler = file_handler(Path(c.run_dir) / "train.log")
        root.addHandler(handler)
        handlers.append(handler)
    root.setLevel(logging.INFO)
    t0 = time.perf_counter()
    keys = [c.key for c in job.cells]
    where = where or f"host {socket.gethostname()}"
    log.info("job %s: attempt on %s (pid %d)", job.key, where, os.getpid())
    try:
        first = job.cells[0]
        cfg = TrainConfig(**job.train, dataset=first.dataset, sim_profile=first.sim_profile,
                          real_profile=first.real_profile, run_dir=str(Path(first.run_dir).parent),
                          seeds=[c.seed for c in job.cells])
        cfg.validate()
        specs = [MemberSpec(c.seed, Path(c.run_dir), c.dataset, c.sim_profile, c.real_profile) for c in job.cells]
        summaries = Run(cfg, specs).train()
        return {"keys": keys, "ok": True, "seconds": time.perf_counter() - t0, "summaries": summaries, "where": where}
    except Exception as exc:  # a broken job must not stop the grid
        for c in job.cells:
            (Path(c.run_dir) / "error.txt").write_text(traceback.format_exc())
        logging.getLogger(__name__).exception("job %s failed", job.key)
        return {"keys": keys, "ok": False, "seconds": time.perf_counter() - t0, "error": repr(exc), "where": where}
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def run_grid(cfg: GridConfig, dry_run: bool = False) -> dict:
    """Prepare data, run every unfinished cell (as population jobs) on cfg.workers local processes,
    or as Ray tasks on the cluster at cfg.ray_address; returns counts and failures."""
    datasets = prepare_datasets(cfg)
    jobs, done = make_jobs(cfg, datasets)
    n_cells = sum(len(j.cells) for j in jobs)
    where = f"the Ray cluster at {cfg.ray_address}" if cfg.ray_address else f"{cfg.workers} local workers"
    log.info("grid %s: %d cells, %d already done, %d to run as %d population job(s) on %s", cfg.name,
             n_cells + len(done), len(done), n_cells, len(jobs), where)
    result = {"done_before": done, "ran": [], "failed": []}
    if dry_run or not jobs:
        result["pending"] = [c.key for j in jobs for c in j.cells]
        return result
    pool = make_pool(cfg, len(jobs))
    try:
        _collect(pool, jobs, result, cfg)
    except KeyboardInterrupt:
        # Stop the workers too (they would otherwise finish their cells unattended); checkpoints are
        # atomic, so the same command later resumes every interrupted cell.
        log.warning("interrupted: stopping workers; re-run the same command to resume")
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return result


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_workers_on_sigterm() -> None:
    """Make `kill <pid>` of a grid or gates command stop its workers too, as Ctrl-C does: run_grid's
    KeyboardInterrupt path terminates them. Without it the workers outlive the command (spawned,
    re-parented to init) and keep training, racing the same command run again on the same cells."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


class JobPool(Protocol):
    """What the driver needs of an executor (ProcessPoolExecutor, cluster.RayJobPool)."""

    def submit(self, fn: Callable[..., dict], job: PopulationJob) -> Future: ...

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None: ...


def make_pool(cfg: GridConfig, n_jobs: int) -> JobPool:
    """The executor: a local spawn pool, or Ray tasks when the grid names a cluster address."""
    if cfg.ray_address:
        from learner.experiments.cluster import RayJobPool

        return RayJobPool(cfg.ray_address, max_retries=cfg.ray_max_retries)
    ctx = mp.get_context("spawn")  # fresh interpreter per worker: no forked torch/mujoco state
    return ProcessPoolExecutor(max_workers=min(cfg.workers, n_jobs), mp_context=ctx)


def cell_updates(run_dir: Path) -> int:
    """Updates a cell has logged so far (the last row of its progress.csv; 0 before any)."""
    try:
        with open(run_dir / "progress.csv", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            last = fh.read().decode(errors="replace").strip().splitlines()[-1]
        return int(float(last.split(",", 1)[0]))
    except (OSError, IndexError, ValueError):
        return 0


# Cost of one update relative to H2O's, per algorithm (5-seed population jobs at 64-64 on the 2-core
# VM, docs/results.md "The latency grid at 60k updates": BC 2-3 min, SAC 10-16, DARC+ 18-26,
# DARC 23-25, H2O 28-32 min per 60k updates, CQL ~70 min per 30k). Only the ETA uses it: a grid
# whose cheap BC cells finish first would otherwise promise a fraction of its real time.
UPDATE_COST = {"bc": 0.1, "sac": 0.45, "darc_plus": 0.75, "darc": 0.8, "h2o": 1.0, "cql": 4.5}


class Progress:
    """Updates done inside the running cells, the grid's fraction done and an estimated time to finish
    (from the work done so far, each update weighted by its algorithm's UPDATE_COST)."""

    def __init__(self, jobs: list[PopulationJob]):
        self.cells = [(Path(c.run_dir), UPDATE_COST.get(j.train["algorithm"], 1.0)) for j in jobs for c in j.cells]
        self.dirs = [d for d, _ in self.cells]
        self.total = sum(int(j.train["total_updates"]) * len(j.cells) for j in jobs)
        self.total_work = sum(int(j.train["total_updates"]) * len(j.cells) * UPDATE_COST.get(j.train["algorithm"], 1.0)
                              for j in jobs)
        self.t0 = time.perf_counter()
        self.start, self.start_work = self.done_updates(), self.done_work()

    def done_updates(self) -> int:
        return sum(cell_updates(d) for d in self.dirs)

    def done_work(self) -> float:
        return sum(cell_updates(d) * cost for d, cost in self.cells)

    def line(self, cells_done: int) -> str:
        now, work, elapsed = self.done_updates(), self.done_work(), time.perf_counter() - self.t0
        rate = (now - self.start) / elapsed if elapsed > 0 else 0.0
        work_rate = (work - self.start_work) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_work - work) / work_rate if work_rate > 0 else float("inf")
        eta_text = "unknown" if not math.isfinite(eta) else f"{int(eta // 3600)}:{time.strftime('%M:%S', time.gmtime(eta))}"
        return (f"{now:,} of {self.total:,} cell-updates ({100.0 * now / max(self.total, 1):.1f}%), "
                f"{cells_done} of {len(self.dirs)} cells done, {rate:.0f} cell-updates/s, ETA {eta_text}")


def _collect(pool: JobPool, jobs: list[PopulationJob], result: dict, cfg: GridConfig) -> None:
    """Submit every job; log each cell as its job finishes, and progress with an ETA meanwhile."""
    futures: dict[Future, PopulationJob] = {pool.submit(run_job, job): job for job in jobs}
    cells = {c.key: c for c in cfg.cells()}
    progress = Progress(jobs)
    total = len(progress.dirs)
    pending, finished = set(futures), 0
    while pending:
        ready, pending = wait(pending, timeout=cfg.progress_every_s, return_when=FIRST_COMPLETED)
        for fut in ready:
            try:
                out = fut.result()
            except Exception as exc:  # noqa: BLE001 - the executor lost the job (pool broken, Ray retries used up)
                job = futures[fut]
                log.error("job %s lost: %r", job.key, exc)
                out = {"keys": [c.key for c in job.cells], "ok": False, "error": repr(exc)}
            if out["ok"]:
                for key, s in zip(out["keys"], out["summaries"]):
                    finished += 1
                    archive_cell(cfg, cells[key])
                    result["ran"].append(key)
                    log.info("[%d/%d] %s: real %.0f, sim %.0f (%.0f s, population of %d, %s)", finished, total,
                             key, s["final_real_return"], s["final_sim_return"], out["seconds"], len(out["keys"]),
                             out["where"])
            else:
                for key in out["keys"]:
                    finished += 1
                    result["failed"].append({"key": key, "error": out["error"]})
                    log.error("[%d/%d] %s FAILED: %s", finished, total, key, out["error"])
        if pending:
            log.info("progress: %s", progress.line(finished))

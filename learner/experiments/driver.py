"""Runs the grid's cells in a process pool: one cell per process, torch threads = 1 each.

Resume rules (so an interrupted grid is restarted with the same command):
- a cell whose summary.json reports the full budget is done and skipped;
- any other cell runs with train.py's `resume = true`: it continues from its checkpoint.pt when
  one exists (train.py resumes exactly), else starts fresh. Raising the budget therefore extends
  finished cells from their last checkpoint.
A cell that raises is logged with its traceback in <cell>/error.txt and the grid goes on.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from learner.experiments.config import Cell, GridConfig
from learner.experiments.datasets import ensure_dataset

log = logging.getLogger(__name__)


@dataclass
class CellJob:
    """What a worker process needs for one cell (plain data: it crosses a process boundary)."""

    key: str
    run_dir: str  # the cell's own folder
    train: dict  # TrainConfig keys


def cell_done(run_dir: Path, total_updates: int) -> bool:
    summary = run_dir / "summary.json"
    if not summary.exists():
        return False
    try:
        return int(json.loads(summary.read_text()).get("updates", -1)) >= total_updates
    except (ValueError, OSError):
        return False


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


def make_jobs(cfg: GridConfig, datasets: dict) -> tuple[list[CellJob], list[str]]:
    """(jobs to run, keys already done)."""
    jobs, done = [], []
    for cell in cfg.cells():
        run_dir = cell.run_dir(Path(cfg.out_dir))
        if cell_done(run_dir, cfg.total_updates):
            done.append(cell.key)
            continue
        path, _meta = datasets[(cell.task, cell.gap.name, cell.dataset.name)]
        train = {**cfg.train, "algorithm": cell.algorithm, "task": cell.task, "sim_profile": cell.gap.sim_profile,
                 "real_profile": cell.gap.real_profile, "dataset": str(path), "total_updates": cfg.total_updates,
                 "run_dir": str(run_dir.parent), "name": cell.algorithm, "seeds": [cell.seed], "resume": True,
                 "threads": 1, "progress": False}
        jobs.append(CellJob(cell.key, str(run_dir), train))
    return jobs, done


def run_cell(job: CellJob) -> dict:
    """Worker body: one train.py Run with its own log file; never raises (errors are returned)."""
    import torch

    from learner.train import Run, TrainConfig

    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    t0 = time.perf_counter()
    try:
        cfg = TrainConfig(**job.train)
        cfg.validate()
        summary = Run(cfg, int(job.train["seeds"][0])).train()
        return {"key": job.key, "ok": True, "seconds": time.perf_counter() - t0, "summary": summary}
    except Exception as exc:  # a broken cell must not stop the grid
        (run_dir / "error.txt").write_text(traceback.format_exc())
        logging.getLogger(__name__).exception("cell %s failed", job.key)
        return {"key": job.key, "ok": False, "seconds": time.perf_counter() - t0, "error": repr(exc)}
    finally:
        root.removeHandler(handler)
        handler.close()


def run_grid(cfg: GridConfig, dry_run: bool = False) -> dict:
    """Prepare data, run every unfinished cell on cfg.workers processes; returns counts and failures."""
    datasets = prepare_datasets(cfg)
    jobs, done = make_jobs(cfg, datasets)
    log.info("grid %s: %d cells, %d already done, %d to run on %d workers", cfg.name, len(jobs) + len(done),
             len(done), len(jobs), cfg.workers)
    result = {"done_before": done, "ran": [], "failed": []}
    if dry_run or not jobs:
        result["pending"] = [j.key for j in jobs]
        return result
    ctx = mp.get_context("spawn")  # fresh interpreter per worker: no forked torch/mujoco state
    pool = ProcessPoolExecutor(max_workers=min(cfg.workers, len(jobs)), mp_context=ctx)
    try:
        _collect(pool, jobs, result)
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


def _collect(pool: ProcessPoolExecutor, jobs: list[CellJob], result: dict) -> None:
    """Submit every job and log each cell as it finishes (in completion order)."""
    futures = {pool.submit(run_cell, job): job.key for job in jobs}
    for i, fut in enumerate(as_completed(futures), 1):
        out = fut.result()
        if out["ok"]:
            s = out["summary"]
            result["ran"].append(out["key"])
            log.info("[%d/%d] %s: real %.0f, sim %.0f (%.0f s)", i, len(jobs), out["key"],
                     s["final_real_return"], s["final_sim_return"], out["seconds"])
        else:
            result["failed"].append({"key": out["key"], "error": out["error"]})
            log.error("[%d/%d] %s FAILED: %s", i, len(jobs), out["key"], out["error"])

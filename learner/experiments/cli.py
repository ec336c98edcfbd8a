"""Command line: run (or resume) a grid, then write its table and plots."""

from __future__ import annotations

import argparse
import sys
import tomllib

from protocol.logs import setup_logging
from learner.experiments import config as grid_config
from learner.experiments.cluster import RayUnavailableError
from learner.experiments.datasets import DatasetSpecError
from learner.experiments.driver import run_grid, stop_workers_on_sigterm
from learner.experiments.gates import format_table, run_gates
from learner.experiments.report import write_report
from protocol import strict_json
from protocol.config_cli import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m learner.experiments",
                       example="python -m learner.experiments configs/experiments/wheel_legged_reduced.toml --workers 2",
                                description="Run the H2O comparison grid (algorithms x gaps x datasets x seeds); "
                                            "re-running the same command skips finished cells and resumes partial ones.")
    p.add_argument("config", help="grid TOML (see configs/experiments/)")
    p.add_argument("--workers", type=int, help="worker processes, one population job each (default: the config's)")
    p.add_argument("--population", type=int,
                   help="most cells per population job (0 = no limit, 1 = one cell per process; default: the config's)")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="run the jobs as Ray tasks on this cluster ('auto' or host:port of the head; needs the "
                        "cluster extra and run folders on a filesystem every node sees: docs/cluster.md); "
                        "default: the config's [grid] ray_address, else the local process pool")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds list")
    p.add_argument("--algorithms", nargs="+", help="override the algorithms list")
    p.add_argument("--tasks", nargs="+", help="override the tasks list")
    p.add_argument("--gaps", nargs="+", metavar="NAME",
                   help="run only these [[gaps]] entries (by name), e.g. to run a big grid a few rows at a time; "
                        "the table written afterwards still covers every row")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="run only these [[datasets]] entries (by name)")
    p.add_argument("--total-updates", type=int, help="override the per-cell update budget")
    p.add_argument("--out-dir", help="override the run folder root (datasets, checkpoints, logs)")
    p.add_argument("--results-dir", help="override where the table and plots go")
    p.add_argument("--train", action="append", metavar="KEY=VALUE", default=[],
                   help="override a [train] key for every cell, e.g. --train device=cpu (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="prepare datasets and list the cells to run, run nothing")
    p.add_argument("--report-only", action="store_true", help="only (re)write the table and plots from finished cells")
    p.add_argument("--skip-gates", action="store_true",
                   help="do not run the sanity gates first (python -m learner.experiments.gates: SAC fits the "
                        "simulator, BC/CQL clear the offline data, H2O's seeds stay above it); by default a failed "
                        "gate stops the grid, since its comparison would not be worth reading")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    overrides = {"workers": args.workers, "population": args.population, "seeds": args.seeds, "algorithms": args.algorithms, "tasks": args.tasks,
                 "gaps": args.gaps, "datasets": args.datasets, "total_updates": args.total_updates, "out_dir": args.out_dir, "results_dir": args.results_dir,
                 "ray_address": args.ray_address}
    try:
        overrides["train"] = grid_config.parse_assignments(args.train)
        cfg = grid_config.load(args.config, overrides)
        # the table covers every row of the grid, also when this run trains only some (--gaps, --datasets)
        report_cfg = grid_config.load(args.config, {**overrides, "gaps": None, "datasets": None})
    except (OSError, tomllib.TOMLDecodeError, grid_config.GridConfigError, DatasetSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result: dict = {}
    stop_workers_on_sigterm()
    if not (args.report_only or args.dry_run or args.skip_gates):
        try:
            gate_results = run_gates(cfg)
        except KeyboardInterrupt:
            print("interrupted during the gates; re-run the same command to resume", file=sys.stderr)
            return 130
        print(format_table(gate_results))
        if not all(r.passed for r in gate_results):
            print("a sanity gate failed: the learners do not work at this grid's settings, so its comparison would "
                  "mislead; fix the settings (docs/results.md) or pass --skip-gates", file=sys.stderr)
            return 1
    if not args.report_only:
        try:
            result = run_grid(cfg, dry_run=args.dry_run)
        except KeyboardInterrupt:
            print("interrupted; finished cells are kept, re-run the same command to resume", file=sys.stderr)
            return 130
        except (DatasetSpecError, RayUnavailableError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not args.dry_run:
        rep = write_report(report_cfg)
        print(rep["table"])
        print(f"{rep['cells']} of {rep['of']} cells finished; table and plots in {cfg.results_dir}")
    if result:
        print(strict_json.dumps({k: (len(v) if k != "failed" else v) for k, v in result.items()}))
    return 1 if result.get("failed") else 0

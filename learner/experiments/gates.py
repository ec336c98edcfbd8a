"""Sanity gates: does each learner learn what it must, before a grid compares them?

A comparison grid is only worth reading if its learners work. Three gates, each a small grid run
with the main grid's budget, network sizes and [train] settings (so a gate that passes says the
grid's own settings are sound):

  (a) sim_learns      SAC trains and is evaluated in the nominal simulator on `stand_still`: the
                      final return reaches >= 90% of the tuned controller's on >= 2 of 3 seeds.
                      Fails when the learner cannot even fit the simulator it trains in (a
                      reward-scale or optimiser problem, not a sim-to-real one).
  (b) offline_floor   BC and CQL on medium data from a Markov gap (no latency, so the 4-D state
                      is a state): the mean final real return over seeds reaches >= 90% of the
                      behaviour data's return. Any offline-data method should clear this floor.
  (c) h2o_stable      H2O with the same data: no seed ends below the behaviour data's return.

`python -m learner.experiments.gates configs/experiments/<grid>.toml` runs them (resumable like
any grid: finished cells are skipped) and exits 1 when a gate fails; the grid CLI runs them first
unless given --skip-gates. Results: <out_dir>/gates/gates.json and a table on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from protocol.logs import setup_logging
from learner.experiments import config as grid_config
from learner.experiments.config import GapSpec, GridConfig
from learner.experiments.datasets import DatasetSpec
from protocol import strict_json
from protocol.config_cli import ArgumentParser

log = logging.getLogger(__name__)

GATE_TASK = "stand_still"
MARKOV_PROFILE = "configs/experiments/profiles/moderate_markov.toml"  # moderate without latency/noise
SIM_LEARNS_FRACTION = 0.9  # (a): of the tuned controller's return
SIM_LEARNS_MIN_SEEDS = 2  # (a): seeds that must get there (of 3)
OFFLINE_FLOOR_FRACTION = 0.9  # (b): of the behaviour data's return
OFFLINE_ALGORITHMS = ("bc", "cql")


@dataclass
class GateResult:
    name: str
    passed: bool
    target: float  # the return each seed (or the mean) had to reach
    per_seed: dict = field(default_factory=dict)  # algorithm -> [final real return per seed]
    detail: str = ""


def gate_grids(base: GridConfig) -> dict[str, GridConfig]:
    """The two small grids the gates run, with the base grid's budget, seeds and [train] keys."""
    out = Path(base.out_dir) / "gates"
    common = {"tasks": [GATE_TASK], "seeds": list(base.seeds), "total_updates": base.total_updates,
              "algorithm_updates": dict(base.algorithm_updates),
              "algorithm_settings": dict(base.algorithm_settings),
              "workers": base.workers, "train": dict(base.train), "ray_address": base.ray_address,
              "ray_max_retries": base.ray_max_retries}
    sim = GridConfig(name="gate_sim_learns", algorithms=["sac"], out_dir=str(out), results_dir=str(out),
                     gaps=[GapSpec(name="nominal", real_profile="nominal")],
                     datasets=[DatasetSpec(name="unused", kind="medium", steps=2000)], **common)
    markov = GridConfig(name="gate_markov", algorithms=[*OFFLINE_ALGORITHMS, "h2o"], out_dir=str(out),
                        results_dir=str(out), gaps=[GapSpec(name="moderate_markov", real_profile=MARKOV_PROFILE)],
                        datasets=[DatasetSpec(name="medium", kind="medium", steps=15_000, noise=0.3)], **common)
    for g in (sim, markov):
        g.validate()
    return {"sim": sim, "markov": markov}


def final_returns(grid: GridConfig, algorithm: str) -> list[float]:
    """Final real-profile return of each finished seed of `algorithm` (the grid has one row)."""
    values = []
    for cell in grid.cells():
        if cell.algorithm != algorithm:
            continue
        path = cell.run_dir(Path(grid.out_dir)) / "summary.json"
        if path.exists():
            values.append(float(json.loads(path.read_text())["final_real_return"]))
    return values


def judge(grids: dict[str, GridConfig], meta: dict[str, dict]) -> list[GateResult]:
    """Apply the three rules to finished runs. `meta[name]` is the dataset sidecar of that grid."""
    tuned = float(meta["sim"]["tuned_return"])
    sac = final_returns(grids["sim"], "sac")
    target_a = SIM_LEARNS_FRACTION * tuned
    n_ok = sum(r >= target_a for r in sac)
    results = [GateResult("sim_learns", n_ok >= min(SIM_LEARNS_MIN_SEEDS, len(grids["sim"].seeds)) and bool(sac),
                          target_a, {"sac": sac}, f"{n_ok} of {len(sac)} seeds reach it")]
    behaviour = float(meta["markov"]["behaviour_return_mean"])
    target_b = OFFLINE_FLOOR_FRACTION * behaviour
    offline = {a: final_returns(grids["markov"], a) for a in OFFLINE_ALGORITHMS}
    means = {a: (sum(v) / len(v) if v else float("nan")) for a, v in offline.items()}
    results.append(GateResult("offline_floor", all(v and means[a] >= target_b for a, v in offline.items()),
                              target_b, offline, ", ".join(f"{a} mean {m:.0f}" for a, m in means.items())))
    h2o = final_returns(grids["markov"], "h2o")
    low = [r for r in h2o if r < behaviour]
    results.append(GateResult("h2o_stable", bool(h2o) and not low, behaviour, {"h2o": h2o},
                              f"{len(low)} of {len(h2o)} seeds below the data"))
    return results


def run_gates(base: GridConfig, dry_run: bool = False) -> list[GateResult]:
    """Run (or resume) the gate grids, judge them, write gates.json; returns the results."""
    from learner.experiments.driver import prepare_datasets, run_grid

    grids = gate_grids(base)
    meta = {}
    for name, grid in grids.items():
        log.info("gate grid %s: %d cells", grid.name, sum(1 for _ in grid.cells()))
        run_grid(grid, dry_run=dry_run)
        (_path, m), = prepare_datasets(grid).values()
        meta[name] = m
    results = judge(grids, meta)
    out = Path(base.out_dir) / "gates" / "gates.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(strict_json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    return results


def format_table(results: list[GateResult]) -> str:
    lines = ["| gate | passed | target | final real return per seed | |", "|---|---|---|---|---|"]
    for r in results:
        seeds = "; ".join(f"{a}: {', '.join(f'{v:.0f}' for v in vals)}" for a, vals in r.per_seed.items())
        lines.append(f"| {r.name} | {'yes' if r.passed else '**no**'} | {r.target:.0f} | {seeds} | {r.detail} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m learner.experiments.gates", description=__doc__)
    p.add_argument("config", help="the grid TOML whose budget, seeds and [train] settings the gates use")
    p.add_argument("--total-updates", type=int, help="override the budget")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--workers", type=int, help="override the worker count")
    p.add_argument("--out-dir", help="override the run folder root (gates go to <out-dir>/gates)")
    args = p.parse_args(argv)
    setup_logging("INFO")
    try:
        base = grid_config.load(args.config, {"total_updates": args.total_updates, "seeds": args.seeds,
                                              "workers": args.workers, "out_dir": args.out_dir})
    except (OSError, tomllib.TOMLDecodeError, grid_config.GridConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from learner.experiments.driver import stop_workers_on_sigterm

    stop_workers_on_sigterm()
    try:
        results = run_gates(base)
    except KeyboardInterrupt:
        print("interrupted; finished cells are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

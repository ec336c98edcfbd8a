"""Grid configuration: algorithms x gaps x datasets x seeds (x tasks) with one shared budget.

A TOML file holds a [grid] table (budget, output folders, the lists) and [[gaps]]/[[datasets]]
arrays; `[train]` passes any other learner.train.TrainConfig key through unchanged (hidden sizes,
batch sizes, eval cadence, ...), so the grid never re-implements train.py's options.
A gap names both sides: the wheel-legged robot trains in sim = nominal against "real" = a named
profile; the paper's HalfCheetah trains in sim = the modified env against real = nominal.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from learner.experiments.datasets import DatasetSpec


class GridConfigError(ValueError):
    """A grid config that cannot run (unknown key, empty list, bad value)."""


@dataclass
class GapSpec:
    """One dynamics gap: the simulator's profile and the profile that plays the real system."""

    name: str
    sim_profile: str = "nominal"
    real_profile: str = ""  # default: the gap's name


@dataclass
class Cell:
    """One training run: the unit the pool schedules, skips when done and resumes when partial."""

    task: str
    gap: GapSpec
    dataset: DatasetSpec
    algorithm: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.gap.name}/{self.dataset.name}/{self.algorithm}/seed{self.seed}"

    def run_dir(self, out_dir: Path) -> Path:
        """Folder train.py writes: <out>/<task>/<gap>/<dataset>/<algorithm>_seed<k>/."""
        return out_dir / self.task.replace("/", "_") / self.gap.name / self.dataset.name / f"{self.algorithm}_seed{self.seed}"


@dataclass
class GridConfig:
    name: str = "grid"
    tasks: list = field(default_factory=lambda: ["stand_still"])
    algorithms: list = field(default_factory=lambda: ["h2o", "sac", "cql", "darc", "darc_plus"])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    total_updates: int = 30_000  # per cell
    # per-algorithm budgets that replace total_updates for that algorithm's cells, e.g. {cql = 30000}:
    # CQL's update costs several times another method's, and a grid on a small machine may have to
    # give it less (the report prints each algorithm's budget)
    algorithm_updates: dict = field(default_factory=dict)
    # per-algorithm learner settings over [train] algo for that algorithm's cells, e.g.
    # {h2o = {penalty_clip = 1000.0}}: keeps a grid on one setting when a default changes mid-way
    algorithm_settings: dict = field(default_factory=dict)
    out_dir: str = "runs/experiments/grid"  # run folders, datasets (large, not committed)
    results_dir: str = "results/grid"  # table + plots (small, committed)
    workers: int = 2  # processes, each a population job (torch threads = 1 each)
    population: int = 0  # most cells per population job (0 = no limit; 1 = one cell per process)
    progress_every_s: float = 60.0  # seconds between progress / ETA lines while cells run
    # Ray cluster to run the jobs on ("auto", "host:port"); empty = the local process pool. The run
    # folders must be on a filesystem every node sees (docs/cluster.md).
    ray_address: str = ""
    ray_max_retries: int = 3  # times Ray runs a job again after its node or worker died
    gaps: list = field(default_factory=list)  # list[GapSpec]
    datasets: list = field(default_factory=list)  # list[DatasetSpec]
    train: dict = field(default_factory=dict)  # extra learner.train TrainConfig keys for every cell

    def validate(self) -> None:
        from learner import algorithms
        from learner.train import TrainConfig

        for name in ("tasks", "algorithms", "seeds", "gaps", "datasets"):
            if not getattr(self, name):
                raise GridConfigError(f"grid needs at least one entry in {name}")
        for a in self.algorithms:
            if a not in algorithms.REGISTRY:
                raise GridConfigError(f"unknown algorithm {a!r}; choices: {sorted(algorithms.REGISTRY)}")
        if self.total_updates <= 0 or self.workers <= 0:
            raise GridConfigError("total_updates and workers must be positive")
        for a, n in self.algorithm_updates.items():
            if a not in algorithms.REGISTRY:
                raise GridConfigError(f"algorithm_updates names unknown algorithm {a!r}; choices: "
                                      f"{sorted(algorithms.REGISTRY)}")
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                raise GridConfigError(f"algorithm_updates.{a} must be a positive integer, got {n!r}")
        for a, values in self.algorithm_settings.items():
            if a not in algorithms.REGISTRY:
                raise GridConfigError(f"algorithm_settings names unknown algorithm {a!r}; choices: "
                                      f"{sorted(algorithms.REGISTRY)}")
            fields = {f.name for f in dataclasses.fields(algorithms.config_class(a))}
            unknown = sorted(set(values) - fields) if isinstance(values, dict) else ["(not a table)"]
            if unknown:
                raise GridConfigError(f"algorithm_settings.{a}: {unknown} are not {a} settings")
        if self.population < 0 or self.progress_every_s <= 0:
            raise GridConfigError("population must be >= 0 and progress_every_s positive")
        if self.ray_max_retries < 0:
            raise GridConfigError("ray_max_retries must be >= 0")
        allowed = {f.name for f in dataclasses.fields(TrainConfig)} - {
            "algorithm", "task", "sim_profile", "real_profile", "dataset", "total_updates", "run_dir", "name",
            "seeds", "resume", "threads", "progress", "separate_seeds"}
        bad = sorted(set(self.train) - allowed)
        if bad:
            raise GridConfigError(f"[train] keys {bad} are not TrainConfig options the grid passes through")
        for d in self.datasets:
            d.validate()
        for g in self.gaps:
            g.real_profile = g.real_profile or g.name

    def algo_overrides(self, algorithm: str) -> dict:
        """The learner settings one algorithm's cells get: [train] algo, then its algorithm_settings."""
        return {**self.train.get("algo", {}), **self.algorithm_settings.get(algorithm, {})}

    def updates_for(self, algorithm: str) -> int:
        """The budget of one algorithm's cells: its algorithm_updates entry, else total_updates."""
        return int(self.algorithm_updates.get(algorithm, self.total_updates))

    def cells(self) -> Iterator[Cell]:
        """Cells in a stable order (task, gap, dataset, seed, algorithm): early cells fill whole rows."""
        for task in self.tasks:
            for gap in self.gaps:
                for ds in self.datasets:
                    for seed in self.seeds:
                        for algo in self.algorithms:
                            yield Cell(task, gap, ds, algo, int(seed))


def from_dict(values: dict[str, Any]) -> GridConfig:
    values = dict(values)
    grid = dict(values.pop("grid", {}))
    try:
        gaps = [GapSpec(**g) for g in values.pop("gaps", [])]
        datasets = [DatasetSpec(**d) for d in values.pop("datasets", [])]
    except TypeError as exc:
        raise GridConfigError(f"bad gap or dataset entry: {exc}") from exc
    train = dict(values.pop("train", {}))
    if values:
        raise GridConfigError(f"unknown top-level table(s) {sorted(values)}; expected grid, gaps, datasets, train")
    names = {f.name for f in dataclasses.fields(GridConfig)}
    bad = sorted(set(grid) - names)
    if bad:
        raise GridConfigError(f"unknown [grid] key(s) {bad}")
    try:
        cfg = GridConfig(**grid, gaps=gaps, datasets=datasets, train=train)
    except TypeError as exc:
        raise GridConfigError(f"bad gap or dataset entry: {exc}") from exc
    cfg.validate()
    return cfg


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """["device=cpu", "eval_episodes=2"] -> {"device": "cpu", "eval_episodes": 2} (values read as TOML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise GridConfigError(f"expected KEY=VALUE, got {item!r}")
        key, text = (t.strip() for t in item.split("=", 1))
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text
    return out


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> GridConfig:
    """Read a grid TOML; `overrides` replace [grid] keys (the CLI's --seeds, --total-updates, ...),
    except overrides["train"], which updates the [train] table (its algo keys also beat the file's
    algorithm_settings), and overrides["gaps"] /
    overrides["datasets"], lists of names that keep only those [[gaps]] / [[datasets]] entries."""
    with open(path, "rb") as fh:
        values = tomllib.load(fh)
    overrides = dict(overrides or {})
    train = overrides.pop("train", None) or {}
    values.setdefault("train", {}).update(train)
    for settings in values.get("grid", {}).get("algorithm_settings", {}).values():
        for key in train.get("algo", {}):  # the command line's algo settings beat the file's per-algorithm ones
            settings.pop(key, None)
    for table in ("gaps", "datasets"):  # names: keep only those entries (run a grid a few rows at a time)
        keep = overrides.pop(table, None)
        if keep:
            known = [entry.get("name") for entry in values.get(table, [])]
            unknown = sorted(set(keep) - set(known))
            if unknown:
                raise GridConfigError(f"--{table} names {unknown} not in the config; choices: {known}")
            values[table] = [entry for entry in values.get(table, []) if entry.get("name") in keep]
    values.setdefault("grid", {}).update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(values)

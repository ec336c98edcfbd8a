"""Finished cells kept beside the results table, so a grid outlives its run folders.

A big grid (the full wheel-legged one is ~10 h on a 2-core machine) runs over several sittings,
and its run folders (checkpoints, datasets, logs: hundreds of MB, not committed) may not survive
between them. Each finished cell's summary.json and progress.csv (a few tens of KB) are therefore
copied into `<results_dir>/cells/<task>/<gap>/<dataset>/<algorithm>_seed<k>/`, next to the
committed table. The driver counts an archived cell as done, and the report reads it when its
run folder is gone: a fresh clone re-running the grid's command trains only what is missing and
writes the table from every finished cell.
"""

from __future__ import annotations

import json
from pathlib import Path

from learner.experiments.config import Cell, GridConfig
from protocol.atomic_file import write_atomic

FILES = ("summary.json", "progress.csv")


def archive_dir(cfg: GridConfig, cell: Cell) -> Path:
    """Where the cell's finished record lives under the results folder."""
    return cell.run_dir(Path(cfg.results_dir) / "cells")


def finished_updates(folder: Path) -> int:
    """Updates the folder's summary.json reports (-1: no readable summary)."""
    try:
        return int(json.loads((folder / "summary.json").read_text()).get("updates", -1))
    except (OSError, ValueError, AttributeError):
        return -1


def archive_cell(cfg: GridConfig, cell: Cell) -> bool:
    """Copy a cell finished at its budget into the archive (each file atomically); True if copied.
    An archived copy at the same budget is left as it is."""
    src, dst = cell.run_dir(Path(cfg.out_dir)), archive_dir(cfg, cell)
    budget = cfg.updates_for(cell.algorithm)
    if finished_updates(src) < budget or finished_updates(dst) == finished_updates(src):
        return False
    for name in FILES[::-1]:  # summary.json last: an archive with a summary is complete
        if (src / name).exists():
            write_atomic(dst / name, (src / name).read_bytes())
    return True


def source_for(cfg: GridConfig, cell: Cell) -> Path | None:
    """The folder holding the cell's finished record at its budget: the run folder, else the
    archive; None when neither has it."""
    budget = cfg.updates_for(cell.algorithm)
    for folder in (cell.run_dir(Path(cfg.out_dir)), archive_dir(cfg, cell)):
        if finished_updates(folder) >= budget:
            return folder
    return None

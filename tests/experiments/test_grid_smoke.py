"""CI smoke test: a 2x2 grid (2 algorithms x 2 seeds) end to end with a tiny budget.

Real MuJoCo envs, a real process pool (spawn), real files. Checks the table and plots appear,
that re-running skips finished cells (also from their archived copies when the run folders are
gone), and that raising the budget resumes each cell from its checkpoint instead of starting again.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from learner.experiments.cli import main
from learner.experiments.testing import TINY_GRID_TOML

pytestmark = pytest.mark.timeout(150)

def _cell(out: Path, algo: str, seed: int) -> Path:
    return out / "stand_still" / "moderate" / "medium" / f"{algo}_seed{seed}"


def _run(args: list[str], capsys) -> dict:
    rc = main([*args, "--skip-gates"])  # 20 updates cannot pass them: tests/experiments/test_gates.py
    text = capsys.readouterr().out
    assert rc == 0, text
    return json.loads(text.strip().splitlines()[-1])


def test_grid_runs_reports_skips_and_resumes(tmp_path: Path, capsys) -> None:
    out, results = tmp_path / "runs", tmp_path / "results"
    cfg = tmp_path / "grid.toml"
    cfg.write_text(TINY_GRID_TOML.format(out=out, results=results))

    first = _run([str(cfg)], capsys)
    assert first == {"done_before": 0, "ran": 4, "failed": []}
    for algo in ("h2o", "sac"):
        for seed in (0, 1):
            summary = json.loads((_cell(out, algo, seed) / "summary.json").read_text())
            assert summary["updates"] == 20 and summary["real_transitions"] == 400
            assert summary["wall_s"] > 0  # the population job's wall time, reported per row
    with open(results / "results.csv", newline="") as fh:
        rows = {r["algorithm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"h2o", "sac"}
    assert all(r["n_seeds"] == "2" and r["gap"] == "moderate" and r["dataset"] == "medium" for r in rows.values())
    table = (results / "results.md").read_text()
    assert "| task | gap | dataset | data / tuned ctrl | h2o | sac |" in table
    assert "4 of 4 cells finished" in table
    assert "Wall time of each population job, minutes" in table and "- stand_still / moderate / medium: h2o " in table
    assert all(r["wall_min"] not in ("", "nan") for r in rows.values())  # a few seconds: 0.0 min
    assert "Critic backup (soft: the target includes -alpha log pi): h2o hard, sac soft." in table
    for png in ("learning_curves.png", "sim_vs_real.png"):
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same command again: every cell is done, nothing runs, the summaries are untouched.
    before = (_cell(out, "h2o", 0) / "summary.json").stat().st_mtime_ns
    second = _run([str(cfg)], capsys)
    assert second == {"done_before": 4, "ran": 0, "failed": [], "pending": 0}
    assert (_cell(out, "h2o", 0) / "summary.json").stat().st_mtime_ns == before

    # Every finished cell is archived beside the table; with the run folders gone (a fresh clone of
    # the committed results) the same command trains nothing and the table still has every cell.
    archived = results / "cells" / "stand_still" / "moderate" / "medium" / "h2o_seed1"
    assert (archived / "summary.json").read_text() == (_cell(out, "h2o", 1) / "summary.json").read_text()
    assert (archived / "progress.csv").read_text() == (_cell(out, "h2o", 1) / "progress.csv").read_text()
    moved = tmp_path / "runs_elsewhere"
    out.rename(moved)
    assert _run([str(cfg)], capsys) == {"done_before": 4, "ran": 0, "failed": [], "pending": 0}
    assert "4 of 4 cells finished" in (results / "results.md").read_text()
    with open(results / "results.csv", newline="") as fh:
        assert {r["algorithm"]: r["real_per_seed"] for r in csv.DictReader(fh)} == {
            a: r["real_per_seed"] for a, r in rows.items()}
    shutil.rmtree(out)
    moved.rename(out)

    # A larger budget continues each cell from its checkpoint: the first 20 updates' rows are kept.
    with open(_cell(out, "sac", 1) / "progress.csv", newline="") as fh:
        old_rows = list(csv.DictReader(fh))
    import torch

    ckpt_wall = torch.load(_cell(out, "sac", 1) / "checkpoint.pt", weights_only=True)["wall_seconds"]
    third = _run([str(cfg), "--total-updates", "30", "--algorithms", "sac", "--seeds", "1", "--workers", "1"], capsys)
    assert third == {"done_before": 0, "ran": 1, "failed": []}
    with open(_cell(out, "sac", 1) / "progress.csv", newline="") as fh:
        new_rows = list(csv.DictReader(fh))
    assert [r["update"] for r in new_rows] == [r["update"] for r in old_rows] + ["30"]
    assert [r["eval/real_return"] for r in new_rows[: len(old_rows)]] == [r["eval/real_return"] for r in old_rows]
    resumed = json.loads((_cell(out, "sac", 1) / "summary.json").read_text())
    assert resumed["updates"] == 30 and resumed["wall_s"] > ckpt_wall > 0  # the first sitting's time is kept

"""Sanity gates: the three rules on real summary files, and a tiny end-to-end gate run.

The end-to-end run uses a budget far too small to learn anything, so the gates must report a
failure (exit code 1) with every seed's return in gates.json: a gate that cannot fail is no gate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learner.experiments import cli as grid_cli
from learner.experiments import gates
from learner.experiments.config import GapSpec, GridConfig
from learner.experiments.datasets import DatasetSpec
from learner.experiments.testing import TINY_GRID_TOML

pytestmark = pytest.mark.timeout(180)


def _base(tmp_path: Path, seeds=(0, 1, 2)) -> GridConfig:
    cfg = GridConfig(name="base", seeds=list(seeds), total_updates=20, out_dir=str(tmp_path / "runs"),
                     results_dir=str(tmp_path / "results"), gaps=[GapSpec("moderate")],
                     datasets=[DatasetSpec("medium")], algorithms=["h2o"])
    cfg.validate()
    return cfg


def _write_finals(grid: GridConfig, algorithm: str, finals: list[float]) -> None:
    cells = [c for c in grid.cells() if c.algorithm == algorithm]
    for cell, value in zip(cells, finals):
        d = cell.run_dir(Path(grid.out_dir))
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps({"final_real_return": value, "updates": grid.total_updates}))


def test_the_three_rules(tmp_path):
    grids = gates.gate_grids(_base(tmp_path))
    meta = {"sim": {"tuned_return": 30_000.0}, "markov": {"behaviour_return_mean": 8_000.0}}
    _write_finals(grids["sim"], "sac", [27_500, 28_000, 10_000])  # 2 of 3 seeds >= 27,000
    _write_finals(grids["markov"], "bc", [7_500, 7_000, 7_300])  # mean 7,267 >= 7,200
    _write_finals(grids["markov"], "cql", [25_000, 20_000, 28_000])
    _write_finals(grids["markov"], "h2o", [8_100, 29_000, 12_000])
    results = {r.name: r for r in gates.judge(grids, meta)}
    assert all(r.passed for r in results.values()), results
    assert results["sim_learns"].target == pytest.approx(27_000)
    assert results["h2o_stable"].per_seed == {"h2o": [8_100, 29_000, 12_000]}

    _write_finals(grids["sim"], "sac", [27_500, 10_000, 10_000])  # only 1 of 3
    _write_finals(grids["markov"], "bc", [7_000, 7_000, 7_000])  # mean below 90% of 8,000
    _write_finals(grids["markov"], "h2o", [7_999, 29_000, 12_000])  # one seed below the data
    results = {r.name: r for r in gates.judge(grids, meta)}
    assert not any(r.passed for r in results.values())
    assert "1 of 3 seeds below" in results["h2o_stable"].detail
    assert "| sim_learns | **no** |" in gates.format_table(list(results.values()))


def test_a_gate_with_no_finished_runs_fails(tmp_path):
    grids = gates.gate_grids(_base(tmp_path))
    meta = {"sim": {"tuned_return": 30_000.0}, "markov": {"behaviour_return_mean": 8_000.0}}
    assert not any(r.passed for r in gates.judge(grids, meta))


def test_a_tiny_budget_fails_the_gates_and_the_grid_does_not_run(tmp_path, capsys):
    toml = tmp_path / "grid.toml"
    toml.write_text(TINY_GRID_TOML.format(out=tmp_path / "runs", results=tmp_path / "results"))
    assert grid_cli.main([str(toml), "--seeds", "0"]) == 1
    captured = capsys.readouterr()
    assert "| sim_learns | **no** |" in captured.out and "a sanity gate failed" in captured.err
    report = json.loads((tmp_path / "runs" / "gates" / "gates.json").read_text())
    assert [r["name"] for r in report] == ["sim_learns", "offline_floor", "h2o_stable"]
    per_seed = {a: v for r in report for a, v in r["per_seed"].items()}
    assert sorted(per_seed) == ["bc", "cql", "h2o", "sac"] and all(len(v) == 1 for v in per_seed.values())
    assert not (tmp_path / "runs" / "stand_still").exists()  # the grid's own cells never started
    assert gates.main([str(toml), "--seeds", "0"]) == 1  # the gates alone: finished cells are reused


def test_gates_train_each_algorithm_to_the_grids_own_budget(tmp_path):
    base = _base(tmp_path)
    base.algorithm_updates = {"cql": 10}
    grids = gates.gate_grids(base)
    assert grids["markov"].updates_for("cql") == 10 and grids["markov"].updates_for("h2o") == 20
    assert grids["sim"].updates_for("sac") == 20


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (read from /proc: the spawned pool workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    """The process's command line ("" once it has gone: a child may exit between listing and reading)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("command", [["learner.experiments.gates"], ["learner.experiments", "--skip-gates"]])
def test_kill_stops_the_workers_too(tmp_path, command):
    """`kill <pid>` of a gates or grid command must not leave its workers training unattended (they
    would race the same command run again on the same cells)."""
    toml = tmp_path / "grid.toml"
    toml.write_text(TINY_GRID_TOML.format(out=tmp_path / "runs", results=tmp_path / "results")
                    .replace("total_updates = 20", "total_updates = 1000000"))
    root = Path(__file__).resolve().parents[2]
    workers: list[int] = []
    proc = subprocess.Popen([sys.executable, "-m", command[0], str(toml), *command[1:]], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
            if workers and any((tmp_path / "runs").rglob("config.toml")):  # training has started
                break
            time.sleep(0.2)
        assert workers and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no workers"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "a worker outlived the killed command"
    finally:
        for pid in [proc.pid, *workers]:  # a failing run must not leave training processes behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()

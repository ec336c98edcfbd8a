"""Strict JSON: what the programs write parses with a parser that refuses NaN and Infinity.

Unit checks of protocol.strict_json, the onboard stats file with statistics that do not exist
yet, and every JSON file a short robot run writes (the end-to-end run with the learner checks
the learner's files the same way: tests/serve/test_end_to_end.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onboard.status import StatusReporter
from protocol import strict_json

REPO = Path(__file__).resolve().parents[2]


def strict_parse_tree(root: Path) -> int:
    """Parse every *.json and every line of every *.jsonl under `root` strictly; count them."""
    n = 0
    for path in sorted(root.rglob("*.json")):
        strict_json.loads(path.read_text())
        n += 1
    for path in sorted(root.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            strict_json.loads(line)
            n += 1
    return n


def test_non_finite_values_become_null_and_numpy_values_plain() -> None:
    value = {"a": math.nan, "b": [np.float32("inf"), -math.inf, 1.5], "c": np.int64(3),
             "d": np.array([[1.0, np.nan]]), "e": (True, None, "x"), "f": np.bool_(True)}
    text = strict_json.dumps(value)
    assert strict_json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": 3, "d": [[1.0, None]],
                                       "e": [True, None, "x"], "f": True}


def test_unknown_objects_need_a_default_and_the_parser_refuses_constants() -> None:
    with pytest.raises(TypeError):
        strict_json.dumps({"p": Path("x")})
    assert strict_json.loads(strict_json.dumps({"p": Path("x")}, default=str)) == {"p": "x"}
    for bad in ('{"x": NaN}', "[Infinity]", "-Infinity"):
        with pytest.raises(ValueError):
            strict_json.loads(bad)
    assert json.loads('{"x": NaN}')["x"] != json.loads('{"x": NaN}')["x"]  # what Python alone accepts


def test_stats_file_writes_null_for_statistics_not_known_yet(tmp_path: Path) -> None:
    stats = tmp_path / "onboard_stats.json"
    reporter = StatusReporter(lambda: {"rate_hz": 0.0, "period_error_ms": {"p99": math.nan, "max": math.nan},
                                       "trials": {"mean_return": np.float64("nan")}, "mode": "PASSIVE"},
                              str(stats), interval_s=60)
    reporter.report()
    text = stats.read_text()
    assert "NaN" not in text
    assert strict_json.loads(text)["period_error_ms"] == {"p99": None, "max": None}


@pytest.mark.timeout(60)
def test_every_json_a_short_robot_run_writes_is_strict(tmp_path: Path) -> None:
    stats = tmp_path / "run" / "onboard_stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "onboard.run", "--run.task", "stand_still", "--run.virtual_robot", "nominal",
         "--run.lockstep", "true", "--run.duration_s", "1", "--run.stream", "false",
         "--run.stats_file", str(stats), "--run.status_interval_s", "0.2"],
        cwd=REPO, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert strict_parse_tree(tmp_path) >= 1
    data = strict_json.loads(stats.read_text())
    assert data["ticks"] > 0 and data["mode"] == "STAND"

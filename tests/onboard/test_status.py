"""Status line content and the atomic JSON stats file."""

from __future__ import annotations

import json
import os

from onboard.status import StatusReporter, status_line, write_json_atomic


def test_status_line_has_rate_error_mode_policy_link_and_spool():
    line = status_line({"rate_hz": 200.0, "period_error_ms": {"p99": 0.04, "max": 0.2}, "compute_ms": {"p99": 0.18},
                        "missed_deadlines": 0, "mode": "POLICY", "policy_version": 7, "state_age_ms": 1.2,
                        "learner": {"connected": True, "spool_rows": 12}})
    for part in ("200.0 Hz", "err p99 0.040", "tick p99 0.180", "missed 0", "POLICY", "v7", "learner up", "spool 12"):
        assert part in line


def test_stats_file_is_replaced_whole_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "s" / "stats.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"a": 2, "nested": {"b": [1, 2]}})
    assert json.loads(path.read_text()) == {"a": 2, "nested": {"b": [1, 2]}}
    assert os.listdir(path.parent) == ["stats.json"]


def test_reporter_counts_write_errors_instead_of_raising(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rep = StatusReporter(lambda: {"ticks": 1}, stats_file=str(blocker / "stats.json"))
    assert rep.report() == {"ticks": 1}
    assert rep.write_errors == 1


def test_unserialisable_values_do_not_break_the_file(tmp_path):
    path = tmp_path / "stats.json"
    write_json_atomic(str(path), {"obj": object(), "x": float("nan")})
    assert "obj" in json.loads(path.read_text().replace("NaN", "null"))  # written via str()

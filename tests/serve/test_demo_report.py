"""The demo's report from a synthetic run folder (learner/demo_report.py): trials table, the version
the run ends on against the best seen, figures with captions, times relative to the run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from learner.demo_report import RunData, ending_summary, write_report

T0 = 1_000_000.0


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def trial(version: int, incumbent: int, outcome: str, returns: list[float], ref: list[float], t: float) -> dict:
    return {"t": T0 + t, "robot": "robot0", "version": version, "incumbent": incumbent, "outcome": outcome,
            "reason": "test", "returns": returns, "lengths": [100] * len(returns), "reference_returns": ref,
            "reference_lengths": [100] * len(ref), "catches": 2, "falls": 0,
            "p_not_worse": 0.1 if outcome == "promoted" else 0.9, "p_worse": 0.9 if outcome == "promoted" else 0.05,
            "duration_s": 30.0, "t_us": 0}


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "demo"
    learner = run / "learner"
    eps = [{"t": T0 + 10 + i, "robot": "robot0", "stream": "s", "return": 28500.0, "length": 1000,
            "policy_version": -1, "terminated": False} for i in range(3)]
    for v, ret, start in ((1, 1000.0, 30), (2, 3000.0, 60), (3, 900.0, 90)):
        eps += [{"t": T0 + start + i, "robot": "robot0", "stream": "s", "return": ret + 10 * i, "length": 50,
                 "policy_version": v, "terminated": False} for i in range(6)]
    jsonl(learner / "episodes.jsonl", eps)
    jsonl(learner / "metrics.jsonl", [
        {"t": T0 + t, "updates": 100 * t, "updates_per_s": 10.0, "policy_version": min(3, t // 30),
         "robots": {"robot0": {"policy_version": v, "link": "up"}}, "sim_return": 20000.0, "robot_return": 1.0}
        for t, v in ((5, -1), (35, 1), (65, 2), (95, 3), (120, 2))])
    jsonl(learner / "published.jsonl", [{"t": T0 + 30 * v, "version": v, "updates": 1, "gate_return": 20000.0 + v}
                                        for v in (1, 2, 3)])
    jsonl(learner / "trials.jsonl", [trial(1, -1, "promoted", [1000.0] * 5, [], 40),
                                     trial(2, 1, "promoted", [3000.0] * 5, [1000.0] * 6, 70),
                                     trial(3, 2, "rolled_back", [900.0] * 5, [3000.0] * 6, 100)])
    (learner / "policies").mkdir(parents=True)
    (learner / "policies" / "deployable.json").write_text(json.dumps(
        {"version": 2, "mean_return": 3000.0, "episodes": 6, "outcome": "promoted"}))
    (run / "onboard_stats.json").write_text(json.dumps({
        "policy_version": 2, "mode": "POLICY", "ticks": 5000, "loop_started_s": 5000.0,
        "safety_transitions": [{"t_s": 5012.5, "from": "POLICY", "to": "STAND", "reason": "catch", "source": "controller"}]}))
    return run


def test_report_shows_trials_the_ending_and_captioned_figures(tmp_path):
    run = make_run(tmp_path)
    cfg = SimpleNamespace(task="stand_still", profile="moderate", serve_config="x.toml", algorithm="", lockstep=True)
    report = write_report(run, cfg, T0, False, {"robot_version": 2, "how": "pinned at the end"}).read_text()
    assert "3 trials: 2 promoted, 1 rolled back" in report
    assert "| v3 | v2 | **rolled back** | 5 | 900 | 3,000 (6) |" in report
    assert "The run ends on v2, the best version measured on the robot" in report and "100 %" in report
    assert "| 3 | 20,003 | rolled back | 6 |" in report  # the per-version table says what the robot did
    assert "- 12.5 s: POLICY -> STAND" in report  # since the robot's loop started, not since boot
    assert report.count("*What it measures:") == 3
    for name in ("returns", "trials", "policy_versions"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 5000
    assert not (run / "plots" / "timing.png").exists()  # lock-step: no flat timing panel


def test_ending_against_the_best_version_seen(tmp_path):
    run = make_run(tmp_path)
    (run / "learner" / "policies" / "deployable.json").write_text(json.dumps({"version": 1, "mean_return": 1000.0}))
    text, figures = ending_summary(RunData.load(run, {"robot_version": 1}))
    assert figures["best_seen"] == 2 and round(figures["ratio"], 2) == 0.34 and "34 %" in text

"""Smoke test of the demo's real CLI with a tiny budget: it collects data, runs learner and robot;
Ctrl-C (SIGINT) stops both cleanly and the report with plots is still written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(170), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

TINY_SERVE = """
algorithm = "{algorithm}"
batch_real = 16
batch_sim = 16
disc_batch = 16
disc_hidden = "16-16"
export_every_updates = 100
hidden = "16-16"
min_real_rows = 64
obs_centre_rows = 64
status_every_s = 1.0
warmup_sim_steps = 200
"""


# cql: a real-only learner has no simulator return; its progress lines once crashed the demo
@pytest.mark.parametrize("algorithm", ["h2o", "cql"])
def test_demo_runs_and_reports(tmp_path, algorithm):
    serve_cfg = tmp_path / "serve_tiny.toml"
    serve_cfg.write_text(TINY_SERVE.format(algorithm=algorithm))
    run_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "learner.demo", "--minutes", "5", "--dataset",
         str(tmp_path / "data.hdf5"), "--dataset-steps", "500", "--run-dir", str(run_dir),
         "--serve-config", str(serve_cfg), "--status-every-s", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    episodes = run_dir / "learner" / "episodes.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a robot episode
        if episodes.exists() and episodes.stat().st_size > 0 and \
                (run_dir / "learner" / "metrics.jsonl").exists():
            break
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=90)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"report: {run_dir / 'report.md'}" in r.stdout
    assert "updates" in r.stdout and "sim return" in r.stdout  # progress lines were printed
    report = (run_dir / "report.md").read_text()
    assert "Robot episode return by policy version" in report and "(interrupted)" in report
    assert "## What happened" in report
    assert "| controller |" in report  # the robot's episodes arrived and were counted
    assert "## On-robot trials" in report and "What it measures" in report
    for name in ("returns", "policy_versions", "trials"):
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 1000
    assert not (run_dir / "plots" / "timing.png").exists()  # lock-step: no flat timing panel
    # both children were stopped cleanly (SIGINT -> exit 0) and the robot's data arrived
    assert "learner exited with 0" in r.stderr and "robot exited with 0" in r.stderr
    assert (tmp_path / "data.hdf5").exists() and (run_dir / "keys" / "robot0.key_secret").exists()


def test_best_held_ranks_the_versions_a_robot_still_holds_by_their_robot_episodes(tmp_path):
    """The demo's fallback when the robot no longer holds the learner's deployable version."""
    import json

    from learner.demo import best_held

    path = tmp_path / "episodes.jsonl"
    rows = [(3, 900.0)] * 5 + [(4, 2000.0)] * 5 + [(5, 5000.0)] * 4 + [(6, 1500.0)] * 6 + [(9, 9000.0)] * 9
    path.write_text("".join(json.dumps({"policy_version": v, "return": r}) + "\n" for v, r in rows)
                    + '{"policy_version": 4, "ret')  # a torn last line
    assert best_held(path, {3, 4, 5, 6}) == 4  # v5 has too few episodes, v9 is not held
    assert best_held(path, {3}) == 3
    assert best_held(path, {7}) is None and best_held(tmp_path / "missing.jsonl", {3}) is None


def test_demo_simulator_carries_the_robots_bus_latency(monkeypatch):
    """The demo's learner trusts a simulator with the one control step of bus latency a team
    measures on its robot (and nothing else of the hidden profile): with the latency-free nominal
    simulator its policies ended at 72-88 % of the tuned controller (3 runs), with it at 63-106 %
    (3 runs); offline, from the same data, H2O reached 101 % with it and 10 % without."""
    import tomllib

    from learner.service.config import ServeConfig
    from sim_models.profiles import load_profile

    monkeypatch.chdir(ROOT)  # the demo starts the learner in the repository root
    raw = tomllib.loads((ROOT / "configs" / "serve_demo.toml").read_text())
    cfg = ServeConfig(**{k: v for k, v in raw.items() if k != "algo"})
    sim, hidden = load_profile(cfg.sim_profile), load_profile("moderate")
    assert sim.latency_steps == hidden.latency_steps == 1
    assert sim.base_mass_scale == 1.0 and sim.com_offset_m == (0.0, 0.0, 0.0)  # the body stays nominal


def test_demo_sets_its_simulators_latency_from_the_offline_data(tmp_path, monkeypatch):
    """'auto': the latency measured in the robot's offline data goes into the learner config's
    simulator; the same latency as the config's writes nothing, a different one a profile beside
    the run, 'config' keeps the config's and noise-free data (ambiguous) falls back to it."""
    from learner.demo import DemoConfig, simulator_profile
    from learner.service.config import ConfigError
    from sim_models.collect import CollectConfig, collect
    from sim_models.datasets import save_d4rl
    from sim_models.profiles import load_profile

    monkeypatch.chdir(ROOT)
    task = "stand_still:action_history=2"

    def data(profile: str, **kw) -> Path:
        arrays, meta = collect(CollectConfig(task=task, profile=profile, steps=2000, **kw))
        return save_d4rl(tmp_path / f"{Path(profile).stem}_{len(kw)}.hdf5", arrays, meta)

    cfg = DemoConfig(task=task, task_options="").validate()
    path, text = simulator_profile(cfg, data("moderate"), tmp_path)
    assert path == "" and text.startswith("`configs/experiments/profiles/nominal_latency1.toml`, its latency_steps "
                                          "= 1 (measured from the offline data, latency 1 control step(s)")
    assert not (tmp_path / "sim_profile.toml").exists()

    path, text = simulator_profile(cfg, data("severe"), tmp_path)
    profile = load_profile(path)
    assert path == str(tmp_path / "sim_profile.toml") and "latency_steps = 2 (measured" in text
    assert profile.latency_steps == 2 and profile.base_mass_scale == 1.0 and profile.com_offset_m == (0.0, 0.0, 0.0)

    assert simulator_profile(DemoConfig(task=task, sim_latency="config"), data("severe"), tmp_path)[0] == ""
    path, _ = simulator_profile(DemoConfig(task=task, sim_latency="0"), data("severe"), tmp_path)
    assert load_profile(path).latency_steps == 0
    path, text = simulator_profile(cfg, data("severe", behaviour="expert", noise=0.0), tmp_path)
    assert path == "" and "ambiguous" in text
    with pytest.raises(ConfigError, match="sim_latency"):
        DemoConfig(sim_latency="two").validate()

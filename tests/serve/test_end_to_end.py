"""End to end on one machine: serve.py trains tiny networks, onboard/run.py drives a lock-step
virtual robot (hidden 'moderate' profile) and streams; the robot swaps to policy v >= 2 and every
transition it recorded is in the learner's store exactly once."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from learner.service.store import RealStore
from protocol import strict_json


pytestmark = [pytest.mark.timeout(170), pytest.mark.slow]

TINY = ["--hidden", "16-16", "--disc-hidden", "16-16", "--batch-real", "16", "--batch-sim", "16",
        "--disc-batch", "16", "--warmup-sim-steps", "200", "--min-real-rows", "64", "--obs-centre-rows", "64",
        "--export-every-updates", "100", "--checkpoint-every-s", "0", "--policy-resend-s", "1"]


def test_robot_streams_learner_trains_and_pushes(serve_process, keys, tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    dataset = tmp_path / "offline.hdf5"
    subprocess.run([sys.executable, "-m", "sim_models.collect", "--profile", "moderate",
                    "--steps", "500", "--out", str(dataset)], cwd=root, check=True,
                   capture_output=True, timeout=60)
    srv = serve_process([*TINY, "--datasets", str(dataset)])
    srv.start()
    stats_file = tmp_path / "onboard_stats.json"
    robot = subprocess.run(
        [sys.executable, str(root / "onboard" / "run.py"), "--run.task", "stand_still",
         "--run.virtual_robot", "moderate", "--run.lockstep", "true", "--run.duration_s", "35",
         "--run.stats_file", str(stats_file), "--run.status_interval_s", "5",
         "--learner.endpoint", srv.endpoint, "--learner.robot_id", "robot1",
         "--learner.plaintext", "false",
         "--learner.client_secret_key_file", str(keys["robot1_secret"]),
         "--learner.server_public_key_file", str(keys["learner_public"]),
         "--learner.spool_dir", str(tmp_path / "spool"), "--learner.heartbeat_interval_s", "0.2"],
        cwd=root, capture_output=True, text=True, timeout=90)
    assert robot.returncode == 0, robot.stdout[-3000:] + robot.stderr[-3000:]
    assert srv.stop() == 0, srv.log()
    stats = json.loads(stats_file.read_text())
    # the learner trained and pushed; the robot validated and swapped to at least v2
    assert stats["policies"]["accepted"] >= 2, stats["policies"]
    assert stats["policy_version"] >= 2
    assert "policy v2 accepted" in srv.log_path.read_text()
    # every recorded transition arrived, exactly once, in order
    recorded = stats["transitions"]["recorded"]
    assert recorded > 0 and stats["learner"]["spool_rows"] == 0
    assert stats["learner"]["rows_acked"] == recorded
    store = RealStore(srv.run_dir / "store")
    store.open()
    batches = [b for b in store.iter_batches() if b.stream == stats["learner"]["stream_id"]]
    store.close()
    seqs = np.concatenate([np.arange(b.first_seq, b.first_seq + b.n) for b in batches])
    np.testing.assert_array_equal(seqs, np.arange(recorded))
    # the run folder has what the status view promises
    metrics = [json.loads(line) for line in (srv.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["updates"] >= 200 and metrics[-1]["policy_version"] >= 2
    assert any("robot1" in m["robots"] for m in metrics)
    assert list((srv.run_dir / "policies").glob("policy-v00002.onnx"))
    assert (srv.run_dir / "checkpoint.pt").exists()
    from learner.service.status import plot_run

    assert all(p.stat().st_size > 1000 for p in plot_run(srv.run_dir))
    # every JSON file either program wrote parses with a strict parser (no NaN / Infinity)
    written = sorted(tmp_path.rglob("*.json")) + sorted(tmp_path.rglob("*.jsonl"))
    assert {p.name for p in written} >= {"onboard_stats.json", "metrics.jsonl", "published.jsonl", "episodes.jsonl"}
    for path in written:
        for line in ([path.read_text()] if path.suffix == ".json" else path.read_text().splitlines()):
            strict_json.loads(line)

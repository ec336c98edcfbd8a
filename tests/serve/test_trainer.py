"""The trainer's contract: it exports and publishes every K updates, checkpoints atomically and
resumes in place (weights, optimiser state, counters, policy version, re-published policy)."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import torch

from learner.service.config import ServeConfig
from learner.service.ingest import RealFeed
from learner.service.publisher import Publisher
from learner.service.trainer import Trainer


def _offline(n: int = 300) -> dict:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    return {"observations": obs, "actions": rng.uniform(-1, 1, (n, 1)).astype(np.float32),
            "rewards": rng.standard_normal(n).astype(np.float32),
            "next_observations": obs + 0.01, "terminals": np.zeros(n, np.float32)}


def _cfg(tmp_path, **kw) -> ServeConfig:
    # cql trains on real data only: no sim worker processes, so the test stays small
    base = dict(run_dir=str(tmp_path / "run"), algorithm="cql", hidden="16-16", batch_real=16,
                batch_sim=16, min_real_rows=32, obs_centre_rows=32, export_every_updates=10, max_updates=30,
                checkpoint_every_s=0.0, real_capacity=1000)
    base.update(kw)
    return ServeConfig(**base).validate()


def test_exports_checkpoints_and_resumes(tmp_path):
    pub = Publisher()
    feed = RealFeed()
    streamed = _offline(50)
    feed.put({"obs": streamed["observations"], "act": streamed["actions"],
              "rew": streamed["rewards"], "next_obs": streamed["next_observations"],
              "terminated": np.zeros(50, bool)})
    tr = Trainer(_cfg(tmp_path), pub, feed, [_offline()])
    tr.run(threading.Event())
    assert tr.stats.updates == 30 and tr.stats.policy_version == 3
    assert len(tr.real) == 350  # offline + streamed rows
    blob = pub.latest
    assert blob.version == 3 and hashlib.sha256(blob.onnx).hexdigest() == blob.sha256
    assert blob.metadata["h2o.version"] == "3" and blob.metadata["h2o.task"] == "stand_still"
    assert (tmp_path / "run" / "policies" / "policy-v00003.onnx").read_bytes() == blob.onnx
    assert not list((tmp_path / "run").glob(".*tmp"))  # atomic writes leave no temp files
    weights = {k: v.clone() for k, v in tr.algo.policy.state_dict().items()}

    pub2 = Publisher()
    tr2 = Trainer(_cfg(tmp_path, max_updates=40), pub2, RealFeed(), [_offline()])
    assert tr2.try_resume()
    assert tr2.stats.updates == 30 and tr2.stats.policy_version == 3
    assert pub2.latest.version == 3 and pub2.latest.sha256 == blob.sha256  # re-published
    for k, v in tr2.algo.policy.state_dict().items():
        torch.testing.assert_close(v, weights[k])
    opt_state = tr2.algo.critic_opt.state_dict()["state"]
    assert opt_state and all(int(s["step"]) == 30 for s in opt_state.values())
    tr2.cfg.resume = False  # already resumed above; continue: v4 at update 40
    tr2.run(threading.Event())
    assert tr2.stats.updates == 40 and tr2.stats.policy_version == 4 and pub2.latest.version == 4


def test_publish_gate_holds_back_or_publishes_each_export(tmp_path):
    pub = Publisher()
    tr = Trainer(_cfg(tmp_path, publish_gate_steps=50, obs_centre_rows=0), pub, RealFeed(), [_offline()])
    tr.run(threading.Event())
    # every export either passed the gate (published, contiguous versions) or was held back
    assert tr.stats.policy_version + tr.stats.gated == 3
    assert pub.version == tr.stats.policy_version
    assert len(list((tmp_path / "run" / "policies").glob("*.onnx"))) == tr.stats.policy_version


def test_pretraining_then_only_improving_policies_are_published(tmp_path):
    import json

    pub = Publisher()
    cfg = _cfg(tmp_path, pretrain_updates=25, export_every_updates=5, max_updates=45, obs_centre_rows=0,
               publish_gate_improve=True, publish_gate_steps=0)
    tr = Trainer(cfg, pub, RealFeed(), [_offline()])
    tr.run(threading.Event())
    rows = [json.loads(x) for x in (tmp_path / "run" / "published.jsonl").read_text().splitlines()]
    # nothing before update 25; exports at 25, 30, ..., 45: each published or held back
    assert rows and rows[0]["updates"] >= 25 and tr.stats.policy_version + tr.stats.gated == 5
    assert [r["version"] for r in rows] == list(range(1, tr.stats.policy_version + 1))
    gate = [r["gate_return"] for r in rows]
    assert all(b > a for a, b in zip(gate, gate[1:]))  # each published one beat the previous
    assert tr.stats.best_gate_return == gate[-1]


def test_robot_returns_split_episodes_and_attribute_versions():
    from learner.service.status import RobotReturns

    rr = RobotReturns()
    n = 10
    cols = {"rew": np.ones(n, np.float32), "terminated": np.zeros(n, bool),
            "truncated": np.zeros(n, bool), "policy_version": np.array([-1] * 3 + [2] * 7)}
    cols["terminated"][4] = True  # episode 1: rows 0..4 (3 controller, 2 policy)
    rr.add("r", "s", cols)
    cols2 = dict(cols, terminated=np.zeros(n, bool), truncated=np.eye(1, n, n - 1, dtype=bool)[0],
                 policy_version=np.full(n, 2))
    rr.add("r", "s", cols2)  # episode 2: rows 5..9 of batch 1 + all 10 of batch 2
    assert [(e["return"], e["length"], e["policy_version"]) for e in rr.episodes] == \
        [(5.0, 5, -1), (15.0, 15, 2)]
    assert rr.recent("r") == 10.0 and np.isnan(rr.recent("other"))


def test_status_show_prints_latest_row(tmp_path, capsys):
    import json

    from learner.service.status import main as status_main

    assert status_main(["show", str(tmp_path)]) == 1  # no metrics yet
    row = {"t": 0.0, "updates": 42, "updates_per_s": 3.5, "real_rows": 7, "sim_rows": 9,
           "policy_version": 2, "sim_return": 10.0, "robot_return": 5.0, "trainer_state": "training",
           "robots": {"robot0": {"link": "up", "policy_version": 2, "return": 5.0}}}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(row) + "\n" + '{"torn')
    assert status_main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "upd 42 (3.5/s)" in out and "robot0:up v2" in out and "sim ret 10 robot ret 5" in out


def test_sim_workers_are_paced_to_the_updates(tmp_path):
    """H2O's sim worker collects about sim_steps_per_update steps per update, not as fast as it can:
    unpaced it took the CPU the updates needed (18 sim steps per update in the demo)."""
    from learner.service.trainer import SIM_CHUNK_STEPS

    cfg = _cfg(tmp_path, algorithm="h2o", disc_hidden="16-16", disc_batch=16, warmup_sim_steps=200, obs_centre_rows=0,
               sim_steps_per_update=0.5, max_updates=1200, export_every_updates=10_000)
    tr = Trainer(cfg, Publisher(), RealFeed(), [_offline()])
    tr.run(threading.Event())
    budget = cfg.warmup_sim_steps + cfg.sim_steps_per_update * tr.stats.updates  # 800
    lead = 2 * SIM_CHUNK_STEPS * cfg.sim_workers
    assert tr.stats.updates == 1200
    assert budget - lead <= tr.stats.sim_steps <= budget + lead, tr.stats.sim_steps

"""On-robot trials end to end on real sockets: the robot program on a lock-step virtual robot and
the learner's server with its robot evidence (learner/service/evidence.py).

A policy that is worse on the robot is rolled back by the robot itself, is never pushed to it
again and never becomes the deployable policy; no new version is pushed while a trial runs.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from learner.service import wire
from learner.service.evidence import RobotEvidence
from learner.service.ingest import Ingest
from learner.service.publisher import PolicyBlob, Publisher
from learner.service.server import LearnerServer, LinkConfig
from learner.service.sessions import HelloPolicy
from learner.service.store import RealStore
from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.safety import Mode

pytestmark = pytest.mark.timeout(120)

BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0


@pytest.fixture
def learner(tmp_path, endpoint):
    ctx = zmq.Context()
    store = RealStore(tmp_path / "store")
    store.open()
    evidence = RobotEvidence(tmp_path / "learner")
    server = LearnerServer(LinkConfig(bind=endpoint, plaintext=True, heartbeat_timeout_s=2.0, policy_resend_s=0.5),
                           store, HelloPolicy(wire.schema_hash(), 4, 1, "stand_still"), Publisher(),
                           Ingest(store, 4, 1, sink=lambda *a: None), context=ctx, evidence=evidence)
    server.start_socket()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(10)
    server.close()
    store.close()
    ctx.destroy(linger=0)


def publish(server, version: int, **policy) -> bytes:
    data = mlp_policy_bytes(4, 1, version=version, hidden=0, **policy)
    server.publisher.publish(PolicyBlob(version=version, onnx=data, sha256=sha256_hex(data)))
    return data


def pushes(server, version: int, after: float = 0.0) -> int:
    return sum(1 for v, _robot, t in server.policy_push_log if v == version and t >= after)


def test_a_policy_worse_on_the_robot_is_rolled_back_and_never_deployable(make_app, wait_for, endpoint, learner):
    def configure(cfg):
        cfg.trials.enabled, cfg.trials.min_episodes, cfg.trials.max_episodes = True, 2, 6
        cfg.policy.stall_ms = 1000.0  # a loaded test machine is no reason to quarantine a policy here

    app = make_app(stream=True, endpoint=endpoint, respawn_s=0.3, catch_tilt_rad=0.25, policy_retry_s=0.1,
                   recover_after_s=0.1, configure=configure)
    evidence = learner.evidence
    stop = threading.Event()
    loop = threading.Thread(target=app.run, args=(stop,))
    loop.start()
    try:
        assert wait_for(lambda: app.streamer.connected, 20)
        good = publish(learner, 1, linear_gain=BALANCE_GAIN)
        assert wait_for(lambda: app.supervisor.trials.trial is not None and app.loop.policy_version == 1, 20)
        publish(learner, 2, linear_gain=BALANCE_GAIN * 0.2, mean_bias=0.3)  # tips the robot: caught often
        assert wait_for(lambda: evidence.deployable == 1, 40)  # v1 promoted (no incumbent measured)
        promoted_at = time.time()
        assert pushes(learner, 2) == pushes(learner, 2, after=promoted_at - 0.5)  # held during v1's trial

        assert wait_for(lambda: 2 in evidence.robots["robot0"].rolled_back, 40)
        rolled_back_at = time.time()
        verdict = app.supervisor.trials.verdicts[-1]
        assert verdict.candidate == 2 and verdict.outcome == "rolled_back" and verdict.catches >= 1
        assert np.mean(verdict.returns) < np.mean(verdict.reference)
        assert wait_for(lambda: app.loop.policy_version == 1 and app.fsm.mode is Mode.POLICY, 10)
        time.sleep(1.5)  # three resend periods, many heartbeats: v2 is not offered again
        assert pushes(learner, 2, after=rolled_back_at) == 0
        assert app.loop.policy_version == 1 and evidence.deployable == 1
    finally:
        stop.set()
        loop.join(10)

    policies = evidence.policy_dir
    assert (policies / "deployable.onnx").read_bytes() == good
    info = json.loads((policies / "deployable.json").read_text())
    assert info["version"] == 1 and info["outcome"] == "promoted" and info["episodes"] >= 2
    assert info["sha256"] == sha256_hex(good) and len(info["returns"]) == info["episodes"]
    assert info["versions"]["2"]["outcome"] == "rolled_back"
    rows = [json.loads(line) for line in (evidence.run_dir / "trials.jsonl").read_text().splitlines()]
    assert [(r["version"], r["outcome"]) for r in rows] == [(1, "promoted"), (2, "rolled_back")]
    assert rows[1]["p_worse"] is not None and rows[1]["reference_returns"]

    again = RobotEvidence(evidence.run_dir)  # a restarted learner reads its evidence back
    assert again.deployable == 1 and 2 in again.robots["robot0"].rolled_back

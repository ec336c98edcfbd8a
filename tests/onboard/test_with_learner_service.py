"""The onboard app against the real learner service (learner/service/server.py) on loopback.

Checks the two halves of the protocol agree: HELLO/WELCOME, TRANSITIONS stored exactly once and
acked out of the robot's spool, a policy published on the learner validated and activated on the
robot, POLICY_RESULT recorded by the learner.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from learner.service import wire
from learner.service.ingest import Ingest
from learner.service.publisher import PolicyBlob, Publisher
from learner.service.server import LearnerServer, LinkConfig
from learner.service.sessions import HelloPolicy
from learner.service.store import RealStore
from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.safety import Mode

pytestmark = pytest.mark.timeout(90)

BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0


def test_stream_and_policy_push_through_the_learner_service(make_app, wait_for, endpoint, tmp_path):
    ctx = zmq.Context()
    store = RealStore(tmp_path / "store")
    store.open()
    stored: list[int] = []
    ingest = Ingest(store, 4, 1, sink=lambda *args: stored.append(len(args[-1]["rew"])))  # (..., columns)
    publisher = Publisher()
    server = LearnerServer(LinkConfig(bind=endpoint, plaintext=True, heartbeat_timeout_s=2.0, policy_resend_s=0.5),
                           store, HelloPolicy(wire.schema_hash(), 4, 1, "stand_still"), publisher, ingest, context=ctx)
    server.start_socket()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        app = make_app(stream=True, endpoint=endpoint)
        assert wait_for(lambda: app.streamer.connected)
        data = mlp_policy_bytes(4, 1, version=3, hidden=0, linear_gain=BALANCE_GAIN)
        publisher.publish(PolicyBlob(version=3, onnx=data, sha256=sha256_hex(data)))
        stop = threading.Event()
        loop = threading.Thread(target=app.run, args=(stop,))
        loop.start()
        try:
            assert wait_for(lambda: app.fsm.mode is Mode.POLICY and app.loop.policy_version == 3, 20)
        finally:
            stop.set()
            loop.join(10)
        app.recorder.flush()
        total = app.recorder.rows_recorded
        assert wait_for(lambda: app.streamer.spool.pending_rows == 0 and sum(stored) == total, 20)
        snap = server.snapshot()["robots"][app.cfg.learner.robot_id]
        assert snap["rows"] == total  # stored once each; wire resends (if any) were deduplicated
        assert wait_for(lambda: server.sessions.by_robot["robot0"].last_policy_result == "accepted")
    finally:
        server.stop()
        thread.join(10)
        server.close()
        store.close()
        ctx.destroy(linger=0)


def test_a_damaged_spool_record_does_not_stall_the_stream(make_app, wait_for, endpoint, tmp_path):
    """Batches spooled by an earlier run, one of them damaged on disk: the restarted robot declares
    the hole in HELLO, the learner records it as lost, stores the rest and ACKs past it, and the
    spool drains (before, the learner refused the rows after the hole as a gap, for ever)."""
    from onboard.spool import Spool
    from protocol.messages import Transitions, encode

    spool_dir = tmp_path / "spool"
    old = Spool(str(spool_dir))
    rng = np.random.default_rng(0)
    for k in range(4):
        rows = 10
        msg = Transitions(stream_id="robot0-1", first_seq=10 * k, obs=rng.normal(size=(rows, 4)).astype(np.float32),
                          act=np.zeros((rows, 1), np.float32), rew=np.ones(rows, np.float32),
                          next_obs=rng.normal(size=(rows, 4)).astype(np.float32),
                          terminated=np.zeros(rows, bool), truncated=np.zeros(rows, bool),
                          policy_version=np.full(rows, -1, np.int64), logp=np.zeros(rows, np.float32),
                          source=np.ones(rows, np.uint8), t_us=np.arange(rows, dtype=np.int64) + 10 * k)
        old.append("robot0-1", 10 * k, 10 * k + rows - 1, encode(msg))
    damaged = old.records[2]  # rows 20..29
    old.close()
    seg = spool_dir / sorted(p.name for p in spool_dir.iterdir())[0]
    data = bytearray(seg.read_bytes())
    data[damaged.offset + 20] ^= 0x10
    seg.write_bytes(bytes(data))

    ctx = zmq.Context()
    store = RealStore(tmp_path / "store")
    store.open()
    ingest = Ingest(store, 4, 1, sink=lambda *args: None)
    server = LearnerServer(LinkConfig(bind=endpoint, plaintext=True, heartbeat_timeout_s=2.0),
                           store, HelloPolicy(wire.schema_hash(), 4, 1, "stand_still"), Publisher(), ingest,
                           context=ctx)
    server.start_socket()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        app = make_app(stream=True, endpoint=endpoint)
        assert app.streamer.spool.gaps() == {"robot0-1": [20, 30]}
        assert wait_for(lambda: app.streamer.connected)
        assert wait_for(lambda: not any(r.stream_id == "robot0-1" for r in app.streamer.spool.records), 20)
        assert store.acked_seq("robot0", "robot0-1") == 39 and store.rows_lost == 10
    finally:
        server.stop()
        thread.join(10)
        server.close()
        store.close()
        ctx.destroy(linger=0)

"""Streamer against a real ROUTER on 127.0.0.1: delivery, outage + spool, restart, CURVE, policies."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq.auth

from devkit.dev_learner import DevLearner
from devkit.dev_policies import mlp_policy_bytes
from onboard.policy import PolicyCandidate
from onboard.batcher import empty_batch
from onboard.streamer import LinkConfigError, Streamer, StreamerConfig
from protocol.messages import Hello, schema_hash

pytestmark = pytest.mark.timeout(60)


def hello() -> Hello:
    return Hello(robot_id="r1", schema_hash=schema_hash(), task="stand_still", obs_dim=4, act_dim=1)


def batch(n: int, start: float) -> dict:
    b = empty_batch(n, 4, 1)
    b["obs"][:, 0] = start + np.arange(n)
    b["source"][:] = 1
    return b


def fast_cfg(endpoint: str, spool: str, **kw) -> StreamerConfig:
    base = dict(endpoint=endpoint, plaintext=True, spool_dir=spool, heartbeat_interval_s=0.1, liveness=10,
                reconnect_initial_s=0.05, reconnect_max_s=0.2)
    base.update(kw)
    return StreamerConfig(**base)


def test_batches_are_delivered_acked_and_removed_from_spool(tmp_path, endpoint, wait_for):
    ep = endpoint
    learner = DevLearner(ep)
    st = Streamer(fast_cfg(ep, str(tmp_path)), hello, stats=lambda: {"period_err_p99_ms": 0.1})
    st.start()
    try:
        for i in range(5):
            assert st.offer(batch(10, i * 10))
        assert wait_for(lambda: len(learner.rows_of(st.stream_id)) == 50 and not st.spool.records)
        assert wait_for(lambda: st.connected and learner.log.heartbeats)
        assert learner.log.heartbeats[-1].stats["period_err_p99_ms"] == pytest.approx(0.1)
    finally:
        st.stop()
        learner.close()
    assert learner.rows_of(st.stream_id) == list(range(50))
    assert learner.log.rows[(st.stream_id, 17)][0][0] == 17.0


def test_learner_absent_then_back_everything_delivered_exactly_once(tmp_path, endpoint, wait_for):
    ep = endpoint
    st = Streamer(fast_cfg(ep, str(tmp_path)), hello)
    st.start()
    try:
        for i in range(8):
            st.offer(batch(10, i * 10))
        assert wait_for(lambda: st.spool.pending_rows == 80)  # spooled while nobody listens
        assert not st.connected
        learner = DevLearner(ep)
        try:
            assert wait_for(lambda: not st.spool.records, 15)
            assert learner.rows_of(st.stream_id) == list(range(80))
        finally:
            learner.close()
    finally:
        st.stop()


def test_spooled_batches_survive_a_robot_process_restart(tmp_path, endpoint, wait_for):
    ep = endpoint
    st1 = Streamer(fast_cfg(ep, str(tmp_path)), hello)
    st1.start()
    for i in range(3):
        st1.offer(batch(10, i * 10))
    assert wait_for(lambda: st1.spool.pending_rows == 30)
    st1.stop()  # "crash": nothing was acked
    first_stream = st1.stream_id
    learner = DevLearner(ep)
    st2 = Streamer(fast_cfg(ep, str(tmp_path)), hello, stream_id="r1-second")
    st2.start()
    try:
        st2.offer(batch(5, 100))
        assert wait_for(lambda: not st2.spool.records, 15)
    finally:
        st2.stop()
        learner.close()
    assert learner.rows_of(first_stream) == list(range(30))
    assert learner.rows_of("r1-second") == list(range(5))


def curve_pair(tmp_path, endpoint: str, authorise: bool) -> tuple[DevLearner, StreamerConfig]:
    """A CURVE dev learner and a robot config; the robot's key is authorised only if asked."""
    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    keys.mkdir()
    authorised.mkdir()
    srv_pub, srv_sec = zmq.auth.create_certificates(str(keys), "server")
    cli_pub, cli_sec = zmq.auth.create_certificates(str(keys), "robot")
    if authorise:
        (authorised / "robot.key").write_bytes(open(cli_pub, "rb").read())
    learner = DevLearner(endpoint, server_secret_key_file=srv_sec, client_keys_dir=str(authorised))
    cfg = fast_cfg(endpoint, str(tmp_path / "spool"), plaintext=False, client_secret_key_file=cli_sec,
                   server_public_key_file=srv_pub)
    return learner, cfg


def test_curve_link_and_policy_push_reaches_the_loader(tmp_path, endpoint, wait_for):
    learner, cfg = curve_pair(tmp_path, endpoint, authorise=True)
    got: list[PolicyCandidate] = []
    st = Streamer(cfg, hello, on_policy=got.append)
    st.start()
    try:
        assert wait_for(lambda: st.connected)
        data = mlp_policy_bytes(4, 1, version=3)
        learner.push_policy(3, data)
        assert wait_for(lambda: got)
        assert got[0].version == 3 and got[0].onnx_bytes == data
        st.policy_result(3, True, "ok")
        assert wait_for(lambda: learner.log.policy_results)
        assert learner.log.policy_results[0].accepted
        # A wrong-hash POLICY is refused by the decoder and never reaches the loader.
        learner.push_policy(4, data, sha256="0" * 64)
        assert wait_for(lambda: st.counters.bad_messages.get("bad_hash", 0) == 1)
        assert len(got) == 1
    finally:
        st.stop()
        learner.close()


def test_unauthorised_robot_key_gets_no_session(tmp_path, endpoint, wait_for):
    learner, cfg = curve_pair(tmp_path, endpoint, authorise=False)
    st = Streamer(cfg, hello)
    st.start()
    try:
        time.sleep(0.6)
        assert not st.connected and learner.log.hellos == 0
    finally:
        st.stop()
        learner.close()


def test_plaintext_refused_off_loopback_and_curve_needs_keys(tmp_path, endpoint, wait_for):
    with pytest.raises(LinkConfigError, match="loopback"):
        StreamerConfig(endpoint="tcp://10.0.0.5:5555", plaintext=True)
    with pytest.raises(LinkConfigError, match="CURVE"):
        StreamerConfig(endpoint="tcp://10.0.0.5:5555")


def test_batches_are_spooled_while_backing_off(tmp_path, endpoint, wait_for):
    # A long back-off must not stop the thread from draining the loop's queue into the spool.
    st = Streamer(fast_cfg(endpoint, str(tmp_path), reconnect_initial_s=30.0, reconnect_max_s=30.0,
                           queue_batches=4), hello)
    st.start()
    try:
        assert wait_for(lambda: st.link_state == "backoff", 5)  # nobody answered: backing off for 30 s
        for i in range(12):  # three times the queue size, fed slowly
            assert wait_for(lambda: st.offer(batch(10, i * 10)), 5)
        assert wait_for(lambda: st.spool.pending_rows == 120, 5)
    finally:
        st.stop()


def test_full_spool_refuses_new_batches_without_a_hole_in_the_stream(tmp_path, endpoint, wait_for):
    st = Streamer(fast_cfg(endpoint, str(tmp_path), spool_max_mb=0.004), hello)  # ~4 KB
    st.start()
    try:
        for i in range(12):
            assert wait_for(lambda: st.offer(batch(10, i * 10)), 5)
        assert wait_for(lambda: st.counters.rows_dropped_spool_full > 0 and st.status()["queue_batches"] == 0, 5)
        kept = st.spool.pending_rows
        learner = DevLearner(endpoint)
        try:
            assert wait_for(lambda: not st.spool.records, 15)
            assert learner.rows_of(st.stream_id) == list(range(kept))  # contiguous from 0
        finally:
            learner.close()
    finally:
        st.stop()
    assert kept + st.counters.rows_dropped_spool_full == 120

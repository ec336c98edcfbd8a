"""Trial reports are acknowledged data: a trial that ends while the learner is down (and the robot
program restarted meanwhile) still reaches the learner, exactly once.

Real parts: the robot's `Streamer` (the path `OnboardApp` posts TRIAL_REPORT through) with its
disk spools, the learner's `LearnerServer` with `RobotEvidence` writing `trials.jsonl`, ZMQ on
127.0.0.1. Before the fix the report went to an in-memory outbox and was sent on whatever socket
existed (or none): with the learner down it was lost.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from learner.service import wire
from learner.service.client import RobotLinkClient
from learner.service.evidence import RobotEvidence
from learner.service.ingest import Ingest
from learner.service.publisher import Publisher
from learner.service.server import LearnerServer, LinkConfig
from learner.service.sessions import HelloPolicy
from learner.service.store import RealStore
from onboard.streamer import Streamer, StreamerConfig
from protocol.messages import Hello, TrialReport, schema_hash

pytestmark = pytest.mark.timeout(90)


class Learner:
    """The learner's network side with its evidence keeper, in a thread; restartable on the same
    endpoint and run folder (what a learner process restart keeps: the files)."""

    def __init__(self, run_dir: Path, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.store = RealStore(run_dir / "store")
        self.store.open()
        self.evidence = RobotEvidence(run_dir)
        self.server = LearnerServer(
            LinkConfig(bind=endpoint, plaintext=True, heartbeat_timeout_s=2.0, policy_resend_s=0.5),
            self.store, HelloPolicy(schema_hash(), 4, 1, "stand_still"), Publisher(),
            Ingest(self.store, 4, 1), context=self.ctx, evidence=self.evidence)
        self.server.start_socket()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)
        self.server.close()
        self.store.close()
        self.ctx.destroy(linger=0)


def _hello() -> Hello:
    return Hello(robot_id="robot0", schema_hash=schema_hash(), task="stand_still", obs_dim=4, act_dim=1)


def _streamer(endpoint: str, spool: Path) -> Streamer:
    cfg = StreamerConfig(endpoint=endpoint, robot_id="robot0", plaintext=True, spool_dir=str(spool),
                         heartbeat_interval_s=0.1, liveness=3, reconnect_initial_s=0.1,
                         reconnect_max_s=0.3, resend_after_s=1.0)
    return Streamer(cfg, _hello)


def _report(version: int) -> TrialReport:
    return TrialReport(version=version, incumbent=2, outcome="promoted", reason="not worse",
                       returns=np.array([900.0, 1100.0, 1000.0], np.float32),
                       lengths=np.array([90, 110, 100], np.int32),
                       reference_returns=np.array([800.0, 850.0], np.float32),
                       reference_lengths=np.array([80, 85], np.int32), catches=1, p_not_worse=0.01,
                       p_worse=0.99, duration_s=12.0, t_us=123)


def _trial_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_report_of_a_trial_that_ends_while_the_learner_is_down_arrives_once(tmp_path, endpoint, wait_for):
    run_dir, spool = tmp_path / "learner", tmp_path / "spool"
    learner = Learner(run_dir, endpoint)
    robot = _streamer(endpoint, spool)
    robot.start()
    restarted: Streamer | None = None
    try:
        assert wait_for(lambda: robot.connected)
        learner.stop()  # the learner goes away ...
        assert wait_for(lambda: not robot.connected)
        robot.post(_report(3))  # ... while a trial ends on the robot
        assert wait_for(lambda: len(robot.reports.records) == 1)  # spooled (fsync'd), not lost
        robot.stop()  # and the robot program is restarted before the learner is back
        restarted = _streamer(endpoint, spool)
        assert len(restarted.reports.records) == 1  # read back from disk
        restarted.start()
        time.sleep(0.5)  # a few heartbeats with nobody listening
        assert _trial_rows(run_dir) == []
        learner = Learner(run_dir, endpoint)  # the learner is back
        assert wait_for(lambda: restarted.counters.reports_acked == 1 and not restarted.reports.records, 20)
        rows = _trial_rows(run_dir)
        assert [(r["robot"], r["version"], r["outcome"]) for r in rows] == [("robot0", 3, "promoted")]
        assert rows[0]["returns"] == [900.0, 1100.0, 1000.0] and rows[0]["seq"] == 0
        assert rows[0]["stream_id"] == robot.report_stream_id  # the first process's report stream
        assert learner.evidence.versions[3].returns == [900.0, 1100.0, 1000.0]
        assert learner.evidence.versions[3].catches == 1
        # the restarted robot's own reports go on a new stream and are acknowledged the same way
        restarted.post(_report(4))
        assert wait_for(lambda: restarted.counters.reports_acked == 2, 20)
        assert [r["version"] for r in _trial_rows(run_dir)] == [3, 4]
        assert learner.evidence.reports == 2
    finally:
        for s in (robot, restarted):
            if s is not None:
                s.stop()
        learner.stop()


def test_a_resent_report_is_acknowledged_again_and_recorded_once_across_a_learner_restart(tmp_path, endpoint):
    run_dir = tmp_path / "learner"
    report = _report(5)
    report.stream_id, report.seq = "robot0-1700000000000.trials", 0
    learner = Learner(run_dir, endpoint)
    try:
        for attempt in range(3):  # the robot resends (its ACK was lost), the learner restarts
            client = RobotLinkClient(endpoint, context=learner.ctx)
            try:
                assert client.hello(_hello()).accepted
                client.send(report)
                ack = client.recv_until(wire.Ack, 10)
                assert (ack.stream_id, ack.acked_seq) == (report.stream_id, 0)
                if attempt == 0:  # a report past a gap is not recorded: the robot resends in order
                    gap = _report(6)
                    gap.stream_id, gap.seq = report.stream_id, 2
                    client.send(gap)
                    ack = client.recv_until(wire.Ack, 10)
                    assert (ack.stream_id, ack.acked_seq) == (report.stream_id, 0)
            finally:
                client.close()
            learner.stop()
            learner = Learner(run_dir, endpoint)  # reads trials.jsonl back
        assert [(r["version"], r["seq"]) for r in _trial_rows(run_dir)] == [(5, 0)]
        assert learner.evidence.reports == 1 and learner.evidence.report_next == {
            ("robot0", report.stream_id): 1}
    finally:
        learner.stop()

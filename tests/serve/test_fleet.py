"""A fleet on one learner (issue 16): 4 lock-step virtual robots, each its own `onboard/run.py`
process with its own key, profile and run folder, stream to one `learner/serve.py` that trains
tiny networks and pushes every version to all of them.

Checked: every transition each robot recorded is in the store exactly once (and was ACKed out of
its spool), every robot ends on the latest published version, the learner's status has a row per
robot. One robot killed with SIGKILL mid-run (then restarted on its spool) and a fifth authorised
client sending malformed messages do not disturb the others: they keep streaming, get no errors
of their own, and end exactly as above. Real processes, real CURVE sockets, real ptys, MuJoCo and
onnxruntime; bounded waits, no timing assertions.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from learner.fleet import Fleet, FleetConfig
from learner.service import wire
from learner.service.client import RobotLinkClient
from learner.service.tasks import task_info

pytestmark = [pytest.mark.timeout(480), pytest.mark.slow]

# tiny networks, every export published (no gate, no pretraining), a fixed number of versions
SERVE_ARGS = ("--hidden 16-16 --disc-hidden 16-16 --batch-real 16 --batch-sim 16 --disc-batch 16 "
              "--warmup-sim-steps 200 --min-real-rows 64 --obs-centre-rows 64 --export-every-updates 100 --export-every-s 0 "
              "--pretrain-updates 0 --publish-gate-steps 0 --checkpoint-every-s 0 --policy-resend-s 1 "
              "--status-every-s 1 --max-updates 400")
ROBOTS = ["robot0", "robot1", "robot2", "robot3"]


def _wait(cond, timeout_s: float, what: str, fleet: Fleet) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fleet.check_alive()
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s} s: {what}; last status {fleet.status()}")


def _rows(fleet: Fleet) -> dict[str, int]:
    return {rid: r["rows"] for rid, r in fleet.status().get("robots", {}).items()}


def _send_malformed(fleet: Fleet) -> None:
    """An authorised robot (robot9) that sends garbage, NaNs, a gap and a multi-frame message."""
    info = task_info(fleet.cfg.task)
    client = RobotLinkClient(fleet.endpoint, fleet.keys["robot9_secret"], fleet.keys["learner_public"])
    try:
        assert client.hello(wire.Hello(robot_id="robot9", schema_hash=wire.schema_hash(), task=fleet.cfg.task,
                                       obs_dim=info.obs_dim, act_dim=info.act_dim), 30).accepted
        client.send_raw(b"\x93not msgpack at all")
        nan = wire.empty_transitions("robot9-1", 0, 4, info.obs_dim, info.act_dim)
        nan.obs[1, 0] = np.nan
        client.send_raw(wire.encode(nan, validate=False))
        client.send(wire.empty_transitions("robot9-1", 50, 4, info.obs_dim, info.act_dim))  # a gap
        client.send_raw([b"two", b"frames"])
        errors = [client.recv_until(wire.Error, 30).code for _ in range(4)]
        assert sorted(errors) == sorted(["malformed", "non_finite", "seq_gap", "frame_count"]), errors
    finally:
        client.close()


def test_four_robots_one_learner_exactly_once_and_on_the_latest_version(tmp_path):
    cfg = FleetConfig(robots=4, run_dir=str(tmp_path / "fleet"), profiles="moderate,mild",
                      serve_args=SERVE_ARGS, robot_args="--trials.enabled false", drain_s=20.0).validate()
    fleet = Fleet(cfg, extra_keys=("robot9",))
    try:
        fleet.start()
        _wait(lambda: all(_rows(fleet).get(rid, 0) > 0 for rid in ROBOTS), 180, "all 4 robots stream", fleet)
        _send_malformed(fleet)
        # one robot dies mid-run; the others keep streaming
        fleet.kill_robot("robot3")
        at_kill = _rows(fleet)
        _wait(lambda: all(_rows(fleet)[rid] > at_kill[rid] + 200 for rid in ROBOTS[:3]), 120,
              "the other robots keep streaming after robot3 was killed", fleet)
        fleet.start_robot("robot3")  # back on its spool: resends what its predecessor did not get ACKed

        def all_on_latest() -> bool:
            st = fleet.status()
            robots = st.get("robots", {})
            return st.get("trainer_state") == "stopped" and st["policy_version"] >= 4 and all(
                robots.get(rid, {}).get("policy_version") == st["policy_version"]
                and robots[rid]["link"] == "up" for rid in ROBOTS)

        _wait(all_on_latest, 300, "training ends and every robot runs the latest version", fleet)
        latest = fleet.status()["policy_version"]
        status = fleet.status()["robots"]
    finally:
        fleet.stop()

    # per-robot rows in the learner's status; bad data stays with the robot that sent it
    assert set(status) == {*ROBOTS, "robot9"}
    assert status["robot9"]["rejected"] >= 4
    assert all(status[rid]["rejected"] == 0 and status[rid]["stored_rows"] > 0 for rid in ROBOTS), status
    acc = fleet.accounting()
    for rid in ROBOTS:
        a = acc[rid]
        # every row the robot recorded was ACKed (spool empty) and is in the store exactly once
        assert a["recorded"] > 0 and a["spool_rows"] == 0, (rid, a)
        assert a["recorded"] == a["stored"], (rid, a)
        # the restarted robot3 also had its predecessor's spooled rows ACKed (another stream)
        assert a["acked"] == a["recorded"] if rid != "robot3" else a["acked"] >= a["recorded"], (rid, a)
        assert a["exactly_once"], (rid, a)
        assert a["policy_version"] == latest, (rid, a)
    # the killed robot: its first process's stream is whole up to what it had spooled, no duplicates
    assert len(acc["robot3"]["streams"]) == 2 and all(s["exactly_once"] for s in acc["robot3"]["streams"].values())
    log = (fleet.run_dir / "learner.log").read_text()
    assert "Traceback" not in log
    for rid in ROBOTS:
        assert f"policy v{latest} -> '{rid}'" in log
    report = fleet.write_report()
    text = report.read_text()
    assert all(f"| {rid}" in text for rid in ROBOTS) and "| NO |" not in text

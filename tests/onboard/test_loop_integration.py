"""The whole onboard stack against the virtual robot over a real pty (lock-step unless stated)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from devkit.dev_learner import DevLearner
from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.policy import PolicyCandidate
from onboard.safety import Mode
from protocol.messages import Source

pytestmark = pytest.mark.timeout(90)

# Linear balance law for stand_still (obs = [x, v, pitch, pitch_rate]) in normalised action units,
# run as an ONNX policy (through tanh). The STAND driver is sim_models' BalanceController.
BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0


def balance_policy(version: int, **kw) -> bytes:
    return mlp_policy_bytes(4, 1, version=version, linear_gain=BALANCE_GAIN, **kw)


def run_ticks(app, n: int) -> None:
    app.run(threading.Event(), max_ticks=n)


def test_controller_balances_and_transitions_are_recorded(make_app, wait_for):
    app = make_app()
    run_ticks(app, 400)
    assert app.fsm.mode is Mode.STAND
    obs = app.loop.recent_observations()
    assert np.all(np.abs(obs[:, 2]) < 0.1)  # pitch stays near upright
    assert app.recorder.rows_recorded >= 390
    assert app.scheduler.missed_deadlines == 0


def test_policy_pushed_mid_run_is_validated_and_swapped(make_app, wait_for, endpoint):
    ep = endpoint
    learner = DevLearner(ep)
    try:
        app = make_app(stream=True, endpoint=ep)
        run_ticks(app, 100)
        assert wait_for(lambda: app.streamer.connected)
        learner.push_policy(5, balance_policy(5))
        stop = threading.Event()
        t = threading.Thread(target=app.run, args=(stop,))
        t.start()
        try:
            assert wait_for(lambda: app.fsm.mode is Mode.POLICY, 20)
            time.sleep(0.2)
        finally:
            stop.set()
            t.join(10)
        assert app.loop.policy_version == 5
        assert app.scheduler.missed_deadlines == 0
        assert np.all(np.abs(app.loop.recent_observations()[:, 2]) < 0.2)
        assert wait_for(lambda: any(r.version == 5 and r.accepted for r in learner.log.policy_results))
        app.recorder.flush()
        assert wait_for(lambda: any(v[2] == 5 and v[1] == Source.POLICY for v in learner.log.rows.values()))
        assert app.loop.swap_latency.count == 1
    finally:
        learner.close()


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: (lambda d: (d, sha256_hex(d)))(balance_policy(2, nan_output=True)),
        lambda: (lambda d: (d, sha256_hex(d)))(mlp_policy_bytes(4, 2, version=2)),  # wrong action width
        lambda: (lambda d: (d, sha256_hex(d)))(balance_policy(2)[:-30]),  # truncated (hash of what came)
        lambda: (balance_policy(2), "f" * 64),  # wrong hash
    ],
    ids=["nan", "wrong_shape", "truncated", "wrong_hash"],
)
def test_bad_policy_is_never_activated(make_app, make_bad, wait_for):
    app = make_app()
    good = balance_policy(1)
    app.loader.submit(PolicyCandidate(1, sha256_hex(good), good))
    assert wait_for(lambda: app.loader.accepted == 1)
    run_ticks(app, 50)
    assert app.loop.policy_version == 1 and app.fsm.mode is Mode.POLICY
    data, sha = make_bad()
    app.loader.submit(PolicyCandidate(2, sha, data))
    assert wait_for(lambda: sum(app.loader.rejected.values()) == 1)
    run_ticks(app, 50)
    assert app.loop.policy_version == 1 and app.fsm.mode is Mode.POLICY
    assert app.loop.swaps == 1


def test_tilt_past_limit_goes_damping(make_app, wait_for):
    app = make_app()
    full_torque = mlp_policy_bytes(4, 1, version=1, linear_gain=np.zeros((1, 4)), mean_bias=5.0)
    app.loop.activate_policy(app.loader.validate_now(PolicyCandidate(1, sha256_hex(full_torque), full_torque)))
    run_ticks(app, 400)
    assert app.fsm.mode is Mode.DAMPING
    assert "tilt" in app.fsm.history[-1]["reason"]
    assert app.recorder.rows_recorded > 0
    app.recorder.flush()


def test_firmware_silent_goes_damping_within_stale_time(make_app, wait_for):
    # Real time. Generous limits so that a loaded test machine does not trip DAMPING first.
    app = make_app(lockstep=False, stale_state_ms=200.0, overrun_burst=10**6)
    stop = threading.Event()
    t = threading.Thread(target=app.run, args=(stop,))
    t.start()
    try:
        assert wait_for(lambda: app.fsm.mode is Mode.STAND)
        time.sleep(0.3)
        assert app.fsm.mode is Mode.STAND
        silent_since = app.scheduler.clock.now()
        app.virtual_robot.stop()  # the firmware goes silent
        assert wait_for(lambda: app.fsm.mode is Mode.DAMPING, 5)
    finally:
        stop.set()
        t.join(10)
    last = app.fsm.history[-1]
    assert last["to"] == "DAMPING" and "stale" in last["reason"] and last["t_s"] >= silent_since - 0.01
    age_ms = float(last["reason"].split("(")[1].split()[0])
    assert age_ms < 200.0 + 3 * 5.0  # decided on the first tick(s) past the limit


def test_learner_absent_for_a_while_then_every_transition_delivered_once(make_app, wait_for, endpoint):
    ep = endpoint
    app = make_app(stream=True, endpoint=ep)
    run_ticks(app, 300)
    assert wait_for(lambda: app.streamer.spool.pending_rows > 0)
    assert not app.streamer.connected
    learner = DevLearner(ep)
    try:
        run_ticks(app, 200)
        app.recorder.flush()
        total = app.recorder.rows_recorded
        assert wait_for(lambda: len(learner.rows_of(app.streamer.stream_id)) == total, 20)
        assert wait_for(lambda: app.streamer.spool.pending_rows == 0)
        assert learner.rows_of(app.streamer.stream_id) == list(range(total))
        # (resends after a lost heartbeat on a loaded machine may repeat rows on the wire; the
        # store keeps each (stream, seq) once, which is the exactly-once property checked above)
    finally:
        learner.close()


def test_short_real_time_run_writes_stats_file(make_app, tmp_path):
    app = make_app(lockstep=False)
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    app.run(stop)
    app.status.report()
    s = json.loads((tmp_path / "stats.json").read_text())
    assert s["mode"] == app.fsm.mode.value and s["ticks"] > 100
    assert s["transitions"]["recorded"] > 0
    assert {"p50", "p99", "max"} <= set(s["period_error_ms"])


def test_operator_estop_latches_firmware_and_reset_recovers(make_app, wait_for):
    from onboard.safety import Operator
    from protocol.robot_types import MotorMode

    app = make_app()
    run_ticks(app, 50)
    app.loop.request(Operator.ESTOP)
    run_ticks(app, 3)
    assert app.fsm.mode is Mode.ESTOP
    assert wait_for(lambda: app.link.latest_state().state.mode == MotorMode.ESTOP, 5)
    app.loop.request(Operator.RESET)
    run_ticks(app, 1)
    assert app.fsm.mode is Mode.PASSIVE
    assert wait_for(lambda: app.link.lifecycle.value == "active", 5)  # re-activated off the loop thread
    run_ticks(app, 20)
    assert app.fsm.mode is Mode.STAND
    assert app.link.latest_state().state.mode == MotorMode.ENABLED


def test_operator_rollback_returns_to_previous_policy_then_controller(make_app):
    from onboard.safety import Operator

    app = make_app()
    for v in (1, 2):
        data = balance_policy(v)
        app.loop.activate_policy(app.loader.validate_now(PolicyCandidate(v, sha256_hex(data), data)))
    run_ticks(app, 20)
    assert app.loop.policy_version == 2 and app.fsm.mode is Mode.POLICY
    app.loop.request(Operator.ROLLBACK)
    run_ticks(app, 5)
    assert app.loop.policy_version == 1 and app.fsm.mode is Mode.POLICY
    app.loop.request(Operator.ROLLBACK)
    run_ticks(app, 5)
    assert app.loop.policy_version == -1 and app.fsm.mode is Mode.STAND  # the controller holds it
    assert app.loop.rollbacks == 2


def test_catch_and_recovery_keep_a_toppling_policy_learning(make_app):
    """A policy that drives the robot over: the controller catches it (or, if too late, the
    robot falls, is picked up by the virtual robot's respawn and recovers), then the policy is
    retried. Each policy stint is its own episode, ended where the controller took over."""
    rows = []
    app = make_app(respawn_s=0.3, catch_tilt_rad=0.3, upright_rad=0.3, policy_retry_s=0.3, recover_after_s=0.05)
    app.recorder.sink = lambda batch: rows.append(batch) or True
    full_torque = mlp_policy_bytes(4, 1, version=1, linear_gain=np.zeros((1, 4)), mean_bias=5.0)
    app.loop.activate_policy(app.loader.validate_now(PolicyCandidate(1, sha256_hex(full_torque), full_torque)))
    run_ticks(app, 1000)
    app.recorder.flush()
    hist = list(app.fsm.history)
    to_policy = [h for h in hist if h["to"] == "POLICY"]
    taken_over = [h for h in hist if h["from"] in ("POLICY", "DAMPING") and h["to"] == "STAND"]
    assert len(to_policy) >= 2, hist  # the policy got the robot back after a hand-over
    assert taken_over and all(h["source"] == "controller" for h in taken_over)
    assert app.fsm.counts["catches"] + app.virtual_robot.counters.respawns >= 1
    assert app.fsm.mode is not Mode.ESTOP
    src = np.concatenate([b["source"] for b in rows])
    ended = np.concatenate([b["terminated"] | b["truncated"] for b in rows])
    switch = np.flatnonzero(src[:-1] != src[1:])  # last row of each driver's stint
    assert len(switch) >= 2 and np.all(ended[switch])


def test_close_delivers_the_last_partial_batch(make_app, wait_for, endpoint):
    # Regression: the rows of the batch still being filled when the robot stopped were never
    # handed to the streamer (19 rows lost at the end of a demo run).
    learner = DevLearner(endpoint)
    try:
        app = make_app(stream=True, endpoint=endpoint)
        app.recorder.max_batch_age_s = 1e9  # only full batches leave during the run
        run_ticks(app, 123)
        recorded = app.recorder.rows_recorded
        assert app.recorder.pending_rows == recorded % app.recorder.batch_size > 0
        assert wait_for(lambda: len(learner.log.rows) == recorded - app.recorder.pending_rows)
        app.close(drain_s=5.0)
        assert app.recorder.pending_rows == 0
        assert wait_for(lambda: len(learner.log.rows) == recorded) and learner.log.duplicates == 0
    finally:
        learner.close()


def test_close_with_the_learner_down_keeps_every_row_in_the_spool(make_app, endpoint, tmp_path):
    from onboard.spool import Spool

    app = make_app(stream=True, endpoint=endpoint)  # nobody listens there
    run_ticks(app, 123)
    recorded = app.recorder.rows_recorded
    app.close(drain_s=0.0)
    spool = Spool(str(tmp_path / "spool"))  # the directory make_app configures
    try:
        assert spool.pending_rows == recorded
    finally:
        spool.close()

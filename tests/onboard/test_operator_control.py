"""The operator's control channel (onboard/control.py) on a running robot program: every command
acts on the loop, over a real Unix socket; a robot that must be armed keeps its motors off."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from onboard.config import load_toml
from onboard.control import check_endpoint, main, request
from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.policy import PolicyCandidate
from onboard.safety import Mode
from protocol.robot_types import MotorMode

pytestmark = pytest.mark.timeout(120)

BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0


def submit(app, version: int, gain=BALANCE_GAIN) -> None:
    data = mlp_policy_bytes(4, 1, version=version, hidden=0, linear_gain=gain)
    app.loader.submit(PolicyCandidate(version=version, sha256=sha256_hex(data), onnx_bytes=data,
                                      received_t=time.perf_counter()))


@pytest.fixture
def running(make_app, tmp_path):
    """A robot program with its control channel, running its loop on a thread."""
    started = []

    def start(**kw):
        endpoint = f"ipc://{tmp_path}/ctl.sock"

        def configure(cfg):
            cfg.control.endpoint = endpoint
            cfg.trials.enabled, cfg.trials.min_episodes = True, 2
            cfg.policy.stall_ms = 1000.0  # a loaded test machine is no reason to quarantine a policy here
            kw.pop("configure", lambda c: None)(cfg)

        app = make_app(configure=configure, **kw)
        stop = threading.Event()
        thread = threading.Thread(target=app.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return app, endpoint

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(10)


def motors_enabled(app) -> bool:
    s = app.link.latest_state()
    return s is not None and s.state.mode == MotorMode.ENABLED


def test_every_command_acts_on_a_running_robot(running, wait_for, capsys):
    app, ep = running(catch_tilt_rad=0.25, policy_retry_s=0.1, respawn_s=0.3)
    assert wait_for(lambda: app.fsm.mode is Mode.STAND, 20)
    status = request(ep, "status")
    assert status["ok"] and status["mode"] == "STAND" and status["armed"] and status["trials"]["incumbent"] == -1
    submit(app, 1)
    assert wait_for(lambda: app.supervisor.trials.incumbent == 1 and app.fsm.mode is Mode.POLICY, 30)

    r = request(ep, "stand")
    assert r["ok"] and r["mode"] == "STAND" and "operator stand" in r["why"]
    time.sleep(0.3)
    assert app.fsm.mode is Mode.STAND  # held: the policy does not take over by itself
    assert request(ep, "policy")["ok"]
    assert wait_for(lambda: app.fsm.mode is Mode.POLICY, 10)

    submit(app, 2)
    assert wait_for(lambda: app.loop.policy_version == 2, 20)
    r = request(ep, "rollback")  # ends v2's trial: back to the incumbent
    assert r["ok"] and r["policy_version"] == 1 and "trial of v2 ended" in r["message"]
    r = request(ep, "pin", "2")
    assert r["ok"] and r["policy_version"] == 2 and app.supervisor.pinned == 2
    submit(app, 3)  # arrives while pinned: held, never drives
    assert wait_for(lambda: app.supervisor.snapshot().get("held") == 3, 20)
    assert app.loop.policy_version == 2
    assert not request(ep, "rollback")["ok"]  # pinned
    assert not request(ep, "pin", "9")["ok"]  # not on this robot
    r = request(ep, "unpin")
    assert r["ok"] and r["policy_version"] == 3 and app.supervisor.trials.trial.candidate == 3

    r = request(ep, "damp")
    assert r["mode"] == "DAMPING" and "latched" in r["why"]
    r = request(ep, "clear")
    assert r["ok"] and r["mode"] in ("PASSIVE", "STAND")
    assert wait_for(lambda: app.fsm.mode in (Mode.STAND, Mode.POLICY), 10)
    r = request(ep, "estop")
    assert r["mode"] == "ESTOP" and "clear" in r["why"]
    assert request(ep, "clear")["mode"] in ("PASSIVE", "STAND")
    r = request(ep, "disarm")
    assert not r["armed"]
    assert request(ep, "clear")["mode"] == "PASSIVE"
    time.sleep(0.3)
    assert app.fsm.mode is Mode.PASSIVE and "not armed" in request(ep, "status")["why"]
    assert request(ep, "arm")["armed"]
    assert wait_for(lambda: app.fsm.mode in (Mode.STAND, Mode.POLICY), 10)
    assert not request(ep, "jump")["ok"]

    assert main(["--endpoint", ep, "pin", "controller"]) == 0  # the CLI, in-process
    assert "pinned" in capsys.readouterr().out and app.loop.policy is None


def test_a_robot_to_be_armed_keeps_its_motors_off_until_arm(running, wait_for, caplog):
    app, ep = running(require_arm=True, respawn_s=0.3)  # unpowered it tips over; put back up
    time.sleep(1.0)  # fresh states, upright at times: without arming it would have stood
    assert app.fsm.mode is Mode.PASSIVE and not app.fsm.armed
    assert app.virtual_robot.counters.frames_in.get("ENABLE", 0) == 0 and not motors_enabled(app)
    assert "not armed" in request(ep, "status")["why"]
    assert any("not moving: not armed" in r.getMessage() for r in caplog.records)
    assert request(ep, "stand")["mode"] == "PASSIVE"  # stand needs arming too
    r = request(ep, "arm")
    assert r["ok"] and r["armed"]
    assert wait_for(lambda: app.fsm.mode is Mode.STAND and motors_enabled(app), 10)
    assert request(ep, "estop")["armed"] is False  # an e-stop disarms: clear, then arm again
    assert request(ep, "clear")["mode"] == "PASSIVE"
    time.sleep(0.3)
    assert app.fsm.mode is Mode.PASSIVE and not motors_enabled(app)


def test_the_real_robot_config_requires_arm_and_opens_the_channel():
    cfg = load_toml("configs/onboard.toml")
    assert cfg.safety.require_arm and cfg.control.endpoint.startswith("ipc://")
    assert load_toml("configs/onboard_virtual.toml").control.endpoint.startswith("ipc://")
    for bad in ("tcp://0.0.0.0:5000", "tcp://192.168.1.10:5000"):
        with pytest.raises(ValueError):
            check_endpoint(bad)
    check_endpoint("tcp://127.0.0.1:5000")

"""Open-loop replay of recorded commands in the model: ~zero drift for the same profile, clear drift otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hil_testkit import record_onboard_run

from firmware_bridge.hil.recordings import decode_recording, recorded_steps
from protocol.robot_types import MotorCommand
from sim_models.controller import BalanceController
from sim_models.gap_report import GapConfig, GapReportError, StateSetter, gap_report, plot_gap
from sim_models.robot import WheelLeggedSim
from sim_models.tasks import get_task

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def mild_steps(tmp_path_factory):
    """A 300-tick lock-step onboard run on the virtual robot with the noise-free "mild" profile."""
    tmp = tmp_path_factory.mktemp("gap")
    path = record_onboard_run(tmp / "mild.mcap", tmp, ticks=300, profile="mild")
    return recorded_steps(decode_recording(path))


def test_same_profile_shows_near_zero_drift_and_another_a_clear_one(mild_steps, tmp_path):
    assert len(mild_steps) == 300 and mild_steps.applied.all()
    same = gap_report(mild_steps.states, mild_steps.commands, GapConfig(profile="mild", horizon_steps=50),
                      applied=mild_steps.applied)
    other = gap_report(mild_steps.states, mild_steps.commands, GapConfig(profile="moderate", horizon_steps=50),
                       applied=mild_steps.applied)
    assert same.windows == other.windows == 6
    for signal in ("pitch", "pitch_rate", "v", "left_wheel_vel"):
        assert other.signals[signal].rmse > 20 * same.signals[signal].rmse, signal
    assert same.signals["pitch"].rmse < 0.01  # rad over 0.25 s windows
    assert other.signals["pitch"].final_rmse > 0.05
    assert len(same.signals["pitch"].rmse_by_step) == 50
    # drift grows along the window for the wrong model
    by_step = other.signals["pitch"].rmse_by_step
    assert by_step[-1] > 5 * by_step[0]
    png = plot_gap([same, other], tmp_path / "gap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pitch" in same.table() and '"profile": "mild"' in same.to_json()


@pytest.mark.parametrize("variant,task_name", [("legs_locked", "stand_still"), ("full", "locomotion")])
def test_reset_from_a_robot_state_reproduces_the_next_step(variant, task_name):
    """Set a second model from the first one's sensor reading: one control step later they agree."""
    task = get_task(task_name)
    command = np.asarray(task.default_command, np.float32) if task.default_command else None
    a = WheelLeggedSim(variant, profile="mild", seed=0)
    b = WheelLeggedSim(variant, profile="mild", seed=0)
    setter = StateSetter(b)
    ctrl = BalanceController(task_name)
    s = a.reset(pitch_rad=0.04)
    cmd = MotorCommand()
    for _ in range(80):
        cmd = task.action_to_command(ctrl.act(task.observe(s, command)))
        s = a.step(cmd)
    setter.apply(a.state(), pending=[cmd])
    np.testing.assert_allclose(b.data.qpos[2:], a.data.qpos[2:], atol=2e-5)  # height, orientation, joints
    np.testing.assert_allclose(b.data.qvel[2:], a.data.qvel[2:], atol=5e-3)
    nxt = task.action_to_command(ctrl.act(task.observe(s, command)))
    sa, sb = a.step(nxt), b.step(nxt)
    np.testing.assert_allclose(task.observe(sb, command), task.observe(sa, command), rtol=1e-2, atol=5e-3)


def test_bad_inputs_are_typed_errors(mild_steps):
    with pytest.raises(GapReportError, match="len"):
        gap_report(mild_steps.states[:10], mild_steps.commands[:10])
    with pytest.raises(GapReportError, match="fewer than one window"):
        gap_report(mild_steps.states[:11], mild_steps.commands[:10], GapConfig(horizon_steps=50))
    with pytest.raises(GapReportError, match="horizon"):
        gap_report(mild_steps.states, mild_steps.commands, GapConfig(horizon_steps=0))

"""Safety FSM transitions (each fault -> its safe mode, with a logged reason) and the action filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onboard.safety import ActionFilter, Mode, Operator, SafetyConfig, SafetyFSM, SafetyInputs, tilt_from_quat


def inputs(**kw) -> SafetyInputs:
    base = dict(now_s=0.0, state_age_s=0.001, tilt_rad=0.0, policy_ready=False, learner_connected=True)
    base.update(kw)
    return SafetyInputs(**base)


def fsm_in(mode: Mode, **cfg) -> SafetyFSM:
    f = SafetyFSM(SafetyConfig(**cfg))
    f.update(inputs())
    if mode is Mode.POLICY:
        f.update(inputs(policy_ready=True))
    assert f.mode is mode
    return f


def test_passive_waits_for_fresh_upright_state_then_stands_then_policy():
    f = SafetyFSM(SafetyConfig())
    assert f.update(inputs(state_age_s=math.inf)) is Mode.PASSIVE
    assert f.update(inputs(tilt_rad=0.4)) is Mode.PASSIVE
    assert f.update(inputs()) is Mode.STAND
    assert f.update(inputs(policy_ready=True)) is Mode.POLICY
    assert [h["to"] for h in f.history] == ["STAND", "POLICY"]


@pytest.mark.parametrize(
    "fault, reason",
    [
        (dict(tilt_rad=0.7), "tilt"),
        (dict(tilt_rad=math.nan), "tilt"),
        (dict(state_age_s=0.2), "stale"),
        (dict(state_age_s=math.inf), "no state"),
        (dict(action_finite=False), "non-finite"),
        (dict(missed_recent=5), "missed deadlines"),
    ],
)
@pytest.mark.parametrize("mode", [Mode.STAND, Mode.POLICY])
def test_faults_lead_to_damping_with_reason(mode, fault, reason):
    f = fsm_in(mode)
    assert f.update(inputs(policy_ready=True, **fault)) is Mode.DAMPING
    assert reason in f.history[-1]["reason"]
    # latched: a good tick does not leave DAMPING
    assert f.update(inputs(policy_ready=True)) is Mode.DAMPING


def test_damping_recovers_by_itself_only_when_configured():
    f = fsm_in(Mode.STAND, damping_recover_s=1.0)
    f.update(inputs(now_s=1.0, tilt_rad=1.0))
    assert f.update(inputs(now_s=1.5)) is Mode.DAMPING
    assert f.update(inputs(now_s=2.0)) is Mode.PASSIVE


@pytest.mark.parametrize("choice, expect", [("keep", Mode.POLICY), ("stand", Mode.STAND), ("damping", Mode.DAMPING)])
def test_learner_unreachable_follows_configured_choice(choice, expect):
    f = fsm_in(Mode.POLICY, learner_lost=choice)
    assert f.update(inputs(policy_ready=True, learner_connected=False)) is expect


def test_operator_estop_latches_until_reset_and_stand_holds_controller():
    f = fsm_in(Mode.POLICY)
    assert f.update(inputs(policy_ready=True, operator=Operator.STAND)) is Mode.STAND
    assert f.update(inputs(policy_ready=True)) is Mode.STAND  # operator hold: no auto POLICY
    f.update(inputs(policy_ready=True, operator=Operator.POLICY))
    assert f.update(inputs(policy_ready=True)) is Mode.POLICY
    assert f.update(inputs(operator=Operator.ESTOP)) is Mode.ESTOP
    assert f.update(inputs(operator=Operator.DAMP)) is Mode.ESTOP
    assert f.update(inputs()) is Mode.ESTOP
    assert f.update(inputs(operator=Operator.RESET)) is Mode.PASSIVE
    assert f.update(inputs()) is Mode.STAND


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="learner_lost"):
        SafetyConfig(learner_lost="pray")


def test_tilt_from_quaternion():
    assert tilt_from_quat(np.array([1, 0, 0, 0])) == pytest.approx(0.0)
    th = 0.4
    assert tilt_from_quat(np.array([math.cos(th / 2), 0, math.sin(th / 2), 0])) == pytest.approx(th)
    assert tilt_from_quat(np.array([math.cos(th / 2), 0, 0, math.sin(th / 2)])) == pytest.approx(0.0)  # yaw only
    assert tilt_from_quat(np.array([np.nan, 0, 0, 0])) == math.inf


def test_action_filter_clips_and_rate_limits():
    flt = ActionFilter(2, clip=1.0, max_delta=0.25)
    np.testing.assert_allclose(flt.apply(np.array([5.0, -0.1], np.float32)), [0.25, -0.1])
    np.testing.assert_allclose(flt.apply(np.array([5.0, -0.1], np.float32)), [0.5, -0.1])
    assert flt.clipped == 2
    flt.reset()
    np.testing.assert_allclose(flt.apply(np.array([0.1, 0.2], np.float32)), [0.1, 0.2])
    assert flt.clipped == 2


def steady_policy_fsm(**cfg) -> SafetyFSM:
    """In POLICY at t=0 after standing steady from t=-2 s (policy_retry_s <= 2)."""
    f = SafetyFSM(SafetyConfig(**cfg))
    assert f.update(inputs(now_s=-2.0)) is Mode.STAND
    assert f.update(inputs(now_s=0.0, policy_ready=True)) is Mode.POLICY
    return f


def test_recovery_after_a_fall_goes_back_to_stand_then_policy_once_steady():
    f = steady_policy_fsm(recover_after_s=0.1, policy_retry_s=0.5)
    assert f.update(inputs(now_s=1.0, tilt_rad=0.9, policy_ready=True)) is Mode.DAMPING
    assert f.update(inputs(now_s=1.5, tilt_rad=1.5, policy_ready=True)) is Mode.DAMPING  # lying down
    assert f.update(inputs(now_s=2.0, tilt_rad=0.05, policy_ready=True)) is Mode.DAMPING  # picked up
    assert f.update(inputs(now_s=2.05, tilt_rad=0.05, policy_ready=True, state_age_s=1.0)) is Mode.DAMPING  # stale
    assert f.update(inputs(now_s=2.1, tilt_rad=0.05, policy_ready=True)) is Mode.DAMPING  # upright again from 2.1
    assert f.update(inputs(now_s=2.2, tilt_rad=0.05, policy_ready=True)) is Mode.STAND
    assert f.update(inputs(now_s=2.4, tilt_rad=0.05, policy_ready=True)) is Mode.STAND  # steady only 0.3 s
    assert f.update(inputs(now_s=2.7, tilt_rad=0.05, policy_ready=True)) is Mode.POLICY
    stand = [h for h in f.history if h["to"] == "STAND"][-1]
    assert stand["from"] == "DAMPING" and "recovered" in stand["reason"] and stand["source"] == "controller"


def test_damping_for_other_causes_stays_latched_with_recovery_on():
    f = fsm_in(Mode.STAND, recover_after_s=0.1)
    assert f.update(inputs(now_s=1.0, state_age_s=1.0)) is Mode.DAMPING  # stale, not a fall
    for t in (1.1, 1.5, 3.0):
        assert f.update(inputs(now_s=t)) is Mode.DAMPING


def test_recovery_is_off_by_default():
    f = fsm_in(Mode.STAND)
    assert f.update(inputs(now_s=1.0, tilt_rad=0.9)) is Mode.DAMPING
    assert f.update(inputs(now_s=9.0)) is Mode.DAMPING


def test_catch_hands_a_tilting_policy_to_the_controller_and_retries_when_steady():
    f = steady_policy_fsm(catch_tilt_rad=0.4, policy_retry_s=1.0)
    assert f.update(inputs(now_s=1.0, tilt_rad=0.35, policy_ready=True)) is Mode.POLICY
    assert f.update(inputs(now_s=1.1, tilt_rad=0.45, policy_ready=True)) is Mode.STAND
    assert f.counts["catches"] == 1
    last = f.history[-1]
    assert last["reason"].startswith("catch") and last["source"] == "controller"
    assert f.update(inputs(now_s=1.5, tilt_rad=0.1, policy_ready=True)) is Mode.STAND
    assert f.update(inputs(now_s=2.0, tilt_rad=0.35, policy_ready=True)) is Mode.STAND  # not upright: timer restarts
    assert f.update(inputs(now_s=2.1, tilt_rad=0.1, policy_ready=True)) is Mode.STAND
    assert f.update(inputs(now_s=3.1, tilt_rad=0.1, policy_ready=True)) is Mode.POLICY


def test_catch_below_upright_limit_still_waits_for_the_retry_time():
    f = steady_policy_fsm(catch_tilt_rad=0.25, upright_rad=0.3, policy_retry_s=1.0)
    assert f.update(inputs(now_s=1.0, tilt_rad=0.27, policy_ready=True)) is Mode.STAND  # caught
    assert f.update(inputs(now_s=1.005, tilt_rad=0.2, policy_ready=True)) is Mode.STAND  # not straight back
    assert f.update(inputs(now_s=1.9, tilt_rad=0.1, policy_ready=True)) is Mode.STAND
    assert f.update(inputs(now_s=2.0, tilt_rad=0.1, policy_ready=True)) is Mode.POLICY


def test_catch_limit_must_be_below_the_damping_limit():
    with pytest.raises(ValueError, match="catch_tilt_rad"):
        SafetyConfig(catch_tilt_rad=0.7, tilt_limit_rad=0.6)


def test_link_fault_damping_is_left_once_the_link_is_healthy_again():
    """Issue 17 item 11: a noisy serial link latched DAMPING for the rest of the run."""
    f = fsm_in(Mode.STAND, link_recover_s=0.5)
    assert f.update(inputs(now_s=1.0, state_age_s=0.2)) is Mode.DAMPING  # frames damaged
    for t in (1.2, 1.4, 1.6):  # still noisy: fresh now and then, never for 0.5 s in a row
        assert f.update(inputs(now_s=t)) is Mode.DAMPING
        assert f.update(inputs(now_s=t + 0.1, state_age_s=0.08)) is Mode.DAMPING
    assert f.update(inputs(now_s=2.0)) is Mode.DAMPING  # healthy from 2.0 on
    assert f.update(inputs(now_s=2.4)) is Mode.DAMPING
    assert f.update(inputs(now_s=2.5)) is Mode.PASSIVE
    assert "link healthy" in f.history[-1]["reason"]
    assert f.update(inputs(now_s=2.51)) is Mode.STAND  # auto_stand, upright


def test_link_recovery_does_not_wait_for_a_robot_that_lies_down_in_damping():
    """A fleet test under load: a serial write stall put a virtual robot in DAMPING, where it lies
    down; its respawn stood it up every ~0.3 s and it fell again, so "fresh AND upright for 0.5 s"
    never held and the robot stayed latched for the rest of the run. The link's run of fresh
    states counts whatever the posture; the robot leaves when upright (recover_after_s)."""
    f = fsm_in(Mode.STAND, link_recover_s=0.5, recover_after_s=0.1)
    assert f.update(inputs(now_s=1.0, state_age_s=0.2)) is Mode.DAMPING  # write stall
    t = 1.01
    while t < 1.6:  # the link is healthy from 1.01; the robot lies down
        assert f.update(inputs(now_s=t, tilt_rad=1.57)) is Mode.DAMPING
        t += 0.05
    assert f.update(inputs(now_s=1.65, tilt_rad=0.0)) is Mode.DAMPING  # respawned: upright 0 s so far
    assert f.update(inputs(now_s=1.80, tilt_rad=0.0)) is Mode.PASSIVE  # upright 0.15 s, link fresh 0.8 s
    assert "link healthy" in f.history[-1]["reason"]
    f = fsm_in(Mode.STAND, link_recover_s=0.5, recover_after_s=0.1)
    assert f.update(inputs(now_s=1.0, state_age_s=0.2)) is Mode.DAMPING
    assert f.update(inputs(now_s=1.1, tilt_rad=0.0)) is Mode.DAMPING
    assert f.update(inputs(now_s=1.3, tilt_rad=0.0)) is Mode.DAMPING  # upright, but the link only 0.2 s fresh


def test_link_recovery_does_not_leave_other_damping_causes_and_is_off_by_default():
    f = fsm_in(Mode.STAND, link_recover_s=0.1)
    assert f.update(inputs(now_s=1.0, tilt_rad=0.9)) is Mode.DAMPING  # a fall, not the link
    assert f.update(inputs(now_s=5.0)) is Mode.DAMPING
    f = fsm_in(Mode.STAND)
    assert f.update(inputs(now_s=1.0, state_age_s=0.2)) is Mode.DAMPING
    assert f.update(inputs(now_s=9.0)) is Mode.DAMPING
    assert f.update(inputs(now_s=9.1, operator=Operator.RESET)) is Mode.PASSIVE  # the operator's way

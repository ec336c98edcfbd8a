"""Balance controller: keeps the robot up on every named profile (severe included), tracks 0.2 m/s,
fails gracefully beyond what it can hold."""

from __future__ import annotations

import numpy as np
import pytest

import dataclasses

import sim_models
from sim_models.controller import LQR_GAIN, BalanceController, UnsupportedTaskError
from sim_models.profiles import load_profile


def _episode(task, profile, seed=0, detuned=False):
    env = sim_models.make_env(task, profile)
    ctrl = BalanceController(task, detuned=detuned)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    while True:
        obs, reward, terminated, truncated, _ = env.step(ctrl.act(obs))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            return np.array(observations), np.array(rewards), terminated


@pytest.mark.parametrize("profile", ["nominal", "mild", "moderate", "severe"])
def test_keeps_the_robot_upright_for_a_full_episode(profile):
    obs, rewards, terminated = _episode("stand_still", profile)
    assert not terminated and len(rewards) == 1000
    assert np.all(np.isfinite(obs))
    if profile == "nominal":
        assert np.max(np.abs(obs[:, 2])) < 0.1
        assert rewards.sum() > 0.99 * 30 * 1000


def test_tracks_0_2_m_per_s_on_move_straight():
    obs, rewards, terminated = _episode("move_straight", "nominal")
    assert not terminated and len(rewards) == 1000
    assert np.mean(obs[500:, 1]) == pytest.approx(0.2, abs=0.02)


def test_severe_is_hard_but_not_impossible_on_move_straight():
    """`severe` is the hard comparison case: the tuned controller must still finish its episodes."""
    _, rewards, terminated = _episode("move_straight", "severe")
    assert not terminated and len(rewards) == 1000


def test_fails_gracefully_beyond_what_it_can_hold():
    too_far = dataclasses.replace(load_profile("severe"), com_offset_m=(0.08, 0.0, 0.0), base_mass_scale=1.5)
    obs, rewards, terminated = _episode("stand_still", too_far)
    assert terminated and len(rewards) < 1000
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rewards))


def test_detuned_controller_gives_medium_returns_on_a_gap():
    _, expert, _ = _episode("stand_still", "moderate")
    _, medium, _ = _episode("stand_still", "moderate", detuned=True)
    assert 0.1 * expert.sum() < medium.sum() < 0.7 * expert.sum()


def test_turn_follows_the_yaw_rate_command():
    env = sim_models.make_env("turn")
    ctrl = BalanceController("turn")
    obs, _ = env.reset(seed=0, options={"command": [0.6]})
    yaw = []
    for _ in range(600):
        obs, _, terminated, _, _ = env.step(ctrl.act(obs))
        assert not terminated
        yaw.append(obs[3])
    assert np.mean(yaw[300:]) == pytest.approx(0.6, abs=0.15)


def test_stored_gains_match_the_offline_design():
    from sim_models.lqr_design import design_gains

    np.testing.assert_allclose(design_gains(), LQR_GAIN, rtol=1e-4)


def test_unknown_task_is_rejected():
    with pytest.raises(UnsupportedTaskError):
        BalanceController("cartwheel")


def test_locomotion_tracks_speed_and_height_commands():
    env = sim_models.make_env("locomotion", "mild")
    ctrl = BalanceController("locomotion")
    obs, _ = env.reset(seed=2, options={"command": [0.3, 0.26]})
    speed_err, height_err = [], []
    for step in range(1000):
        obs, _, terminated, _, _ = env.step(ctrl.act(obs))
        assert not terminated, step
        if step >= 500:
            speed_err.append(obs[15] - 0.3)
            height_err.append(obs[16] - 0.26)
    assert abs(np.mean(speed_err)) < 0.05 and abs(np.mean(height_err)) < 0.01


def test_integral_is_bounded_when_the_robot_cannot_move():
    """A robot held in place (x stuck 2 m from the reference) must not wind the integral up."""
    ctrl = BalanceController("stand_still")
    ctrl.act(np.zeros(4))
    actions = [ctrl.act(np.array([2.0, 0.0, 0.0, 0.0]))[0] for _ in range(5000)]
    assert abs(ctrl._integral) <= 1.0
    assert np.all(np.abs(actions) <= 1.0)
    ctrl.reset()
    assert ctrl.act(np.zeros(4))[0] == 0.0  # a fresh reference after reset

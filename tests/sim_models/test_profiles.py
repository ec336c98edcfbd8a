"""DynamicsProfile: TOML loading and validation, and every gap knob measurably changes dynamics."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from protocol.robot_types import MotorCommand
from sim_models.model import ROBOT_XML, SCENE_XML
from sim_models.profiles import (
    PROFILE_NAMES,
    DynamicsProfile,
    ProfileError,
    load_profile,
    sample_profile,
)
from sim_models.robot import WheelLeggedSim


def test_named_profiles_load_and_round_trip_through_toml(tmp_path):
    for name in PROFILE_NAMES:
        profile = load_profile(name)
        assert profile.name == name
        path = tmp_path / f"copy_{name}.toml"
        path.write_text(profile.to_toml())
        assert load_profile(path) == profile


def test_named_profiles_keep_the_main_gaps_markov():
    for name in PROFILE_NAMES:
        assert load_profile(name).latency_steps <= 2
    assert load_profile("nominal") == DynamicsProfile(name="nominal")


def test_unknown_key_is_a_clear_error(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("base_mas_scale = 1.2\n")
    with pytest.raises(ProfileError, match=r"unknown profile key\(s\) \['base_mas_scale'\]"):
        load_profile(path)


@pytest.mark.parametrize("values, message", [
    ({"base_mass_scale": 0.0}, "base_mass_scale must be > 0"),
    ({"wheel_damping": -1.0}, "wheel_damping must be >= 0"),
    ({"push_prob": 1.5}, r"push_prob must be in \[0, 1\]"),
    ({"latency_steps": 1.5}, "latency_steps must be an integer"),
    ({"gravity_scale": float("nan")}, "gravity_scale must be a finite number"),
    ({"com_offset_m": [0.0, 0.1]}, "com_offset_m must be 3 numbers"),
    ({"sensor_noise_std": "big"}, "sensor_noise_std must be a finite number"),
])
def test_bad_values_raise_profile_error(values, message):
    with pytest.raises(ProfileError, match=message):
        DynamicsProfile.from_dict(values)


def test_bad_names_and_files_raise_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("extreme")
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)


def test_sample_profile_is_seeded_and_valid():
    a = sample_profile(np.random.default_rng(3))
    b = sample_profile(np.random.default_rng(3))
    c = sample_profile(np.random.default_rng(4))
    assert a == b and a != c
    assert a.latency_steps <= 1


def _open_loop(profile: DynamicsProfile, steps: int = 60) -> np.ndarray:
    """Pitch, wheel speed, gyro and base state under a fixed torque sequence (seeded)."""
    sim = WheelLeggedSim("legs_locked", profile, seed=0)
    state = sim.reset(pitch_rad=0.02)
    out = []
    for k in range(steps):
        tau = 0.8 * np.sin(0.2 * k)
        state = sim.step(MotorCommand.torque([0, 0, tau, 0, 0, tau]))
        out.append(np.concatenate([state.joint_pos, state.joint_vel, state.imu_quat,
                                   state.imu_gyro, sim.data.qpos[:3]]))
    return np.array(out)


KNOBS = {
    "base_mass_scale": 1.3,
    "com_offset_m": (0.04, 0.0, 0.0),
    "floor_friction_scale": 0.02,
    "motor_strength_scale": 0.7,
    "wheel_damping": 0.2,
    "wheel_frictionloss": 0.3,
    "latency_steps": 2,
    "sensor_noise_std": 0.01,
    "sensor_bias": 0.02,
    "gravity_scale": 1.5,
    "action_noise_std": 0.5,
    "push_prob": 1.0,
}


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_every_gap_knob_changes_the_dynamics(knob):
    extra = {"push_force_n": 40.0} if knob == "push_prob" else {}
    nominal = _open_loop(DynamicsProfile())
    gapped = _open_loop(DynamicsProfile(**{knob: KNOBS[knob]}, **extra))
    assert np.all(np.isfinite(gapped))
    assert np.max(np.abs(gapped - nominal)) > 1e-3, knob


def test_profiles_never_edit_files_on_disk():
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROBOT_XML, SCENE_XML)]
    sim = WheelLeggedSim("full", "severe", seed=0)
    assert sim.model.body_mass.sum() > 12.1  # the heavier base is in the compiled model only
    after = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROBOT_XML, SCENE_XML)]
    assert before == after
    assert WheelLeggedSim("full").model.body_mass.sum() == pytest.approx(12.1)


def test_com_randomisation_draws_a_new_com_every_reset_and_moves_the_dynamics(tmp_path):
    path = tmp_path / "dr.toml"
    path.write_text('com_offset_range_m = [0.05, 0.0, 0.0]\ncom_offset_m = [0.01, 0.0, 0.0]\n')
    profile = load_profile(path)
    assert profile.randomised and not load_profile("moderate").randomised
    (tmp_path / "copy.toml").write_text(profile.to_toml())
    assert load_profile(tmp_path / "copy.toml") == profile
    sim = WheelLeggedSim("legs_locked", profile, seed=3)
    base = sim.model.body("base").id
    nominal_ipos = WheelLeggedSim("legs_locked", DynamicsProfile(com_offset_m=(0.01, 0.0, 0.0))).model.body_ipos[base].copy()
    draws = []
    for _ in range(40):
        sim.reset()
        draws.append(sim.com_draw.copy())
        np.testing.assert_allclose(sim.model.body_ipos[base], nominal_ipos + sim.com_draw)
    draws = np.array(draws)
    assert np.all(np.abs(draws[:, 0]) <= 0.05) and draws[:, 0].std() > 0.02 and not draws[:, 1:].any()
    again = WheelLeggedSim("legs_locked", profile, seed=3)  # seeded: the same draws
    again.reset()
    np.testing.assert_array_equal(again.com_draw, draws[0])

    def drift(com_x: float) -> float:  # open loop from upright: the COM decides where it falls
        sim.reset(pitch_rad=0.0)
        sim.model.body_ipos[base] = nominal_ipos + (com_x, 0.0, 0.0)
        for _ in range(60):
            state = sim.step(MotorCommand.torque([0.0] * 6))
        return float(state.imu_gyro[1])

    assert drift(0.05) * drift(-0.05) < 0  # forward and back: it tips opposite ways
    with pytest.raises(ProfileError):
        DynamicsProfile(com_offset_range_m=(0.5, 0.0, 0.0))

"""Gymnasium envs: check_env, registration, seeding, HalfCheetah gaps on a private model."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim_models
from sim_models.envs import TASK_IDS, InvalidActionError, WheelLeggedEnv
from sim_models.halfcheetah import UnknownGapError, make_halfcheetah

WHEEL_IDS = sorted(TASK_IDS.values())
CHEETAH_IDS = [f"h2o/HalfCheetah-{g}-v0" for g in ("nominal", "gravity2", "friction03", "jointnoise")]


@pytest.mark.parametrize("env_id", WHEEL_IDS)
def test_check_env_is_clean(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == 1000
    env.close()


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")  # gymnasium's own spaces
@pytest.mark.parametrize("env_id", CHEETAH_IDS)
def test_halfcheetah_variants_are_registered_and_pass_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space.shape == (17,) and env.action_space.shape == (6,)
    env.close()


def _rollout(env, seed, steps=200):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-0.3, 0.3, env.action_space.shape))
        out.append(np.append(obs, reward))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("task", ["stand_still", "turn"])
def test_same_seed_gives_identical_trajectories(task):
    a = _rollout(sim_models.make_env(task, "moderate"), seed=7)
    b = _rollout(sim_models.make_env(task, "moderate"), seed=7)
    c = _rollout(sim_models.make_env(task, "moderate"), seed=8)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_make_env_accepts_ids_profiles_and_truncates_at_the_episode_length():
    env = sim_models.make_env("h2o/MoveStraight-v0", profile="mild", seed=0)
    assert env.task.name == "move_straight" and env.profile.name == "mild"
    env.task = env.task.__class__(**{**env.task.__dict__, "max_episode_steps": 5})
    env.reset(seed=0)
    flags = [env.step(np.zeros(1))[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_turn_env_draws_its_command_and_accepts_one():
    env = sim_models.make_env("turn")
    obs, info = env.reset(seed=1)
    assert obs[4] == pytest.approx(info["command"][0])
    obs, info = env.reset(seed=1, options={"command": [0.25]})
    assert obs[4] == pytest.approx(0.25)


def test_falling_robot_terminates_with_finite_observations():
    env = WheelLeggedEnv("stand_still")
    env.reset(seed=0, options={"pitch_rad": 0.3})
    for step in range(400):
        obs, reward, terminated, truncated, _ = env.step(np.array([-1.0]))
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        if terminated:
            break
    assert terminated and abs(obs[2]) > np.pi / 6


def _cheetah_xml() -> Path:
    import gymnasium.envs.mujoco as mj

    return Path(mj.__file__).parent / "assets" / "half_cheetah.xml"


def test_halfcheetah_gaps_change_a_private_model_only():
    before = hashlib.sha256(_cheetah_xml().read_bytes()).hexdigest()
    nominal = make_halfcheetah("nominal").unwrapped.model
    gravity = make_halfcheetah("gravity2").unwrapped.model
    friction = make_halfcheetah("friction03").unwrapped.model
    np.testing.assert_allclose(gravity.opt.gravity, 2 * nominal.opt.gravity)
    np.testing.assert_allclose(friction.geom_friction, 0.3 * nominal.geom_friction)
    assert hashlib.sha256(_cheetah_xml().read_bytes()).hexdigest() == before
    assert make_halfcheetah("nominal").unwrapped.model.opt.gravity[2] == nominal.opt.gravity[2]
    with pytest.raises(UnknownGapError):
        make_halfcheetah("gravity3")


def test_halfcheetah_joint_noise_perturbs_the_executed_action_only():
    def run(gap):
        env = make_halfcheetah(gap)
        env.reset(seed=0)
        action = np.full(6, 0.1, np.float32)
        obs = [env.step(action)[0] for _ in range(20)]
        return np.array(obs), action

    clean, a1 = run("nominal")
    noisy, a2 = run("jointnoise")
    np.testing.assert_array_equal(a1, a2)  # the caller's action is untouched
    assert np.max(np.abs(clean - noisy)) > 1e-2


def test_make_env_builds_halfcheetah_variants_by_id_or_by_profile():
    by_id = sim_models.make_env("h2o/HalfCheetah-gravity2-v0", seed=0)
    by_profile = sim_models.make_env("halfcheetah", profile="friction03", seed=0)
    nominal = sim_models.make_env("halfcheetah", profile="nominal")
    g0 = nominal.unwrapped.model.opt.gravity[2]
    assert by_id.unwrapped.model.opt.gravity[2] == pytest.approx(2 * g0)
    np.testing.assert_allclose(by_profile.unwrapped.model.geom_friction,
                               0.3 * nominal.unwrapped.model.geom_friction)


def test_invalid_actions_raise_a_typed_error_and_are_counted():
    env = WheelLeggedEnv("stand_still")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="finite"):
        env.step(np.array([np.nan]))
    with pytest.raises(InvalidActionError, match=r"shape \(1,\)"):
        env.step(np.zeros(2))
    assert env.invalid_actions == 2
    obs, reward, *_ = env.step(np.zeros(1))  # the env is still usable
    assert np.all(np.isfinite(obs)) and np.isfinite(reward)


def test_private_halfcheetah_copy_matches_the_installed_model_without_warnings(tmp_path, monkeypatch):
    import mujoco

    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    ours = make_halfcheetah("nominal").unwrapped.model
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # no deprecation warning from our copy
    installed = mujoco.MjModel.from_xml_path(str(_cheetah_xml()))  # the installed file as is
    np.testing.assert_allclose(ours.body_mass, installed.body_mass, rtol=1e-12)
    np.testing.assert_allclose(ours.body_inertia, installed.body_inertia, rtol=1e-12)
    assert ours.body_mass.sum() == pytest.approx(14.0)


@pytest.mark.parametrize("task, profile", [("halfcheetah", "gravity2"), ("h2o/HalfCheetah-jointnoise-v0", None)])
def test_make_env_halfcheetah_truncates_at_the_registered_episode_length(task, profile):
    # Regression: make_env built HalfCheetah without gymnasium's TimeLimit, so an evaluation
    # episode (which waits for terminated or truncated) never ended.
    from sim_models.envs import make_env

    env = make_env(task, profile) if profile else make_env(task)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    for step in range(1, sim_models.HALFCHEETAH_MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, _ = env.step(zero)
        assert not terminated
        if truncated:
            break
    assert truncated and step == sim_models.HALFCHEETAH_MAX_EPISODE_STEPS
    env.close()

"""Task-dependent learner defaults: one step pays at most ~1 where measured to help, user overrides win,
gym keeps the paper's scale."""

from __future__ import annotations

import numpy as np
import pytest

from learner import algorithms
from learner.task_defaults import TASK_REWARD_SCALE, algorithm_config, task_algo_defaults
from sim_models.tasks import TASKS


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_robot_task_has_a_scale_that_makes_its_best_step_pay_about_one(task):
    spec = TASKS[task]
    zero_obs, zero_act = np.zeros(spec.obs_dim, np.float32), np.zeros(spec.act_dim, np.float32)
    best_step = spec.reward(zero_obs, zero_act, zero_obs)  # at rest, on target: the constant term
    assert TASK_REWARD_SCALE[task] * best_step == pytest.approx(1.0, abs=0.01)


def test_user_overrides_beat_task_defaults_which_beat_dataclass_defaults():
    cfg = algorithm_config("cql", "stand_still", hidden="32-32", seed=3)
    assert cfg["reward_scale"] == pytest.approx(1 / 30) and cfg["hidden"] == "32-32" and cfg["seed"] == 3
    cfg = algorithm_config("cql", "stand_still", hidden="32-32", seed=3, overrides={"reward_scale": 1.0})
    assert cfg["reward_scale"] == 1.0
    algo = algorithms.make("cql", 4, 1, algorithm_config("cql", "move_straight", hidden="8-8", seed=0))
    assert algo.cfg.reward_scale == pytest.approx(1 / 15)


def test_algorithms_the_scale_did_not_help_keep_the_paper_scale():
    assert "reward_scale" not in algorithm_config("h2o", "stand_still", hidden="8-8", seed=0)
    assert algorithms.make("h2o", 4, 1, algorithm_config("h2o", "stand_still", hidden="8-8", seed=0)).cfg.reward_scale == 1.0


def test_gym_tasks_keep_the_paper_defaults():
    assert task_algo_defaults("gym:HalfCheetah-v5", "h2o") == {}
    cfg = algorithm_config("h2o", "gym:HalfCheetah-v5", hidden="256-256", seed=0, disc_hidden="256-256")
    assert "reward_scale" not in cfg and cfg["disc_hidden"] == "256-256"


def test_disc_hidden_only_goes_to_algorithms_with_classifiers():
    assert "disc_hidden" not in algorithm_config("sac", "stand_still", hidden="8-8", seed=0, disc_hidden="8-8")
    assert algorithm_config("darc", "stand_still", hidden="8-8", seed=0, disc_hidden="16-16")["disc_hidden"] == "16-16"

"""Learning smoke test: H2O on the robot's stand_still task (sim nominal, "real" moderate) learns to
balance longer than a random policy in the REAL profile, from a small medium-quality dataset.

Small on purpose (2-core budget): 32-32 networks, 64+64 batches, 3000 real transitions from the
detuned balance controller with noise, a few thousand updates. Rewards are scaled by 0.01 so the
critics reach their scale (30 per step over ~1000 steps) within the budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from learner.rollout import evaluate, make_env
from learner.train import EVAL_SEED_OFFSET, Run, TrainConfig

SEED = 0
EPISODES = 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_h2o_beats_random_policy_in_the_real_profile(tmp_path):
    cfg = TrainConfig(task="stand_still", sim_profile="nominal", real_profile="moderate", collect_steps=3000,
                      total_updates=3000, updates_per_epoch=500, sim_steps_per_epoch=500, eval_every=1000,
                      eval_episodes=EPISODES, hidden="32-32", disc_hidden="32-32", real_batch=64, sim_batch=64,
                      disc_batch=64, algo={"reward_scale": 0.01}, run_dir=str(tmp_path), progress=False, seeds=[SEED])
    summary = Run(cfg, SEED).train()[0]
    rng = np.random.default_rng(123)
    env = make_env("stand_still", "moderate", seed=SEED + EVAL_SEED_OFFSET)
    random_return = evaluate(env, lambda obs: rng.uniform(-1.0, 1.0, 1), EPISODES, SEED + EVAL_SEED_OFFSET)
    assert summary["updates"] == 3000
    assert summary["final_real_return"] > 1.3 * random_return["return_mean"], (summary, random_return)
    assert summary["final_real_return"] > summary["initial_real_return"], summary

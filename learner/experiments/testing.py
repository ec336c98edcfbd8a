"""A tiny grid for tests: 2 algorithms x 2 seeds, 20 updates, 16-16 networks, 40-step episodes.

Shared by the grid's smoke test and the gates' test (tests import no other test modules under
pytest's importlib mode). Fill in `out` and `results` with str.format.
"""

TINY_GRID_TOML = """
[grid]
name = "smoke"
tasks = ["stand_still"]
algorithms = ["h2o", "sac"]
seeds = [0, 1]
total_updates = 20
out_dir = "{out}"
results_dir = "{results}"
workers = 2

[[gaps]]
name = "moderate"

[[datasets]]
name = "medium"
kind = "medium"
steps = 400
noise = 0.3

[train]
hidden = "16-16"
disc_hidden = "16-16"
real_batch = 16
sim_batch = 16
disc_batch = 16
updates_per_epoch = 10
sim_steps_per_epoch = 60
max_episode_steps = 40
eval_every = 10
eval_episodes = 1
checkpoint_every = 10
"""

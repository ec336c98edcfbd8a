"""Simulator side of the H2O wheel-legged project: MJCF, tasks, gap profiles, envs, data.

`import sim_models` registers the gymnasium ids (h2o/StandStill-v0, ...) when gymnasium is
installed, without importing mujoco: the robot imports `sim_models.tasks` and
`sim_models.controller`, which are numpy-only.
"""

from __future__ import annotations

from typing import Any

# The paper's HalfCheetah gaps (sim_models.halfcheetah builds them); here so that registering the
# ids needs neither mujoco nor gymnasium's mujoco envs.
HALFCHEETAH_GAPS: tuple[str, ...] = ("nominal", "gravity2", "friction03", "jointnoise")
HALFCHEETAH_MAX_EPISODE_STEPS = 1000  # gymnasium's HalfCheetah-v5 registration (the D4RL episode length)


def make_env(task: str, profile: Any = "nominal", seed: int | None = None, **kw: Any):
    """See sim_models.envs.make_env (imported lazily: it needs mujoco and gymnasium)."""
    from sim_models.envs import make_env as _make_env

    return _make_env(task, profile=profile, seed=seed, **kw)


def _register() -> None:
    try:
        import gymnasium as gym
    except ImportError:  # the robot computer: no gymnasium, nothing to register
        return
    from sim_models.tasks import ENV_IDS, TASKS

    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="sim_models.envs:WheelLeggedEnv", kwargs={"task": task},
                         max_episode_steps=TASKS[task].max_episode_steps)
    for gap in HALFCHEETAH_GAPS:
        env_id = f"h2o/HalfCheetah-{gap}-v0"
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="sim_models.halfcheetah:make_halfcheetah",
                         kwargs={"gap": gap}, max_episode_steps=HALFCHEETAH_MAX_EPISODE_STEPS)


_register()

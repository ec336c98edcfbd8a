"""Gymnasium envs: a thin layer over WheelLeggedSim + TaskSpec (the functions the robot uses).

Why thin: the env must produce exactly the observation and reward the onboard loop computes from
a firmware RobotState, so it only calls `TaskSpec.action_to_command`, `WheelLeggedSim.step`,
`TaskSpec.observe`, `TaskSpec.reward`, `TaskSpec.terminated`, and keeps its own per-step Python
small (the target is env step within 25% of raw `mj_step` cost; see docs/bench/sim_models.md).

Seeding: `reset(seed=s)` reseeds the simulator's noise generator (initial pitch, sensor and action
noise, pushes) and the command draw from `s`, so the same seed gives the same trajectory.
A simulator blow-up (non-finite state) ends the episode as terminated with a finite observation.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import gymnasium as gym
import numpy as np

from sim_models.profiles import DynamicsProfile, load_profile
from sim_models.robot import DEFAULT_INIT_PITCH_RAD, WheelLeggedSim
from sim_models.tasks import ENV_IDS, TaskSpec, get_task

log = logging.getLogger(__name__)

TASK_IDS = ENV_IDS
RENDER_WIDTH, RENDER_HEIGHT = 320, 240
OBS_BOUND = 1e6  # finite (check_env asks for it); no quantity in these observations comes near it


class InvalidActionError(ValueError):
    """An action with the wrong shape or a non-finite value (a learner bug: fail loudly)."""


class WheelLeggedEnv(gym.Env):
    """One task on the wheel-legged robot under one dynamics profile."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        task: str = "stand_still",
        profile: "str | DynamicsProfile | None" = "nominal",
        render_mode: str | None = None,
        init_pitch_rad: float = DEFAULT_INIT_PITCH_RAD,
        command: "np.ndarray | None" = None,
        seed: int | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task: TaskSpec = get_task(task)
        self.profile = load_profile(profile)
        self.render_mode = render_mode
        self.sim = WheelLeggedSim(self.task.variant, self.profile, seed=seed,
                                  init_pitch_rad=init_pitch_rad)
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (self.task.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.task.act_dim,), np.float32)
        self._action_shape = (self.task.act_dim,)
        self._fixed_command = None if command is None else np.asarray(command, np.float32)
        self._command = np.asarray(self.task.default_command, np.float32)
        self._obs = np.zeros(self.task.obs_dim, np.float32)
        self._steps = 0
        self._renderer = None
        self.nonfinite_episodes = 0
        self.invalid_actions = 0
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        sim_seed = None if seed is None else int(self.np_random.integers(2**63 - 1))
        state = self.sim.reset(seed=sim_seed, pitch_rad=options.get("pitch_rad"))
        if "command" in options:
            self._command = np.asarray(options["command"], np.float32)
        elif self._fixed_command is not None:
            self._command = self._fixed_command
        elif self.task.command_low:
            self._command = self.task.sample_command(self.np_random)
        self._steps = 0
        self._obs = self.task.observe(state, self._command)
        return self._obs, {"command": self._command}

    def step(self, action):
        task = self.task
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self._action_shape or not math.isfinite(float(action.sum())):
            self.invalid_actions += 1
            raise InvalidActionError(
                f"action must be finite with shape {self._action_shape}, got {action!r}")
        state = self.sim.step(task.action_to_command(action))
        next_obs = task.observe(state, self._command)
        self._steps += 1
        truncated = self._steps >= task.max_episode_steps
        if math.isfinite(float(next_obs.sum(dtype=np.float64))):
            reward = task.reward(self._obs, action, next_obs)
            terminated = task.terminated(next_obs)
            info = {"faults": state.faults}
        else:
            # Simulator blow-up: end the episode, never hand NaN to a learner.
            self.nonfinite_episodes += 1
            log.warning("non-finite observation; episode terminated (%d so far)",
                        self.nonfinite_episodes)
            next_obs = np.nan_to_num(next_obs, nan=0.0, posinf=0.0, neginf=0.0)
            reward, terminated, info = 0.0, True, {"faults": state.faults, "nonfinite": True}
        self._obs = next_obs
        return next_obs, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from sim_models.render import make_renderer

            self._renderer = make_renderer(self.sim.model, RENDER_WIDTH, RENDER_HEIGHT)
        self._renderer.update_scene(self.sim.data, camera="track")
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_env(task: str, profile: "str | DynamicsProfile | None" = "nominal", seed: int | None = None,
             **kw: Any) -> gym.Env:
    """A wheel-legged task env (by task name or registered id) or a paper HalfCheetah variant.

    Returns the env without gymnasium's wrappers (no per-step checker overhead); it truncates
    itself at the task's `max_episode_steps`. `seed` seeds the first reset.
    """
    by_id = {v: k for k, v in TASK_IDS.items()}
    if task.startswith("h2o/HalfCheetah") or task.startswith("halfcheetah"):
        from sim_models.halfcheetah import make_halfcheetah

        gap = task.split("-")[1] if task.startswith("h2o/") else (profile or "nominal")
        env = make_halfcheetah(gap, **kw)
    else:
        env = WheelLeggedEnv(by_id.get(task, task), profile=profile, seed=seed, **kw)
    if seed is not None:
        env.reset(seed=seed)
    return env

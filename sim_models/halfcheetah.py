"""The H2O paper's HalfCheetah dynamics gaps as gymnasium envs.

Gaps (reference/h2o_algorithm.md "Setting"): gravity x2 (all components), friction x0.3 (all three
coefficients of every geom), joint noise N(0, 1) added to the *executed* action only (the agent's
clean action is what the caller stores). The model is gymnasium's own half_cheetah.xml, read from
the installed package; each env compiles its private MjModel and the gap is applied to that copy
in memory. Installed files are never edited (the reference code overwrote them).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

HALFCHEETAH_GAPS: tuple[str, ...] = ("nominal", "gravity2", "friction03", "jointnoise")
GRAVITY_SCALE = 2.0
FRICTION_SCALE = 0.3
JOINT_NOISE_STD = 1.0


class UnknownGapError(ValueError):
    """A HalfCheetah gap name not in HALFCHEETAH_GAPS."""


class ExecutedActionNoise(gym.Wrapper):
    """Adds N(0, std) to the action the simulator executes; the caller keeps the clean one."""

    def __init__(self, env: gym.Env, std: float) -> None:
        super().__init__(env)
        self.std = float(std)

    def step(self, action):
        noisy = np.asarray(action, np.float64) + self.np_random.normal(0.0, self.std, np.shape(action))
        low, high = self.action_space.low, self.action_space.high
        return self.env.step(np.clip(noisy, low, high).astype(np.float32))


def make_halfcheetah(gap: str = "nominal", **kw: Any) -> gym.Env:
    """HalfCheetah-v5 with one of the paper's gaps applied to its private compiled model."""
    if gap not in HALFCHEETAH_GAPS:
        raise UnknownGapError(f"unknown HalfCheetah gap {gap!r}; expected one of {HALFCHEETAH_GAPS}")
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    env = HalfCheetahEnv(**kw)
    model = env.unwrapped.model
    if gap == "gravity2":
        model.opt.gravity[:] *= GRAVITY_SCALE
    elif gap == "friction03":
        model.geom_friction[:] *= FRICTION_SCALE
    if gap == "jointnoise":
        return ExecutedActionNoise(env, JOINT_NOISE_STD)
    return env

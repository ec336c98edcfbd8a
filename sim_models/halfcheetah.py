"""The H2O paper's HalfCheetah dynamics gaps as gymnasium envs.

Gaps (the H2O paper's experimental setting, Niu et al. 2022, section 5): gravity x2 (all components), friction x0.3 (all three
coefficients of every geom), joint noise N(0, 1) added to the *executed* action only (the agent's
clean action is what the caller stores). The model is a private, in-memory copy of gymnasium's
half_cheetah.xml, read from the installed package at run time; the gap is applied to that copy.
Installed files are never edited (the reference code overwrote them).

The private copy also drops the XML's deprecated `settotalmass` compiler attribute and applies it
with `mj_setTotalmass` after compiling (same scaling), so MuJoCo 3 logs no deprecation warning
(and writes no MUJOCO_LOG.TXT) for every env built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from sim_models import HALFCHEETAH_GAPS

GRAVITY_SCALE = 2.0
FRICTION_SCALE = 0.3
JOINT_NOISE_STD = 1.0
_TOTAL_MASS_ATTR = re.compile(r'\s+settotalmass="([^"]+)"')


class UnknownGapError(ValueError):
    """A HalfCheetah gap name not in HALFCHEETAH_GAPS."""


def private_model(xml_path: str | Path, gap: str) -> mujoco.MjModel:
    """Compile a private copy of the installed XML (text read, edited in memory) with `gap`."""
    if gap not in HALFCHEETAH_GAPS:
        raise UnknownGapError(f"unknown HalfCheetah gap {gap!r}; expected one of {HALFCHEETAH_GAPS}")
    xml = Path(xml_path).read_text()
    total = _TOTAL_MASS_ATTR.search(xml)
    model = mujoco.MjModel.from_xml_string(_TOTAL_MASS_ATTR.sub("", xml))
    if total is not None:
        mujoco.mj_setTotalmass(model, float(total.group(1)))
    if gap == "gravity2":
        model.opt.gravity[:] *= GRAVITY_SCALE
    elif gap == "friction03":
        model.geom_friction[:] *= FRICTION_SCALE
    return model


class GapHalfCheetahEnv(HalfCheetahEnv):
    """HalfCheetah-v5 whose model is the private copy with one of the paper's gaps."""

    def __init__(self, gap: str = "nominal", **kw: Any) -> None:
        if gap not in HALFCHEETAH_GAPS:
            raise UnknownGapError(f"unknown HalfCheetah gap {gap!r}; expected one of {HALFCHEETAH_GAPS}")
        self.gap = gap
        super().__init__(**kw)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = private_model(self.fullpath, self.gap)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)


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
    """HalfCheetah-v5 with one of the paper's gaps (joint noise as an executed-action wrapper)."""
    env = GapHalfCheetahEnv(gap, **kw)
    if gap == "jointnoise":
        return ExecutedActionNoise(env, JOINT_NOISE_STD)
    return env

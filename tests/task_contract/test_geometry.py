"""The contract's geometry is the compiled MJCF's: wheel radius, thigh and shank lengths, the
joint-zero crouch angles (a test in the contract's package; the MJCF lives in sim_models)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from protocol.robot_types import ACTUATOR_NAMES
from sim_models.model import load_model
from sim_models.robot import WheelLeggedSim
from task_contract import geometry
from task_contract.tasks import TASKS, base_height


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return load_model("full")


def _pitch_of_body(m: mujoco.MjModel, body: str) -> float:
    """The body's rotation about +y relative to its parent (its MJCF euler)."""
    q = m.body(body).quat  # w, x, y, z
    return 2.0 * math.atan2(q[2], q[0])


@pytest.mark.parametrize("side", ["left", "right"])
def test_leg_geometry_matches_the_compiled_mjcf(model, side):
    assert np.linalg.norm(model.body(f"{side}_shank").pos) == pytest.approx(geometry.THIGH_M)
    shank_to_axle = model.body(f"{side}_wheel").pos
    assert math.hypot(shank_to_axle[0], shank_to_axle[2]) == pytest.approx(geometry.SHANK_M)
    assert _pitch_of_body(model, f"{side}_thigh") == pytest.approx(geometry.HIP_ZERO_RAD)
    assert _pitch_of_body(model, f"{side}_shank") == pytest.approx(geometry.KNEE_ZERO_RAD)
    assert model.geom(f"{side}_tyre").size[0] == pytest.approx(geometry.WHEEL_RADIUS_M)


def test_base_height_from_kinematics_matches_the_simulated_base():
    sim = WheelLeggedSim("full", seed=0)
    for pitch in (0.0, 0.15, -0.1):
        state = sim.reset(pitch_rad=pitch)
        assert base_height(state) == pytest.approx(sim.data.qpos[2], abs=5e-4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_actuator_the_task_drives_exists_with_its_gains_in_range(model, name):
    """The action table names real actuators; a position drive's target stays in the joint range."""
    for actuator, drive in zip(ACTUATOR_NAMES, TASKS[name].drives.drives):
        if drive.action is None or drive.mode != "position":
            continue
        lo, hi = model.jnt_range[model.actuator(actuator).trnid[0]]
        assert lo <= -drive.scale and drive.scale <= hi

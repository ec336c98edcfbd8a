"""Load the wheel-legged MJCF as a fresh MuJoCo spec/model, in one of its two variants.

Why a module: the files on disk are never edited. Variants (legs locked) and dynamics-gap profiles
are scripted edits applied to a freshly parsed `mujoco.MjSpec` / compiled `mujoco.MjModel`, so
every simulator instance starts from the same committed XML (as mujoco_menagerie models do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import mujoco

MODEL_DIR = Path(__file__).resolve().parent / "wheel_legged"
ROBOT_XML = MODEL_DIR / "wheel_legged.xml"
SCENE_XML = MODEL_DIR / "scene.xml"

Variant = Literal["full", "legs_locked"]
VARIANTS: tuple[str, ...] = ("full", "legs_locked")
LEG_JOINTS: tuple[str, ...] = ("left_hip", "left_knee", "right_hip", "right_knee")
BASE_BODY = "base"
WHEEL_BODIES: tuple[str, str] = ("left_wheel", "right_wheel")
WHEEL_RADIUS_M = 0.065
FLOOR_GEOM = "floor"


class ModelVariantError(ValueError):
    """An unknown model variant was asked for."""


def load_spec(variant: str = "full") -> mujoco.MjSpec:
    """Parse scene.xml (floor + robot) and apply the variant's scripted edits.

    legs_locked: the hip and knee joints are deleted, which welds thigh and shank at joint zero
    (the nominal crouch); their actuators and sensors go too, and the home keyframe is cut to
    the remaining coordinates. This is the paper's one-torque setting with two wheel DOFs.
    """
    if variant not in VARIANTS:
        raise ModelVariantError(f"unknown model variant {variant!r}; expected one of {VARIANTS}")
    spec = mujoco.MjSpec.from_file(str(SCENE_XML))
    if variant == "legs_locked":
        _lock_legs(spec)
    return spec


def _lock_legs(spec: mujoco.MjSpec) -> None:
    home = spec.key("home")
    qpos = list(home.qpos)
    ctrl = list(home.ctrl)
    full = spec.compile()
    drop_qpos = {int(full.joint(j).qposadr[0]) for j in LEG_JOINTS}
    drop_ctrl = {full.actuator(j).id for j in LEG_JOINTS}
    for name in LEG_JOINTS:
        spec.delete(spec.sensor(f"{name}_pos"))
        spec.delete(spec.sensor(f"{name}_vel"))
        spec.delete(spec.actuator(name))
        spec.delete(spec.joint(name))
    home.qpos = [v for i, v in enumerate(qpos) if i not in drop_qpos]
    home.ctrl = [v for i, v in enumerate(ctrl) if i not in drop_ctrl]
    spec.modelname = "wheel_legged_legs_locked"


def load_model(variant: str = "full") -> mujoco.MjModel:
    """A freshly compiled model of the variant (nominal dynamics)."""
    return load_spec(variant).compile()

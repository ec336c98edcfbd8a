"""Dynamics-gap profiles: how the "real" robot differs from the nominal simulator.

Why: H2O learns from a simulator whose dynamics are wrong in known-unknown ways. A profile is the
hidden truth of a virtual "real" robot (the virtual firmware runs one) or a randomisation draw.
It is applied to a FRESH compiled model (`apply_to_model`) plus run-time effects that
`sim_models.robot.WheelLeggedSim` applies each control step (motor strength, latency, noise,
pushes). Files on disk are never edited.

The named profiles (nominal, mild, moderate, severe; TOML files in sim_models/profiles/) keep their
main gaps Markov (COM, mass, wheel losses, friction, motor strength) with at most a small latency:
with a 4-D observation, latency makes the real system non-Markov and every method collapses on it
(docs/results.md has the measurements; the history observation, task option action_history, is
the remedy).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from sim_models.model import BASE_BODY, WHEEL_BODIES

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILE_NAMES: tuple[str, ...] = ("nominal", "mild", "moderate", "severe")


class ProfileError(ValueError):
    """A profile file or value is invalid (unknown key, wrong type, out of range)."""


@dataclass(frozen=True)
class DynamicsProfile:
    """One set of dynamics-gap knobs. Defaults = the nominal model."""

    name: str = "custom"
    """Label stored in dataset metadata and logs."""
    base_mass_scale: float = 1.0
    """Multiplies the base body's mass and inertia."""
    com_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Added to the base body's centre of mass, base frame (x forward), metres."""
    floor_friction_scale: float = 1.0
    """Multiplies every geom's friction (contact friction is the max over the pair)."""
    motor_strength_scale: float = 1.0
    """Multiplies every actuator's produced torque and its torque limit."""
    wheel_damping: float = 0.0
    """Viscous damping added to each wheel joint, N·m·s/rad."""
    wheel_frictionloss: float = 0.0
    """Dry friction added to each wheel joint, N·m."""
    latency_steps: int = 0
    """Actuation delay in control steps: a command takes effect this many steps later."""
    sensor_noise_std: float = 0.0
    """Gaussian noise on joint pos/vel, gyro, accelerometer and IMU orientation (rad, rad/s, m/s^2)."""
    sensor_bias: float = 0.0
    """Constant IMU bias: pitch mounting error (rad) and gyro offset on every axis (rad/s)."""
    gravity_scale: float = 1.0
    """Multiplies gravity."""
    action_noise_std: float = 0.0
    """Gaussian noise on the executed feed-forward torque of every actuator, N·m."""
    push_prob: float = 0.0
    """Probability per control step that a horizontal push starts on the base."""
    push_force_n: float = 0.0
    """Magnitude of a push, N."""
    push_duration_steps: int = 10
    """How many control steps a push lasts."""
    com_offset_range_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Domain randomisation of what a team does not know: at every reset the base's COM moves by a
    uniform draw in +-this (per axis, metres) on top of com_offset_m. A simulator profile, not a
    "real" robot's: the learner's simulator covering a COM it cannot measure (docs/sim_models.md)."""

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], name: str | None = None) -> "DynamicsProfile":
        """Build from a TOML-like dict; unknown keys and bad types raise ProfileError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ProfileError(f"unknown profile key(s) {unknown}; valid keys: {sorted(known)}")
        kwargs = dict(values)
        if name is not None and "name" not in kwargs:
            kwargs["name"] = name
        for key in ("com_offset_m", "com_offset_range_m"):
            if key in kwargs:
                com = kwargs[key]
                if not isinstance(com, (list, tuple)) or len(com) != 3:
                    raise ProfileError(f"{key} must be 3 numbers [x, y, z], got {com!r}")
                kwargs[key] = tuple(com)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> "DynamicsProfile":
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError as err:
            raise ProfileError(f"profile file not found: {path}") from err
        except tomllib.TOMLDecodeError as err:
            raise ProfileError(f"profile file {path} is not valid TOML: {err}") from err
        return cls.from_dict(values, name=path.stem)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["com_offset_m"] = list(self.com_offset_m)
        values["com_offset_range_m"] = list(self.com_offset_range_m)
        if not any(self.com_offset_range_m):  # profiles without randomisation read as before
            del values["com_offset_range_m"]
        return values

    @property
    def randomised(self) -> bool:
        """Some dynamics are drawn again at every reset."""
        return any(self.com_offset_range_m)

    def to_toml(self) -> str:
        """TOML text that `from_toml` reads back to an equal profile."""
        lines = []
        for key, value in self.to_dict().items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(repr(float(v)) for v in value)}]")
            else:
                lines.append(f"{key} = {value!r}")
        return "\n".join(lines) + "\n"

    def apply_to_model(self, model: mujoco.MjModel) -> None:
        """Apply the static knobs to a freshly compiled model (in place; never a file)."""
        base = model.body(BASE_BODY).id
        model.body_mass[base] *= self.base_mass_scale
        model.body_inertia[base] *= self.base_mass_scale
        model.body_ipos[base] += np.asarray(self.com_offset_m)
        # The compiler marks a body whose COM sits at its origin "same frame" and then ignores
        # body_ipos; clear the flag or a COM offset silently does nothing.
        model.body_sameframe[base] = 0
        model.geom_friction[:] *= self.floor_friction_scale
        for wheel in WHEEL_BODIES:
            dof = model.jnt_dofadr[model.body(wheel).jntadr[0]]
            model.dof_damping[dof] += self.wheel_damping
            model.dof_frictionloss[dof] += self.wheel_frictionloss
        model.opt.gravity[:] *= self.gravity_scale
        mujoco.mj_setConst(model, mujoco.MjData(model))  # derived masses/weights after the edits


_POSITIVE = ("base_mass_scale", "floor_friction_scale", "motor_strength_scale", "gravity_scale")
_NON_NEGATIVE = (
    "wheel_damping",
    "wheel_frictionloss",
    "sensor_noise_std",
    "action_noise_std",
    "push_force_n",
)


def _validate(p: DynamicsProfile) -> None:
    if not isinstance(p.name, str):
        raise ProfileError(f"name must be a string, got {p.name!r}")
    for key in (*_POSITIVE, *_NON_NEGATIVE, "sensor_bias", "push_prob"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ProfileError(f"{key} must be a finite number, got {value!r}")
    for key in _POSITIVE:
        if getattr(p, key) <= 0:
            raise ProfileError(f"{key} must be > 0, got {getattr(p, key)!r}")
    for key in _NON_NEGATIVE:
        if getattr(p, key) < 0:
            raise ProfileError(f"{key} must be >= 0, got {getattr(p, key)!r}")
    if not 0.0 <= p.push_prob <= 1.0:
        raise ProfileError(f"push_prob must be in [0, 1], got {p.push_prob!r}")
    for key in ("latency_steps", "push_duration_steps"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProfileError(f"{key} must be an integer >= 0, got {value!r}")
    if len(p.com_offset_m) != 3 or not all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in p.com_offset_m
    ):
        raise ProfileError(f"com_offset_m must be 3 finite numbers, got {p.com_offset_m!r}")
    r = p.com_offset_range_m
    if len(r) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                              and 0 <= v <= 0.2 for v in r):
        raise ProfileError(f"com_offset_range_m must be 3 numbers in [0, 0.2] m, got {r!r}")


def load_profile(name_or_path: "str | Path | DynamicsProfile | None") -> DynamicsProfile:
    """A named profile (nominal, mild, moderate, severe), a TOML path, or a profile unchanged."""
    if name_or_path is None:
        return DynamicsProfile(name="nominal")
    if isinstance(name_or_path, DynamicsProfile):
        return name_or_path
    if str(name_or_path) in PROFILE_NAMES:
        return DynamicsProfile.from_toml(PROFILE_DIR / f"{name_or_path}.toml")
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return DynamicsProfile.from_toml(path)
    raise ProfileError(f"unknown profile {name_or_path!r}: use one of {PROFILE_NAMES} or a .toml path")


def sample_profile(rng: np.random.Generator, name: str = "sampled") -> DynamicsProfile:
    """A random Markov-gap profile (domain randomisation or a random "real" robot).

    Ranges span nominal to a bit beyond "moderate"; latency is at most one step.
    """
    return DynamicsProfile(
        name=name,
        base_mass_scale=float(rng.uniform(0.8, 1.4)),
        com_offset_m=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.01, 0.01)), 0.0),
        floor_friction_scale=float(rng.uniform(0.6, 1.2)),
        motor_strength_scale=float(rng.uniform(0.8, 1.1)),
        wheel_damping=float(rng.uniform(0.0, 0.15)),
        wheel_frictionloss=float(rng.uniform(0.0, 0.25)),
        latency_steps=int(rng.integers(0, 2)),
        sensor_noise_std=float(rng.uniform(0.0, 0.005)),
        sensor_bias=float(rng.uniform(-0.01, 0.01)),
        gravity_scale=1.0,
        action_noise_std=float(rng.uniform(0.0, 0.1)),
    )

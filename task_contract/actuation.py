"""Action -> motor command and back, from one table per task (which action drives which motor).

Why a table: the robot's command mapping, the simulator's fast ctrl path, the recordings tools'
inverse (command -> action) and the exported policy's metadata (the scale of every actuator) all
read the same `Drive` entries, so none of them can guess a mapping of its own.

A driven actuator takes `scale * clip(a[action], -1, 1)` as a torque (N·m, `tau_ff`) or as a
position target about joint zero (rad, `q_des`, with the constant gains kp, kd). An undriven one
gets the zero command (the legs of the legs-locked tasks). NaN passes through the clip so the
robot rejects a non-finite command instead of hiding it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from protocol.robot_types import ACTUATOR_NAMES, N_ACTUATORS, MotorCommand

TORQUE, POSITION = "torque", "position"
UNITS = {TORQUE: "N*m", POSITION: "rad"}


def _constant(values) -> np.ndarray:
    """A read-only float32 array owning its data: the simulator reuses gains written from one."""
    a = np.array(values, np.float32)
    a.flags.writeable = False
    return a


ZEROS = _constant(np.zeros(N_ACTUATORS))


def clip_unit(a: float) -> float:
    """Clip to [-1, 1]; NaN stays NaN (the robot rejects a non-finite command, never hides it)."""
    return -1.0 if a < -1.0 else (1.0 if a > 1.0 else a)


@dataclass(frozen=True)
class Drive:
    """How one actuator follows the action (None: not driven, zero command)."""

    action: int | None
    mode: str = TORQUE
    scale: float = 0.0  # N·m (torque) or rad (position) per unit action
    kp: float = 0.0  # position mode: N·m/rad
    kd: float = 0.0  # position mode: N·m·s/rad


IDLE = Drive(None)


class ActuatorMap:
    """The six `Drive`s of a task (ACTUATOR_NAMES order) and the mappings built from them."""

    def __init__(self, drives: tuple[Drive, ...]) -> None:
        if len(drives) != N_ACTUATORS:
            raise ValueError(f"need {N_ACTUATORS} drives, got {len(drives)}")
        self.drives = drives
        self.driven = tuple((i, d) for i, d in enumerate(drives) if d.action is not None)
        self.kp = _constant([d.kp for d in drives]) if any(d.kp for d in drives) else ZEROS
        self.kd = _constant([d.kd for d in drives]) if any(d.kd for d in drives) else ZEROS
        self.position_slots = tuple(i for i, d in self.driven if d.mode == POSITION)
        self.torque_slots = tuple(i for i, d in self.driven if d.mode == TORQUE)
        # Per actuator: the action column and scale (column 0, scale 0 where undriven), for arrays.
        self.columns = np.array([d.action or 0 for d in drives])
        self.scales = np.array([d.scale if d.action is not None else 0.0 for d in drives])

    def targets(self, a: list) -> list:
        """Per-actuator target (N·m or rad) for action values `a`: scale * clip(a[i]); 0.0 idle."""
        out = [0.0] * N_ACTUATORS
        for i, d in self.driven:
            out[i] = d.scale * clip_unit(a[d.action])
        return out

    def command(self, a: list) -> MotorCommand:
        """The MotorCommand of action values `a` (float32 fields; constant gain arrays)."""
        t = self.targets(a)
        q_des = ZEROS if not self.position_slots else np.array(
            [t[i] if i in self.position_slots else 0.0 for i in range(N_ACTUATORS)], np.float32)
        tau = ZEROS if not self.torque_slots else np.array(
            [t[i] if i in self.torque_slots else 0.0 for i in range(N_ACTUATORS)], np.float32)
        return MotorCommand(q_des, ZEROS, self.kp, self.kd, tau)

    def action_of(self, cmd: MotorCommand, act_dim: int) -> np.ndarray:
        """The action (in [-1, 1]) that `command` maps to `cmd`: the mean over the actuators that
        share an action component (both wheels of the paper tasks)."""
        sums, counts = np.zeros(act_dim), np.zeros(act_dim)
        q, tau = np.asarray(cmd.q_des, np.float64), np.asarray(cmd.tau_ff, np.float64)
        for i, d in self.driven:
            sums[d.action] += (q[i] if d.mode == POSITION else tau[i]) / d.scale
            counts[d.action] += 1
        return np.clip(sums / np.maximum(counts, 1), -1.0, 1.0).astype(np.float32)

    def describe(self) -> list[dict]:
        """Every actuator's drive, for the policy metadata (ACTUATOR_NAMES order)."""
        out = []
        for name, d in zip(ACTUATOR_NAMES, self.drives):
            if d.action is None:
                out.append({"actuator": name, "action": None})
                continue
            row = {"actuator": name, "action": d.action, "mode": d.mode, "scale": d.scale, "unit": UNITS[d.mode]}
            if d.mode == POSITION:
                row.update(kp=d.kp, kd=d.kd)
            out.append(row)
        return out

    def to_json(self) -> str:
        return json.dumps(self.describe(), separators=(",", ":"))

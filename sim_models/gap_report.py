"""Sim-to-real gap report: replay recorded commands open-loop in the model and measure the drift.

Why: H2O weights simulated data by how far the simulator is from the robot; this report shows
that distance directly, per signal, on a real (or virtual-robot) recording. For each window of
`horizon_steps`, the model (WheelLeggedSim with a profile) is put into the recorded state at the
window's start and driven by the recorded commands, open-loop; the error between simulated and
recorded signals is collected against the step within the window. Short, re-synchronised windows
(k-step prediction error) keep an unstable plant, which any balancing robot is, from turning a
tiny reset error into a meaningless divergence.

State reset from a RobotState (`set_state_from_robot_state`): exact for joint positions and
velocities and the base orientation (the IMU quaternion) and body angular velocity (the gyro).
Approximated, because a RobotState does not carry them:
- base position: x, y = 0 (the floor is flat and the tasks read position from wheel odometry);
  height chosen so the wheel axle sits at its resting height in the soft floor contact (found
  once by letting the upright model settle with rigid legs and only z free);
- base linear velocity: rolling without slip, axle speed = r * (mean wheel rate + pitch rate)
  along the heading; the base velocity is what makes the wheel centres move at that speed given
  the base rotation and the leg joint rates;
- the simulator reads its sensors before the last physics substep of a control step, so the
  reset state is advanced by one substep under the command then in force; the actuation-latency
  queue is filled with the commands recorded before the window (both use the simulator's
  private `_apply`/`_queue`; see the `set_state` proposal in docs/hil.md);
- the recorded state carries the robot's sensor noise and bias; the model's own noise is drawn
  from its seed, so noisy profiles never reach zero error.

Commands are what the firmware applied: zero torque where the recorded mode was not ENABLED.
This module is numpy + mujoco + matplotlib (plots only); it does not read recordings itself
(firmware_bridge.hil.recordings.recorded_steps does, and firmware_bridge.hil.cli wires both).
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import mujoco
import numpy as np

from protocol.robot_types import ACTUATOR_NAMES, LEG_INDICES, WHEEL_INDICES, MotorCommand, RobotState
from protocol import strict_json
from sim_models.model import BASE_BODY, WHEEL_BODIES
from sim_models.profiles import DynamicsProfile
from sim_models.robot import WheelLeggedSim
from sim_models.tasks import WHEEL_RADIUS_M, pitch_of, roll_of, wheel_odometry

log = logging.getLogger(__name__)

_L, _R = WHEEL_INDICES

# Signal name -> (unit, extractor). Leg joints are added for the full variant.
SIGNALS: dict[str, tuple[str, Callable[[RobotState], float]]] = {
    "pitch": ("rad", lambda s: pitch_of(s.imu_quat)),
    "pitch_rate": ("rad/s", lambda s: float(s.imu_gyro[1])),
    "roll": ("rad", lambda s: roll_of(s.imu_quat)),
    "x": ("m", lambda s: wheel_odometry(s)[0]),
    "v": ("m/s", lambda s: wheel_odometry(s)[1]),
    "left_wheel_vel": ("rad/s", lambda s: float(s.joint_vel[_L])),
    "right_wheel_vel": ("rad/s", lambda s: float(s.joint_vel[_R])),
}
LEG_SIGNALS: dict[str, tuple[str, Callable[[RobotState], float]]] = {
    f"joint{i}_pos": ("rad", (lambda i: lambda s: float(s.joint_pos[i]))(i)) for i in LEG_INDICES
}


SETTLE_SUBSTEPS = 1000  # physics steps to find the wheels' resting depth in the floor contact
SETTLE_LEG_ARMATURE = 1e6  # kg m^2 on the leg joints while settling: rigid legs (full variant)


class GapReportError(ValueError):
    """The recording is too short for one window, or states and commands do not line up."""


@dataclass
class GapConfig:
    profile: str = "nominal"  # sim_models profile name or TOML path: the model under test
    variant: str = "legs_locked"  # model variant the recording was made with
    horizon_steps: int = 50  # open-loop window length (control steps; 50 = 0.25 s at 200 Hz)
    stride_steps: int = 0  # window start spacing; 0: = horizon_steps (non-overlapping)
    seed: int = 0  # model noise seed

    def validate(self) -> None:
        if self.horizon_steps < 1:
            raise GapReportError(f"horizon_steps must be >= 1, got {self.horizon_steps}")
        if self.stride_steps < 0:
            raise GapReportError(f"stride_steps must be >= 0, got {self.stride_steps}")


@dataclass
class SignalGap:
    unit: str
    rmse: float  # over every step of every window
    max_abs: float
    final_rmse: float  # at the last step of the windows (the horizon's drift)
    rmse_by_step: list[float] = field(default_factory=list)  # per step within the window


@dataclass
class GapReport:
    profile: str
    horizon_steps: int
    windows: int
    steps_compared: int
    signals: dict[str, SignalGap]
    # First window, for plotting: recorded and simulated traces per signal.
    example: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"gap report: profile {self.profile}, {self.windows} windows x {self.horizon_steps} steps",
                 f"{'signal':<18}{'unit':<7}{'rmse':>12}{'max':>12}{'final rmse':>12}"]
        for name, g in self.signals.items():
            lines.append(f"{name:<18}{g.unit:<7}{g.rmse:>12.4g}{g.max_abs:>12.4g}{g.final_rmse:>12.4g}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return strict_json.dumps(asdict(self), indent=1)


# ---------------------------------------------------------------------------- state reset


class StateSetter:
    """Puts a WheelLeggedSim into a recorded RobotState (see the module docstring for what is approximate)."""

    def __init__(self, sim: WheelLeggedSim) -> None:
        self.sim = sim
        m = sim.model
        self._base = m.body(BASE_BODY).id
        self._wheels = [m.body(w).id for w in WHEEL_BODIES]
        root = next(j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE)
        self._root_q = int(m.jnt_qposadr[root])
        self._root_v = int(m.jnt_dofadr[root])
        # Per contract actuator present in this variant: its joint's qpos / dof address.
        self._slots: list[tuple[int, int, int]] = []
        for a in range(m.nu):
            j = int(m.actuator_trnid[a, 0])
            slot = ACTUATOR_NAMES.index(m.actuator(a).name)
            self._slots.append((slot, int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j])))
        self._axle_z = self._settled_axle_height()

    def _settled_axle_height(self) -> float:
        """Axle height with the wheels resting in the soft contact (upright, joints held, only z free)."""
        m, d, rq, rv = self.sim.model, self.sim.data, self._root_q, self._root_v
        self.sim.reset(pitch_rad=0.0)
        home = d.qpos.copy()  # upright, joints at home: only the base height is let free
        legs = [dadr for slot, _, dadr in self._slots if slot in LEG_INDICES]
        armature = m.dof_armature[legs].copy()
        m.dof_armature[legs] = SETTLE_LEG_ARMATURE  # legs rigid while settling (they carry the base)
        try:
            for _ in range(SETTLE_SUBSTEPS):
                mujoco.mj_step(m, d)
                z, vz = d.qpos[rq + 2], d.qvel[rv + 2]
                d.qpos[:] = home
                d.qpos[rq + 2] = z
                d.qvel[:] = 0.0
                d.qvel[rv + 2] = vz
        finally:
            m.dof_armature[legs] = armature
        mujoco.mj_forward(m, d)
        return float(np.mean([d.xpos[w][2] for w in self._wheels]))

    def apply(self, state: RobotState, pending: Sequence[MotorCommand] = ()) -> None:
        """Reset to `state`; `pending`: the commands of the steps before it, oldest first (the last
        latency_steps + 1 are used; missing ones count as zero commands)."""
        sim = self.sim
        m, d = sim.model, sim.data
        sim.reset(pitch_rad=0.0)
        q = np.asarray(state.imu_quat, np.float64)
        q = q / (np.linalg.norm(q) or 1.0)
        rq, rv = self._root_q, self._root_v
        d.qpos[rq + 3 : rq + 7] = q
        for slot, qadr, dadr in self._slots:
            d.qpos[qadr] = float(state.joint_pos[slot])
            d.qvel[dadr] = float(state.joint_vel[slot])
        d.qpos[rq : rq + 3] = 0.0
        mujoco.mj_kinematics(m, d)
        axle = np.mean([d.xpos[w] for w in self._wheels], axis=0)
        d.qpos[rq : rq + 3] = np.array([-axle[0], -axle[1], self._axle_z - axle[2]])
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, q)
        rot = rot.reshape(3, 3)
        omega_body = np.asarray(state.imu_gyro, np.float64)
        heading = rot[:, 0].copy()
        heading[2] = 0.0
        heading /= np.linalg.norm(heading) or 1.0
        wheel_rate = 0.5 * (float(state.joint_vel[_L]) + float(state.joint_vel[_R]))
        v_axle = WHEEL_RADIUS_M * (wheel_rate + float(omega_body[1])) * heading
        # The free joint's linear velocity moves every body alike: set it so the wheel centres move
        # at the rolling speed, given the base rotation and the leg joint rates already set.
        d.qvel[rv : rv + 3] = 0.0
        d.qvel[rv + 3 : rv + 6] = omega_body  # free joint: angular velocity in the body frame
        mujoco.mj_forward(m, d)
        vel6 = np.zeros(6)
        wheel_v = []
        for w in self._wheels:
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, w, vel6, 0)  # world frame: [rot, lin]
            wheel_v.append(vel6[3:].copy())
        d.qvel[rv : rv + 3] = v_axle - np.mean(wheel_v, axis=0)
        mujoco.mj_forward(m, d)
        # The simulator's sensors are read before the last physics substep of a control step, so a
        # recorded state is one substep behind the plant: catch up with the command then applied.
        latency = sim.profile.latency_steps
        history = [MotorCommand()] * (latency + 1) + list(pending)
        apply = getattr(sim, "_apply", None)  # private: see the set_state proposal in docs/hil.md
        if apply is not None:
            apply(history[-(latency + 1)])
            mujoco.mj_step(m, d)
        if latency and hasattr(sim, "_queue"):
            sim._queue = collections.deque(history[-latency:])


# ---------------------------------------------------------------------------- the report


def gap_report(
    states: Sequence[RobotState],
    commands: Sequence[MotorCommand],
    config: GapConfig | None = None,
    applied: Sequence[bool] | None = None,
    profile: DynamicsProfile | None = None,
) -> GapReport:
    """Open-loop windows of `commands` from `states` (states[k] --commands[k]--> states[k+1])."""
    cfg = config or GapConfig()
    cfg.validate()
    if len(states) != len(commands) + 1:
        raise GapReportError(f"need len(states) == len(commands) + 1, got {len(states)} and {len(commands)}")
    h = cfg.horizon_steps
    if len(commands) < h:
        raise GapReportError(f"recording has {len(commands)} steps, fewer than one window of {h}")
    stride = cfg.stride_steps or h
    applied = np.ones(len(commands), bool) if applied is None else np.asarray(applied, bool)
    cmds = [c if ok else MotorCommand() for c, ok in zip(commands, applied)]
    sim = WheelLeggedSim(cfg.variant, profile=profile if profile is not None else cfg.profile, seed=cfg.seed)
    setter = StateSetter(sim)
    signals = dict(SIGNALS)
    if cfg.variant == "full":
        signals.update(LEG_SIGNALS)
    names = list(signals)
    extract = [signals[n][1] for n in names]
    starts = list(range(0, len(commands) - h + 1, stride))
    err = np.zeros((len(starts), h, len(names)))
    example: dict[str, dict[str, list[float]]] = {}
    for w, k in enumerate(starts):
        setter.apply(states[k], pending=cmds[max(0, k - sim.profile.latency_steps - 1) : k])
        rec_tr, sim_tr = [], []
        for i in range(h):
            s = sim.step(cmds[k + i])
            sim_vals = [f(s) for f in extract]
            rec_vals = [f(states[k + i + 1]) for f in extract]
            err[w, i] = np.subtract(sim_vals, rec_vals)
            if w == 0:
                rec_tr.append(rec_vals)
                sim_tr.append(sim_vals)
        if w == 0:
            r, s_ = np.array(rec_tr), np.array(sim_tr)
            example = {n: {"recorded": r[:, j].tolist(), "simulated": s_[:, j].tolist()} for j, n in enumerate(names)}
    out: dict[str, SignalGap] = {}
    for j, n in enumerate(names):
        e = err[:, :, j]
        by_step = np.sqrt(np.mean(e**2, axis=0))
        out[n] = SignalGap(
            unit=signals[n][0],
            rmse=float(np.sqrt(np.mean(e**2))),
            max_abs=float(np.max(np.abs(e))),
            final_rmse=float(by_step[-1]),
            rmse_by_step=[float(x) for x in by_step],
        )
    name = profile.name if profile is not None else cfg.profile
    return GapReport(profile=str(name), horizon_steps=h, windows=len(starts), steps_compared=len(starts) * h,
                     signals=out, example=example)


def plot_gap(reports: Sequence[GapReport], path: str | os.PathLike[str], control_dt: float = 0.005) -> Path:
    """One PNG: per signal, RMSE against time within the window (one line per report), and the
    first window's recorded vs simulated trace (dashed). Several reports compare profiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reports[0].signals)
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.0 * len(names)), squeeze=False)
    for row, n in enumerate(names):
        ax_e, ax_t = axes[row]
        for rep in reports:
            g = rep.signals[n]
            t = np.arange(1, len(g.rmse_by_step) + 1) * control_dt
            ax_e.plot(t, g.rmse_by_step, label=rep.profile)
            ex = rep.example.get(n)
            if ex:
                ax_t.plot(t, ex["simulated"], "--", label=f"sim {rep.profile}")
        ex0 = reports[0].example.get(n)
        if ex0:
            ax_t.plot(np.arange(1, len(ex0["recorded"]) + 1) * control_dt, ex0["recorded"], "k", label="recorded")
        ax_e.set_ylabel(f"{n} [{reports[0].signals[n].unit}]", fontsize=8)
        ax_e.set_title("RMSE vs time in window" if row == 0 else "", fontsize=9)
        ax_t.set_title("first window" if row == 0 else "", fontsize=9)
        if row == 0:
            ax_e.legend(fontsize=7)
            ax_t.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


__all__ = ["GapConfig", "GapReport", "GapReportError", "SIGNALS", "SignalGap", "StateSetter", "gap_report", "plot_gap"]

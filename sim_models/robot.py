"""WheelLeggedSim: the MuJoCo robot behind the robot I/O contract (MotorCommand in, RobotState out).

Why one class: the gymnasium envs and the virtual robot firmware both drive this, so a policy
trained in the env and the "real" virtual robot see the same code path, differing only in the
DynamicsProfile.

How the impedance law runs at physics rate: the file's `motor` actuators are turned, on the fresh
model, into MuJoCo affine actuators with
    force = s * ctrl - s * kp * q - s * kd * qd,   ctrl = kp * q_des + kd * qd_des + tau_ff
(s = the profile's motor strength), clipped to s * forcerange. MuJoCo evaluates it at every
physics substep (and integrates the kd term implicitly with `implicitfast`), so there is no
per-substep Python and the env stays close to raw `mj_step` cost.

Per control step, in order: reject non-finite commands (keep the previous one, count, flag
BAD_COMMAND); delay by `latency_steps`; add action noise to tau_ff; start/continue pushes;
`mj_step` x n_substeps; read sensors; add sensor noise and bias.
"""

from __future__ import annotations

import collections
import logging
import math
import operator
from typing import Any, Callable

import mujoco
import numpy as np

from protocol.robot_types import (
    ACTUATOR_NAMES,
    N_ACTUATORS,
    FaultFlags,
    MotorCommand,
    MotorMode,
    RobotState,
)
from sim_models.model import BASE_BODY, WHEEL_BODIES, load_model
from sim_models.profiles import DynamicsProfile, load_profile
from task_contract.actuation import ZEROS
from task_contract.state import ACC as _ACC
from task_contract.state import GYRO as _GYRO
from task_contract.state import POS as _POS
from task_contract.state import QUAT as _QUAT
from task_contract.state import STATE_LEN as _STATE_LEN
from task_contract.state import TORQUE as _TORQUE
from task_contract.state import VEL as _VEL

log = logging.getLogger(__name__)

CONTROL_DT_S = 0.005  # 200 Hz, the H2O robot's rate
DEFAULT_INIT_PITCH_RAD = 0.05  # reset draws pitch uniformly in +-this (about the wheel axle)
# The per-step float32 buffer whose slices become the RobotState arrays has the task contract's
# state layout (task_contract.state), so the task functions read it directly.
_CMD_SHAPE = (N_ACTUATORS,)
# Plain ints: IntFlag/IntEnum arithmetic costs microseconds per step.
_NO_FAULT = int(FaultFlags.NONE)
_BAD_COMMAND = int(FaultFlags.BAD_COMMAND)
_TORQUE_LIMITED = int(FaultFlags.TORQUE_LIMITED)
_ENABLED = int(MotorMode.ENABLED)
_ZERO1 = np.zeros(1)
# Shared read-only zeros for the unused fields of commands the env builds itself (a fresh
# MotorCommand() allocates five arrays; read-only so a stray write fails instead of leaking).
ZERO_GAINS = ZEROS  # the task contract's: its commands carry this very array
# MotorCommand() with those zeros: the command before the first one (latency queue, last valid).
ZERO_COMMAND = MotorCommand(ZERO_GAINS, ZERO_GAINS, ZERO_GAINS, ZERO_GAINS, ZERO_GAINS)


def _is_constant(a: object) -> bool:
    """A read-only array owning its data (ZERO_GAINS, the env's gain constants): its values
    cannot change behind the simulator's back, so gains written from it can be reused."""
    return isinstance(a, np.ndarray) and a.base is None and not a.flags.writeable


class CommandShapeError(ValueError):
    """A MotorCommand field does not have one value per actuator."""


class WheelLeggedSim:
    """MuJoCo wheel-legged robot with a dynamics-gap profile, stepped one control period at a time.

    Usage:
        sim = WheelLeggedSim("legs_locked", profile="moderate", seed=0)
        state = sim.reset()
        state = sim.step(MotorCommand.torque([0, 0, 1.0, 0, 0, 1.0]))
    Actuators missing from the variant (legs when locked) read as joint zero, zero velocity and
    zero torque, and ignore their command fields.
    """

    control_dt: float = CONTROL_DT_S

    def __init__(
        self,
        variant: str = "legs_locked",
        profile: "str | DynamicsProfile | None" = None,
        seed: int | None = None,
        init_pitch_rad: float = DEFAULT_INIT_PITCH_RAD,
    ) -> None:
        self.variant = variant
        self.profile = load_profile(profile)
        self.init_pitch_rad = float(init_pitch_rad)
        self.model = load_model(variant)
        self.profile.apply_to_model(self.model)
        self._base_body = self.model.body(BASE_BODY).id
        self._base_ipos = self.model.body_ipos[self._base_body].copy()  # with the profile's offset
        self.com_draw = np.zeros(3)  # this episode's randomised COM shift (profile.com_offset_range_m)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = int(round(self.control_dt / self.model.opt.timestep))
        if not math.isclose(self.n_substeps * self.model.opt.timestep, self.control_dt):
            raise ValueError("control_dt must be a whole number of physics timesteps")
        self._index_model()
        full = load_model("full") if variant != "full" else self.model
        self._spec_limits = np.array([full.actuator(n).forcerange[1] for n in ACTUATOR_NAMES])
        self._make_impedance_actuators()
        self._rng = np.random.default_rng(seed)
        self.bad_commands = 0
        self._faults = _NO_FAULT
        self._push_steps_left = 0
        self._push_prob = self.profile.push_prob
        self._state: RobotState | None = RobotState()
        self.reset()

    # ----------------------------------------------------------------------------- set-up
    def _index_model(self) -> None:
        m = self.model
        names = [m.actuator(i).name for i in range(m.nu)]
        # For each contract actuator: its index in this model, or absent (locked legs).
        self._present = np.array([n in names for n in ACTUATOR_NAMES])
        self._act_slots = np.flatnonzero(self._present)  # contract indices that exist here
        self._act_ids = np.array([names.index(ACTUATOR_NAMES[i]) for i in self._act_slots])
        if not np.array_equal(self._act_ids, np.arange(m.nu)):
            raise ValueError("model actuators must follow ACTUATOR_NAMES order")
        adr = lambda name: int(m.sensor_adr[m.sensor(name).id])  # noqa: E731
        self._pos_adr = np.array([adr(f"{ACTUATOR_NAMES[i]}_pos") for i in self._act_slots])
        self._vel_adr = np.array([adr(f"{ACTUATOR_NAMES[i]}_vel") for i in self._act_slots])
        self._quat_adr = adr("imu_quat")
        self._gyro_adr = adr("imu_gyro")
        self._acc_adr = adr("imu_acc")
        src = [*self._pos_adr, *self._vel_adr, *range(self._quat_adr, self._quat_adr + 4),
               *range(self._gyro_adr, self._gyro_adr + 3), *range(self._acc_adr, self._acc_adr + 3)]
        dest = [*(_POS + self._act_slots), *(_VEL + self._act_slots), *range(_QUAT, _STATE_LEN)]
        self._src, self._dest = np.array(src), np.array(dest)
        self._torque_dest = _TORQUE + self._act_slots
        # The same layout as one gather from [sensordata, actuator_force, 0.0] (absent -> the 0).
        gather = np.full(_STATE_LEN, m.nsensordata + m.nu)
        gather[self._dest] = self._src
        gather[self._torque_dest] = m.nsensordata + np.arange(m.nu)
        self._gather = gather
        self._base_id = m.body(BASE_BODY).id
        self._wheel_qadr = [int(m.joint(w).qposadr[0]) for w in WHEEL_BODIES]
        self._home = m.key("home").id
        mujoco.mj_resetDataKeyframe(m, self.data, self._home)
        mujoco.mj_forward(m, self.data)
        axle = np.mean([self.data.xpos[m.body(w).id] for w in WHEEL_BODIES], axis=0)
        self._base_above_axle = self.data.xpos[self._base_id] - axle  # world frame at home

    def _make_impedance_actuators(self) -> None:
        m = self.model
        s = self.profile.motor_strength_scale
        ids = self._act_ids
        m.actuator_gaintype[ids] = mujoco.mjtGain.mjGAIN_FIXED
        m.actuator_biastype[ids] = mujoco.mjtBias.mjBIAS_AFFINE
        m.actuator_gainprm[ids, :] = 0.0
        m.actuator_gainprm[ids, 0] = s
        m.actuator_biasprm[ids, :] = 0.0
        m.actuator_ctrllimited[ids] = 0
        m.actuator_forcelimited[ids] = 1
        m.actuator_forcerange[ids] *= s
        self._strength = s
        self._gains_set = False
        self._all_slots = len(self._act_slots) == N_ACTUATORS
        self._held_kp = self._held_kd = None  # the constant gain arrays last written to the model
        p = self.profile
        self.plain_actuation = not (p.latency_steps or p.action_noise_std or p.push_prob)
        self._noisy_sensors = bool(p.sensor_noise_std or p.sensor_bias)
        self._bind_data_views()
        self._held_kp_slots = self._held_kd_slots = None
        self._clip_level = (m.actuator_forcerange[ids, 1] * (1 - 1e-6)).tolist()
        if not np.allclose(m.actuator_gear[ids, 0], 1.0):
            raise ValueError("impedance actuators assume gear 1 (length = joint angle)")

    def _bind_data_views(self) -> None:
        # MjData arrays keep their memory for the data's lifetime: views can be kept (but not
        # copied or pickled along: a copy of a view is no longer the data's, see __setstate__).
        self._ctrl, self._sensordata, self._force = (self.data.ctrl, self.data.sensordata,
                                                     self.data.actuator_force)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_ctrl", "_sensordata", "_force"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_data_views()

    # ----------------------------------------------------------------------------- API
    def reset(self, seed: int | None = None, pitch_rad: float | None = None) -> RobotState:
        """Home keyframe, tilted by `pitch_rad` about the wheel axle (random if None)."""
        self._reset(seed, pitch_rad)
        return self._copy_state()

    def _reset(self, seed: int | None, pitch_rad: float | None) -> None:
        """reset() without building the RobotState (the env's fast path reads `_sensed`)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        m, d = self.model, self.data
        mujoco.mj_resetDataKeyframe(m, d, self._home)
        if pitch_rad is None:
            pitch_rad = float(self._rng.uniform(-self.init_pitch_rad, self.init_pitch_rad))
        if self.profile.randomised:  # drawn after the pitch: unrandomised profiles keep their streams
            span = np.asarray(self.profile.com_offset_range_m)
            self.com_draw = self._rng.uniform(-span, span)
            m.body_ipos[self._base_body] = self._base_ipos + self.com_draw
            mujoco.mj_setConst(m, d)  # derived constants for the moved COM (scratch use of d)
            mujoco.mj_resetDataKeyframe(m, d, self._home)
        c, s = math.cos(pitch_rad), math.sin(pitch_rad)
        ox, oy, oz = self._base_above_axle.tolist()
        qpos = d.qpos
        x, y, z = qpos[0:3].tolist()
        # axle (= base - base_above_axle) + the rotated offset, in plain floats (same operations).
        qpos[0:3] = ((x - ox) + (c * ox + s * oz), (y - oy) + oy, (z - oz) + (-s * ox + c * oz))
        qpos[3:7] = (math.cos(pitch_rad / 2), 0.0, math.sin(pitch_rad / 2), 0.0)
        for adr in self._wheel_qadr:
            qpos[adr] = -pitch_rad  # wheels keep their world angle: odometry starts at 0
        d.ctrl[:] = 0.0
        d.xfrc_applied[:] = 0.0
        mujoco.mj_forward(m, d)
        self._queue: collections.deque[MotorCommand] = collections.deque(
            [ZERO_COMMAND] * self.profile.latency_steps
        )
        self._last_valid = ZERO_COMMAND
        self._push_steps_left = 0
        self._faults = _NO_FAULT
        self._sense()

    def step(self, cmd: MotorCommand) -> RobotState:
        """Advance one control period under `cmd` (after the profile's latency) and read sensors.

        The returned state is the simulator's own reading: treat it as read-only (state() copies).
        """
        self._advance(cmd)
        self._state = self._read_state()
        return self._state

    @property
    def torque_limits(self) -> np.ndarray:
        """Per-actuator torque limits of the motor spec (N·m, ACTUATOR_NAMES order), for firmware
        clipping. The same for every variant and profile: a weak "real" motor is the hidden gap."""
        return self._spec_limits.copy()

    def state(self) -> RobotState:
        """The last sensor reading (the same noise sample as step/reset returned)."""
        return self._copy_state()

    # -------------------------------------------------------------- state-reset tools (HIL, gap report)
    def apply_command(self, cmd: MotorCommand) -> None:
        """Put `cmd` on the actuators now, bypassing the latency queue (no physics step).

        For tools that place the model into a recorded state and must reproduce the command in
        force at that moment (sim_models.gap_report). Non-finite commands are rejected as in step.
        """
        self._apply(self._accept(cmd))

    def set_pending_commands(self, commands: "list[MotorCommand]") -> None:
        """Replace the latency queue: the commands that will act in the next steps, oldest first.

        Exactly `profile.latency_steps` commands; missing history is the caller's zero command.
        """
        if len(commands) != self.profile.latency_steps:
            raise ValueError(f"need {self.profile.latency_steps} pending commands "
                             f"(the profile's latency), got {len(commands)}")
        self._queue = collections.deque(self._accept(c) for c in commands)

    # ----------------------------------------------------------------------------- internals
    def _advance(self, cmd: MotorCommand, trusted: bool = False) -> None:
        """One control period of physics under `cmd` (no sensor read).

        `trusted`: the caller built `cmd` itself from a validated action (the env's fast path:
        right shapes, finite values), so the shape/finiteness check is skipped; the command is
        still recorded as the last valid one, exactly as `_accept` would.
        """
        self._faults = _NO_FAULT
        if trusted:
            self._last_valid = cmd
        else:
            cmd = self._accept(cmd)
        if self.profile.latency_steps:
            self._queue.append(cmd)
            cmd = self._queue.popleft()
        self._apply(cmd)
        if self._push_prob:
            self._push()
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def _advance_ctrl(self, ctrl: "tuple[float, ...]", command: "tuple[Callable[[Any], MotorCommand], Any]") -> None:
        """One control period with `ctrl` written straight to the actuators (the env's fast path).

        Only for a command that `_advance` would apply as exactly this ctrl: the profile has no
        latency, action noise or pushes (`plain_actuation`), and the command's gains are the
        constant arrays already in the model (`_held_kp`/`_held_kd`). `command` = (function,
        argument) that builds the MotorCommand; it is built only if a later command is rejected
        and the previous valid one has to be re-applied.
        """
        self._faults = _NO_FAULT
        self._last_valid = command
        c = self._ctrl
        for j, v in enumerate(ctrl):
            c[j] = v
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def _accept(self, cmd: MotorCommand) -> MotorCommand:
        fields = (cmd.q_des, cmd.qd_des, cmd.kp, cmd.kd, cmd.tau_ff)
        try:
            shapes_ok = (fields[0].shape == _CMD_SHAPE and fields[1].shape == _CMD_SHAPE
                         and fields[2].shape == _CMD_SHAPE and fields[3].shape == _CMD_SHAPE
                         and fields[4].shape == _CMD_SHAPE)
        except AttributeError:
            shapes_ok = False
        if not shapes_ok:
            for name, value in zip(("q_des", "qd_des", "kp", "kd", "tau_ff"), fields):
                if getattr(value, "shape", None) != _CMD_SHAPE:
                    raise CommandShapeError(f"MotorCommand.{name} has shape {np.shape(value)}, "
                                            f"expected a numpy array of shape ({N_ACTUATORS},)")
        # One float64 sum is finite iff every value is (and cheaper than five isfinite passes).
        if not math.isfinite(np.concatenate(fields).sum(dtype=np.float64)):
            self.bad_commands += 1
            self._faults |= _BAD_COMMAND
            log.warning("non-finite MotorCommand rejected (%d so far); keeping the previous one",
                        self.bad_commands)
            if isinstance(self._last_valid, tuple):  # recorded by _advance_ctrl: build it now
                build, arg = self._last_valid
                self._last_valid = build(arg)
            return self._last_valid
        self._last_valid = cmd
        return cmd

    def _apply(self, cmd: MotorCommand) -> None:
        slots = None if self._all_slots else self._act_slots  # full model: no gather needed
        tau = cmd.tau_ff if slots is None else cmd.tau_ff[slots]
        if self.profile.action_noise_std:
            tau = tau + self._rng.normal(0.0, self.profile.action_noise_std, tau.shape)
        kp_obj, kd_obj = cmd.kp, cmd.kd
        if kp_obj is self._held_kp and kd_obj is self._held_kd:
            # The same read-only gain arrays as the last command (the env's fast path uses
            # constants): the model's bias terms already hold exactly these gains.
            kp, kd, has_gains = self._held_kp_slots, self._held_kd_slots, self._gains_set
            if has_gains:
                self.data.ctrl[:] = (kp * (cmd.q_des if slots is None else cmd.q_des[slots])
                                     + kd * (cmd.qd_des if slots is None else cmd.qd_des[slots]) + tau)
            else:
                self.data.ctrl[:] = tau
            return
        kp = kp_obj if slots is None else kp_obj[slots]
        kd = kd_obj if slots is None else kd_obj[slots]
        # Pure torque (kp = kd = 0, the paper tasks) after pure torque: the gains are already 0.
        has_gains = bool(kp.any() or kd.any())
        if has_gains or self._gains_set:
            # The model's actuators are the present contract slots, in order: whole-array writes.
            bias = self.model.actuator_biasprm
            bias[:, 1] = kp
            bias[:, 2] = kd
            bias[:, 1:3] *= -self._strength
            self._gains_set = has_gains
            self.data.ctrl[:] = (kp * (cmd.q_des if slots is None else cmd.q_des[slots])
                                 + kd * (cmd.qd_des if slots is None else cmd.qd_des[slots]) + tau)
        else:
            self.data.ctrl[:] = tau
        if _is_constant(kp_obj) and _is_constant(kd_obj):
            self._held_kp, self._held_kd = kp_obj, kd_obj
            self._held_kp_slots, self._held_kd_slots = kp, kd
        else:
            self._held_kp = self._held_kd = None

    def _push(self) -> None:
        p = self.profile
        if self._push_steps_left == 0 and self._rng.random() < p.push_prob:
            angle = self._rng.uniform(0.0, 2.0 * math.pi)
            self.data.xfrc_applied[self._base_id, :3] = (
                p.push_force_n * math.cos(angle), p.push_force_n * math.sin(angle), 0.0)
            self._push_steps_left = p.push_duration_steps
        if self._push_steps_left:
            self._push_steps_left -= 1
            if self._push_steps_left == 0:
                self.data.xfrc_applied[self._base_id, :3] = 0.0

    def _sense(self) -> tuple[np.ndarray, int]:
        """This period's sensor reading as one float32 buffer (layout _POS.._ACC) and fault bits.

        Noise and bias (if the profile has them) are already applied, in place. The env's fast
        path reads the buffer directly; `_read_state` wraps views of it in a RobotState.
        """
        # One gather from [sensordata, actuator_force, 0] into a fresh float32 buffer.
        force = self._force
        buf = np.concatenate((self._sensordata, force, _ZERO1)).take(self._gather).astype(np.float32)
        faults = self._faults
        if any(map(operator.ge, map(abs, force.tolist()), self._clip_level)):  # |f| >= clip level
            faults |= _TORQUE_LIMITED
        if self._noisy_sensors:
            self._corrupt(buf)
        # state() builds the RobotState from this only when asked (the env's fast path never does).
        self._sensed = (buf, faults, self.data.time)
        self._state = None
        return buf, faults

    def _read_state(self) -> RobotState:
        self._sense()
        self._state = self._state_from_sensed()
        return self._state

    def _state_from_sensed(self) -> RobotState:
        """The RobotState of the last `_sense` (its arrays are views of the sensed buffer)."""
        buf, faults, time = self._sensed
        return RobotState(
            t_us=int(round(time * 1e6)),
            joint_pos=buf[_POS:_POS + 6],
            joint_vel=buf[_VEL:_VEL + 6],
            joint_torque=buf[_TORQUE:_TORQUE + 6],
            imu_quat=buf[_QUAT:_QUAT + 4],
            imu_gyro=buf[_GYRO:_GYRO + 3],
            imu_acc=buf[_ACC:_ACC + 3],
            mode=_ENABLED,
            faults=faults,
        )

    def _corrupt(self, buf: np.ndarray) -> None:
        """Sensor noise and bias, in place on the state buffer (the rng draws keep their order)."""
        p, rng = self.profile, self._rng
        std, slots = p.sensor_noise_std, self._act_slots
        pos, vel = buf[_POS:_POS + 6], buf[_VEL:_VEL + 6]
        quat, gyro, acc = buf[_QUAT:_QUAT + 4], buf[_GYRO:_GYRO + 3], buf[_ACC:_ACC + 3]
        if std:
            pos[slots] += rng.normal(0.0, std, len(slots)).astype(np.float32)
            vel[slots] += rng.normal(0.0, std, len(slots)).astype(np.float32)
            acc += rng.normal(0.0, std, 3).astype(np.float32)
            gyro += rng.normal(0.0, std, 3).astype(np.float32)
        gyro += np.float32(p.sensor_bias)
        # Orientation: a mounting pitch error (bias) plus a small random rotation (noise).
        rotvec = rng.normal(0.0, std, 3) if std else np.zeros(3)
        rotvec[1] += p.sensor_bias
        err = np.zeros(4)
        mujoco.mju_axisAngle2Quat(err, rotvec / (np.linalg.norm(rotvec) or 1.0), np.linalg.norm(rotvec))
        out = np.zeros(4)
        mujoco.mju_mulQuat(out, quat.astype(np.float64), err)
        quat[:] = out.astype(np.float32)

    def _copy_state(self) -> RobotState:
        s = self._state
        if s is None:
            s = self._state = self._state_from_sensed()
        return RobotState(
            t_us=s.t_us,
            joint_pos=s.joint_pos.copy(),
            joint_vel=s.joint_vel.copy(),
            joint_torque=s.joint_torque.copy(),
            imu_quat=s.imu_quat.copy(),
            imu_gyro=s.imu_gyro.copy(),
            imu_acc=s.imu_acc.copy(),
            mode=s.mode,
            faults=s.faults,
        )

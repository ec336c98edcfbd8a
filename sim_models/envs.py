"""Gymnasium envs: a thin layer over WheelLeggedSim + TaskSpec (the functions the robot uses).

Why thin: the env must produce exactly the observation and reward the onboard loop computes from
a firmware RobotState, so it only calls `TaskSpec.action_to_command`, `WheelLeggedSim.step`,
`TaskSpec.observe`, `TaskSpec.reward`, `TaskSpec.terminated`, and keeps its own per-step Python
small (the target is env step within 25% of raw `mj_step` cost; see docs/bench/sim_models.md).

Seeding: `reset(seed=s)` reseeds the simulator's noise generator (initial pitch, sensor and action
noise, pushes) and the command draw from `s`, so the same seed gives the same trajectory.
A simulator blow-up (non-finite state) ends the episode as terminated with a finite observation.

Fast path: for the four built-in tasks, `step` does not build the RobotState / MotorCommand
objects and does not call the TaskSpec functions; it repeats their arithmetic, operation for
operation in the same order and precision, on the simulator's float32 sensor buffer
(`_FastKernel` below). Its outputs are bit-identical to the reference path (`fast = False`: the
TaskSpec functions on a RobotState, what the robot computes); tests/sim_models/
test_step_fast_path.py checks that on every task and profile. Any change to a task function in
sim_models/tasks.py must be mirrored here (that test fails until it is).
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from protocol.robot_types import MotorCommand

from sim_models import HALFCHEETAH_MAX_EPISODE_STEPS
from sim_models import tasks as _t
from sim_models.profiles import DynamicsProfile, load_profile
from sim_models.robot import DEFAULT_INIT_PITCH_RAD, ZERO_GAINS, WheelLeggedSim
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
        self.fast = True  # False: the reference path (TaskSpec functions on a RobotState)
        self._kernel_task: TaskSpec | None = None
        self._kernel: _FastKernel | None = None
        self._renderer = None
        self.nonfinite_episodes = 0
        self.invalid_actions = 0
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        sim_seed = None if seed is None else int(self.np_random.integers(2**63 - 1))
        task = self.task
        fast = self._fast_kernel() is not None
        if fast:
            self.sim._reset(sim_seed, options.get("pitch_rad"))
        else:
            state = self.sim.reset(seed=sim_seed, pitch_rad=options.get("pitch_rad"))
        if "command" in options:
            self._command = np.asarray(options["command"], np.float32)
        elif self._fixed_command is not None:
            self._command = self._fixed_command
        elif self.task.command_low:
            self._command = self.task.sample_command(self.np_random)
        self._steps = 0
        if fast:
            buf = self.sim._sensed[0]
            self._obs = np.array(self._kernel.observe(buf.tolist(), self._command.tolist()), np.float32)
        else:
            self._obs = task.observe(state, self._command)
        return self._obs, {"command": self._command}

    def _fast_kernel(self) -> "_FastKernel | None":
        """The fast-path kernel of the current task (None: take the reference path)."""
        task = self.task
        if task is not self._kernel_task:  # the task object was replaced: pick its kernel again
            self._kernel_task, self._kernel = task, _FAST_KERNELS.get(_task_key(task))
        return self._kernel if self.fast else None

    def step(self, action):
        task = self.task
        if task is not self._kernel_task or not self.fast or self._kernel is None:
            if self._fast_kernel() is None:
                return self._step_reference(action)
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self._action_shape:
            return self._step_reference(action)  # raises the typed error
        vals = action.tolist()
        if not all(map(_SAFE_ACTION.__gt__, map(abs, vals))):  # every |v| < _SAFE_ACTION
            # Non-finite, or so large that the float32 sum check below might overflow.
            if not math.isfinite(float(action.sum())):
                return self._step_reference(action)  # raises the typed error
        kernel, sim = self._kernel, self.sim
        if (kernel.ctrl_one is not None and sim.plain_actuation
                and sim._held_kp is kernel.kp and sim._held_kd is kernel.kd):
            sim._advance_ctrl(kernel.ctrl_one(vals), (kernel.command, vals))
        else:
            sim._advance(kernel.command(vals), trusted=True)
        buf, faults = sim._sense()
        obs_vals = kernel.observe(buf.tolist(), self._command.tolist())
        next_obs = np.array(obs_vals, dtype=np.float32)
        o = next_obs.tolist()
        self._steps += 1
        truncated = self._steps >= task.max_episode_steps
        if math.isfinite(sum(o)):  # float32 values: the float64 sum cannot overflow
            reward = kernel.reward(vals, next_obs, o)
            terminated = kernel.terminated(o)
            info = {"faults": faults}
        else:
            next_obs, reward, terminated, info = self._blow_up(next_obs, faults)
        self._obs = next_obs
        return next_obs, reward, terminated, truncated, info  # already float, bool, bool

    def _step_reference(self, action):
        """The reference step: the TaskSpec functions on the simulator's RobotState."""
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
            next_obs, reward, terminated, info = self._blow_up(next_obs, state.faults)
        self._obs = next_obs
        return next_obs, float(reward), bool(terminated), bool(truncated), info

    def _blow_up(self, next_obs: np.ndarray, faults: int):
        """Simulator blow-up: end the episode, never hand NaN to a learner."""
        self.nonfinite_episodes += 1
        log.warning("non-finite observation; episode terminated (%d so far)", self.nonfinite_episodes)
        next_obs = np.nan_to_num(next_obs, nan=0.0, posinf=0.0, neginf=0.0)
        return next_obs, 0.0, True, {"faults": faults, "nonfinite": True}

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


# ------------------------------------------------------------------ fast-path kernels
# Each repeats, on plain floats from the float32 sensor buffer `b` (layout of sim_models.robot:
# pos 0-5, vel 6-11, torque 12-17, quat 18-21, gyro 22-24, acc 25-27), exactly the operations of
# the matching sim_models.tasks function, in the same order and precision. A float32 value
# converted to a Python float is exact, as `.tolist()` / `float(x[i])` give it there.
_SAFE_ACTION = 1e37  # below this, a float32 sum of up to 6 values cannot overflow
_L, _R = _t.WHEEL_INDICES
_PL, _PR, _VL, _VR = _L, _R, 6 + _L, 6 + _R
_QW = 18
_GX = 22
_LEG_KP = np.array([_t.LEG_KP if i in _t.LEG_INDICES else 0.0 for i in range(6)], np.float32)
_LEG_KD = np.array([_t.LEG_KD if i in _t.LEG_INDICES else 0.0 for i in range(6)], np.float32)
_LEG_KP.flags.writeable = False
_LEG_KD.flags.writeable = False
_clip = _t._clip_scalar
# ctrl_batch of locomotion: per-actuator action scale of q_des and tau_ff, and kd * qd_des (+0).
_LOCO_Q_SCALE = np.array([_t.LEG_RANGE_RAD if i in _t.LEG_INDICES else 0.0 for i in range(6)])
_LOCO_TAU_SCALE = np.array([_t.LOCO_WHEEL_TORQUE_NM if i in _t.WHEEL_INDICES else 0.0 for i in range(6)])
_LOCO_KD_QD = _LEG_KD * ZERO_GAINS
_WHEELS = np.array(_t.WHEEL_INDICES)
_asin, _atan2, _sin, _cos = math.asin, math.atan2, math.sin, math.cos
_RADIUS, _HIP0, _KNEE0 = _t.WHEEL_RADIUS_M, _t.HIP_ZERO_RAD, _t.KNEE_ZERO_RAD
_NTHIGH, _SHANK = -_t.THIGH_M, _t.SHANK_M  # tasks.base_height's -THIGH_M * sin(...) is (-THIGH_M) * ...
_FLOAT32 = struct.Struct("f")
_FLOAT32_2, _FLOAT32_4, _FLOAT32_6 = struct.Struct("2f"), struct.Struct("4f"), struct.Struct("6f")


def _f32(x: float) -> float:
    """x rounded to float32 (the C cast numpy uses to store it in a float32 array); |x| is small."""
    return _FLOAT32.unpack(_FLOAT32.pack(x))[0]


def _row_dots(tau: np.ndarray) -> list:
    """[row @ row for row in tau]: a stack of vector @ vector matmuls runs the same BLAS dot as
    the task's `tau @ tau` (its rounding differs from a*a + b*b); one call for all rows."""
    tau = np.ascontiguousarray(tau)
    return (tau[:, None, :] @ tau[:, :, None]).ravel().tolist()


def _pitch(b: list) -> float:  # tasks.pitch_of
    w, x, y, z = b[_QW:_QW + 4]
    return math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))


def _torque_command(tau_left: float, tau_right: float) -> MotorCommand:  # tasks._wheel_torque_command
    tau = np.zeros(6, np.float32)
    tau[_L] = tau_left
    tau[_R] = tau_right
    return MotorCommand(ZERO_GAINS, ZERO_GAINS, ZERO_GAINS, ZERO_GAINS, tau)


class _FastKernel:
    """command(action values) -> MotorCommand; observe(b, command values) -> obs values;
    reward(action values, next_obs float32 array, its values) -> float; terminated(values).

    For the batched env (sim_models.vector_env): `kp`, `kd` are the constant gain arrays every
    command carries, and ctrl_batch(clipped actions, float64 (N, act_dim)) -> the model's ctrl
    (N, nu) that WheelLeggedSim._apply writes for those commands once those gains are in the
    model (no latency, no action noise), with the same float32/float64 operations.
    """

    kp: np.ndarray = ZERO_GAINS
    kd: np.ndarray = ZERO_GAINS
    # ctrl_one(action values) -> the ctrl tuple `_apply` writes for command(action values), for
    # WheelLeggedSim._advance_ctrl (None: the kernel has none; its commands go through _advance).
    ctrl_one: "Callable[[list], tuple[float, ...]] | None" = None

    @staticmethod
    def command(a: list) -> MotorCommand:
        raise NotImplementedError

    @staticmethod
    def ctrl_batch(a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def observe(b: list, c: list) -> list:
        raise NotImplementedError

    @staticmethod
    def reward(a: list, next_obs: np.ndarray, o: list) -> float:
        raise NotImplementedError

    @staticmethod
    def terminated(o: list) -> bool:
        raise NotImplementedError

    # reward_batch(clipped actions float64 (N, act_dim), next_obs (N, obs_dim), their rows as
    # lists) -> rewards, the same values as reward() row by row (None: the batch calls reward()).
    reward_batch: "Callable[[np.ndarray, np.ndarray, list], list] | None" = None


class _PaperKernel(_FastKernel):
    @staticmethod
    def command(a: list) -> MotorCommand:  # tasks.paper_command
        tau = _t.PAPER_TORQUE_NM * _clip(a[0])
        return _torque_command(tau, tau)

    @staticmethod
    def ctrl_one(a: list) -> tuple[float, float]:  # tau_ff[wheels] (float32) on both wheels
        tau = _f32(_t.PAPER_TORQUE_NM * _clip(a[0]))
        return tau, tau

    @staticmethod
    def ctrl_batch(a: np.ndarray) -> np.ndarray:  # tau_ff[wheels] (float32) on both wheels
        # One column: writing a row (1,) into the data's ctrl (2,) sets both wheels.
        return (_t.PAPER_TORQUE_NM * a[:, :1]).astype(np.float32).astype(np.float64)

    @staticmethod
    def observe(b: list, c: list) -> list:  # tasks.observe_paper
        pitch = _pitch(b)
        x = _t.WHEEL_RADIUS_M * (0.5 * (b[_PL] + b[_PR]) + pitch)
        v = _t.WHEEL_RADIUS_M * (0.5 * (b[_VL] + b[_VR]) + b[_GX + 1])
        return [x, v, pitch, b[_GX + 1]]

    @staticmethod
    def terminated(o: list) -> bool:  # tasks.pitch_terminated (o is finite here)
        return abs(o[2]) > _t.MAX_PITCH_RAD


class _StandStillKernel(_PaperKernel):
    @staticmethod
    def reward(a: list, next_obs: np.ndarray, o: list) -> float:  # tasks.stand_still_reward
        tau = _t.PAPER_TORQUE_NM * _clip(a[0])
        x, v, pitch, rate = o  # sum(v * v for v in o) adds left to right from 0: the same sums
        return 30.0 - tau * tau - (x * x + v * v + pitch * pitch + rate * rate)


class _MoveStraightKernel(_PaperKernel):
    @staticmethod
    def reward(a: list, next_obs: np.ndarray, o: list) -> float:  # tasks.move_straight_reward
        tau = _t.PAPER_TORQUE_NM * _clip(a[0])
        dv = o[1] - _t.STRAIGHT_SPEED_MPS
        return 15.0 - (dv * dv + tau * tau)


class _TurnKernel(_FastKernel):
    @staticmethod
    def command(a: list) -> MotorCommand:  # tasks.turn_command
        left, right = (_clip(v) for v in a)
        return _torque_command(_t.PAPER_TORQUE_NM * left, _t.PAPER_TORQUE_NM * right)

    @staticmethod
    def ctrl_one(a: list) -> tuple[float, float]:  # tau_ff[wheels] (float32)
        left, right = a
        return _f32(_t.PAPER_TORQUE_NM * _clip(left)), _f32(_t.PAPER_TORQUE_NM * _clip(right))

    @staticmethod
    def ctrl_batch(a: np.ndarray) -> np.ndarray:  # tau_ff[wheels] (float32)
        return (_t.PAPER_TORQUE_NM * a[:, :2]).astype(np.float32).astype(np.float64)

    @staticmethod
    def observe(b: list, c: list) -> list:  # tasks.observe_turn
        pitch = _pitch(b)
        v = _t.WHEEL_RADIUS_M * (0.5 * (b[_VL] + b[_VR]) + b[_GX + 1])
        return [v, pitch, b[_GX + 1], b[_GX + 2], c[0]]

    @staticmethod
    def reward(a: list, next_obs: np.ndarray, o: list) -> float:  # tasks.turn_reward
        # Same numpy dot as the task (its rounding may differ from a*a + b*b).
        tau = np.array([_t.PAPER_TORQUE_NM * _clip(v) for v in a])
        v, yaw_rate, cmd = o[0], o[3], o[4]
        return 15.0 - (v * v + (yaw_rate - cmd) ** 2 + 0.5 * float(tau @ tau))

    @staticmethod
    def reward_batch(a: np.ndarray, obs: np.ndarray, o_rows: list) -> list:
        dots = _row_dots(_t.PAPER_TORQUE_NM * a)
        return [15.0 - (o[0] * o[0] + (o[3] - o[4]) ** 2 + 0.5 * d) for o, d in zip(o_rows, dots)]

    @staticmethod
    def terminated(o: list) -> bool:  # tasks.turn_terminated (o is finite here)
        return abs(o[1]) > _t.MAX_PITCH_RAD


class _LocomotionKernel(_FastKernel):
    kp, kd = _LEG_KP, _LEG_KD

    @staticmethod
    def ctrl_one(a: list) -> tuple[float, ...]:  # kp * q_des + kd * qd_des + tau_ff, float32
        # Each float32 operation of _apply as a float64 one rounded to float32 (exact: a product
        # or sum of two float32 values, rounded twice, equals the float32 result). kd * qd_des is
        # +0 and tau_ff is +0 on the legs, kp and q_des are +0 on the wheels: adding +0 only
        # turns a -0 into +0, which `or 0.0` does.
        a0, a1, a2, a3, a4, a5 = [_clip(v) for v in a]
        r, w, kp = _t.LEG_RANGE_RAD, _t.LOCO_WHEEL_TORQUE_NM, _t.LEG_KP
        q0, q1, q3, q4 = _FLOAT32_4.unpack(_FLOAT32_4.pack(r * a0, r * a1, r * a3, r * a4))
        c = _FLOAT32_6.unpack(_FLOAT32_6.pack(kp * q0, kp * q1, w * a2, kp * q3, kp * q4, w * a5))
        return (c[0] or 0.0, c[1] or 0.0, c[2] or 0.0, c[3] or 0.0, c[4] or 0.0, c[5] or 0.0)

    @staticmethod
    def ctrl_batch(a: np.ndarray) -> np.ndarray:  # kp * q_des + kd * qd_des + tau_ff, float32
        # q_des and tau_ff of command() by one multiply each: a column it leaves at zero
        # becomes +-0 here instead of +0, which gives the same ctrl (+0 is added to every
        # column first: kd * qd_des is +0, so kp * q_des + kd * qd_des is never -0, and x + (+-0)
        # is x for any other x).
        q_des = (a * _LOCO_Q_SCALE).astype(np.float32)
        tau = (a * _LOCO_TAU_SCALE).astype(np.float32)
        return (_LEG_KP * q_des + _LOCO_KD_QD + tau).astype(np.float64)

    @staticmethod
    def command(a: list) -> MotorCommand:  # tasks.locomotion_command
        a = [_clip(v) for v in a]
        r, w = _t.LEG_RANGE_RAD, _t.LOCO_WHEEL_TORQUE_NM
        q_des = np.array([r * a[0], r * a[1], 0.0, r * a[3], r * a[4], 0.0], np.float32)
        tau = np.array([0.0, 0.0, w * a[2], 0.0, 0.0, w * a[5]], np.float32)
        return MotorCommand(q_des, ZERO_GAINS, _LEG_KP, _LEG_KD, tau)

    @staticmethod
    def observe(b: list, c: list) -> list:  # tasks.observe_locomotion
        w, x, y, z = b[_QW:_QW + 4]
        pitch = _asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
        roll = _atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
        v = _RADIUS * (0.5 * (b[_VL] + b[_VR]) + b[_GX + 1])
        # tasks.base_height, its loop over the two legs written out
        s, co = _sin(pitch), _cos(pitch)
        t1 = _HIP0 + b[0]
        t2 = t1 + _KNEE0 + b[1]
        h_left = _RADIUS - (-s * (_NTHIGH * _sin(t1) - _SHANK * _sin(t2))
                            + co * (_NTHIGH * _cos(t1) - _SHANK * _cos(t2)))
        t1 = _HIP0 + b[3]
        t2 = t1 + _KNEE0 + b[4]
        h_right = _RADIUS - (-s * (_NTHIGH * _sin(t1) - _SHANK * _sin(t2))
                             + co * (_NTHIGH * _cos(t1) - _SHANK * _cos(t2)))
        return [pitch, roll, b[22], b[23], b[24], b[0], b[1], b[3], b[4], b[6], b[7], b[9], b[10],
                b[_VL], b[_VR], v, 0.5 * (h_left + h_right), c[0], c[1]]

    @staticmethod
    def reward(a: list, next_obs: np.ndarray, o: list) -> float:  # tasks.locomotion_reward
        tau = np.array([_t.LOCO_WHEEL_TORQUE_NM * _clip(a[_L]), _t.LOCO_WHEEL_TORQUE_NM * _clip(a[_R])])
        try:  # float32 differences, as the task (a float64 difference rounded to float32)
            dv, dh = _FLOAT32_2.unpack(_FLOAT32_2.pack(o[15] - o[17], o[16] - o[18]))
        except OverflowError:  # beyond float32: numpy's inf
            dv, dh = float(next_obs[15] - next_obs[17]), float(next_obs[16] - next_obs[18])
        return 10.0 - (2.0 * dv ** 2 + 100.0 * dh ** 2 + 0.1 * o[4] ** 2 + 0.05 * float(tau @ tau))

    @staticmethod
    def reward_batch(a: np.ndarray, obs: np.ndarray, o_rows: list) -> list:
        tau = _t.LOCO_WHEEL_TORQUE_NM * a[:, _WHEELS]
        dots = _row_dots(tau)
        dv = (obs[:, 15] - obs[:, 17]).tolist()
        dh = (obs[:, 16] - obs[:, 18]).tolist()
        return [10.0 - (2.0 * v ** 2 + 100.0 * h ** 2 + 0.1 * o[4] ** 2 + 0.05 * d)
                for v, h, o, d in zip(dv, dh, o_rows, dots)]

    @staticmethod
    def terminated(o: list) -> bool:  # tasks.locomotion_terminated (o is finite here)
        return abs(o[0]) > _t.MAX_PITCH_RAD or abs(o[1]) > _t.MAX_ROLL_RAD


def _task_key(task: TaskSpec) -> tuple:
    return (task.observe, task.action_to_command, task.reward, task.terminated, task.variant)


# A kernel applies only to a task built from exactly these functions (a custom TaskSpec, or one
# with another function swapped in, takes the reference path).
_FAST_KERNELS: dict[tuple, _FastKernel] = {
    _task_key(_t.TASKS["stand_still"]): _StandStillKernel(),
    _task_key(_t.TASKS["move_straight"]): _MoveStraightKernel(),
    _task_key(_t.TASKS["turn"]): _TurnKernel(),
    _task_key(_t.TASKS["locomotion"]): _LocomotionKernel(),
}


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
        # HalfCheetah never terminates on its own: the 1000-step limit lives in gymnasium's
        # registration, which this direct construction bypasses, so apply it here (else an
        # evaluation episode never ends).
        env = gym.wrappers.TimeLimit(make_halfcheetah(gap, **kw), HALFCHEETAH_MAX_EPISODE_STEPS)
    else:
        env = WheelLeggedEnv(by_id.get(task, task), profile=profile, seed=seed, **kw)
    if seed is not None:
        env.reset(seed=seed)
    return env

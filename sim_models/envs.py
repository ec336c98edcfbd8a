"""Gymnasium envs: a thin layer over WheelLeggedSim and the task contract (what the robot uses).

Why thin: the env must produce exactly the observation, reward and termination the robot program
computes from a firmware RobotState, so every number comes from the task's own functions
(task_contract.tasks: `observe_values`, `reward_values`, `terminated_values`, the actuator table)
and the history rules (task_contract.history). The env keeps its own per-step Python small (the
target is env step within 25% of raw `mj_step` cost; see docs/bench/sim_models.md).

Options: `WheelLeggedEnv("stand_still", options="action_history=2")` or the task id
"stand_still:action_history=2" adds history to the observation (docs/task_contract.md); the
observation space has the layout's size; reward and termination read the raw observation.

Seeding: `reset(seed=s)` reseeds the simulator's noise generator (initial pitch, sensor and action
noise, pushes) and the command draw from `s`, so the same seed gives the same trajectory.
A simulator blow-up (non-finite state) ends the episode as terminated with a finite observation.

Fast path: `step` does not build the RobotState / MotorCommand objects when it need not; it calls
the same task functions on the simulator's float32 sensor buffer (as a list, the layout of
task_contract.state) and writes the ctrl the task's command implies straight to MuJoCo
(`_FastKernel` below). Its outputs are bit-identical to the reference path (`fast = False`: the
TaskSpec's array methods on a RobotState, what the robot computes); tests/sim_models/
test_step_fast_path.py checks that on every task and profile.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Any

import gymnasium as gym
import numpy as np

from sim_models import HALFCHEETAH_MAX_EPISODE_STEPS
from sim_models.profiles import DynamicsProfile, load_profile
from sim_models.robot import DEFAULT_INIT_PITCH_RAD, ZERO_GAINS, WheelLeggedSim
from sim_models.tasks import ENV_IDS
from task_contract.history import History, ObsLayout, TaskOptions
from task_contract.state import state_values
from task_contract.tasks import CONTROL_HZ, TaskSpec, episode_origin

log = logging.getLogger(__name__)

TASK_IDS = ENV_IDS
RENDER_WIDTH, RENDER_HEIGHT = 320, 240
OBS_BOUND = 1e6  # finite (check_env asks for it); no quantity in these observations comes near it


class InvalidActionError(ValueError):
    """An action with the wrong shape or a non-finite value (a learner bug: fail loudly)."""


class WheelLeggedEnv(gym.Env):
    """One task (with its observation options) on the wheel-legged robot under one dynamics profile."""

    # render_fps is the control rate: one rendered frame per step plays back in real time (a video
    # recorder, e.g. gymnasium's RecordVideo, takes its frame rate from here). Set per instance
    # from the task's rate; the class default is the contract's rate.
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(CONTROL_HZ)}

    def __init__(
        self,
        task: str = "stand_still",
        profile: "str | DynamicsProfile | None" = "nominal",
        render_mode: str | None = None,
        init_pitch_rad: float = DEFAULT_INIT_PITCH_RAD,
        command: "np.ndarray | None" = None,
        seed: int | None = None,
        options: "str | TaskOptions | None" = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.layout = ObsLayout.of(task, options)
        self.task: TaskSpec = self.layout.task
        self.metadata = {**type(self).metadata, "render_fps": int(round(self.task.control_hz))}
        self.options = self.layout.options
        self.profile = load_profile(profile)
        self.render_mode = render_mode
        self.sim = WheelLeggedSim(self.task.variant, self.profile, seed=seed,
                                  init_pitch_rad=init_pitch_rad)
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (self.layout.dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.task.act_dim,), np.float32)
        self._action_shape = (self.task.act_dim,)
        self._fixed_command = None if command is None else np.asarray(command, np.float32)
        self._command = np.asarray(self.task.default_command, np.float32)
        self._obs = np.zeros(self.layout.dim, np.float32)
        self._origin = 0.0  # wheel travel at the episode's first reading (task_contract.tasks)
        self._history: History | None = None if self.layout.plain else History(self.layout)
        self._steps = 0
        self.fast = True  # False: the reference path (TaskSpec methods on a RobotState)
        self._kernel_task: TaskSpec | None = None
        self._kernel: _FastKernel | None = None
        self._renderer = None
        self.nonfinite_episodes = 0
        self.invalid_actions = 0
        if seed is not None:
            self.action_space.seed(seed)

    @property
    def task_id(self) -> str:
        """The task with its options ("stand_still:action_history=2"): what robot and learner compare."""
        return self.layout.id

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        sim_seed = None if seed is None else int(self.np_random.integers(2**63 - 1))
        self.sim._reset(sim_seed, options.get("pitch_rad"))
        if "command" in options:
            self._command = np.asarray(options["command"], np.float32)
        elif self._fixed_command is not None:
            self._command = self._fixed_command
        elif self.task.command_low:
            self._command = self.task.sample_command(self.np_random)
        self._steps = 0
        b = self.sim._sensed[0].tolist() if self.fast else state_values(self.sim.state())
        self._origin = episode_origin(b)
        raw = np.array(self.task.observe_values(b, self._command.tolist(), self._origin), np.float32)
        if self._history is None:
            self._obs = raw
        else:
            self._obs = np.array(self._history.start(raw.tolist()), np.float32)
        return self._obs, {"command": self._command}

    def _fast_kernel(self) -> "_FastKernel | None":
        """The fast-path kernel of the current task (None: take the reference path)."""
        task = self.task
        if task is not self._kernel_task:  # the task object was replaced: bind its functions again
            self._kernel_task, self._kernel = task, _FastKernel(task, self.sim._act_slots)
        return self._kernel if self.fast else None

    def step(self, action):
        task = self.task
        if task is not self._kernel_task or not self.fast:
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
        if sim.plain_actuation and sim._held_kp is kernel.kp and sim._held_kd is kernel.kd:
            sim._advance_ctrl(kernel.ctrl_one(vals), (kernel.command, vals))
        else:
            sim._advance(kernel.command(vals), trusted=True)
        buf, faults = sim._sense()
        raw = np.array(kernel.observe(buf.tolist(), self._command.tolist(), self._origin), np.float32)
        return self._finish(vals, raw, faults)

    def _step_reference(self, action):
        """The reference step: the TaskSpec's array methods on the simulator's RobotState."""
        task = self.task
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self._action_shape or not math.isfinite(float(action.sum())):
            self.invalid_actions += 1
            raise InvalidActionError(
                f"action must be finite with shape {self._action_shape}, got {action!r}")
        state = self.sim.step(task.action_to_command(action))
        raw = task.observe(state, self._command, self._origin)
        return self._finish(action.tolist(), raw, state.faults)

    def _finish(self, vals: list, raw: np.ndarray, faults: int):
        """Reward, termination, truncation and the observation (with history) of one step."""
        o = raw.tolist()
        self._steps += 1
        truncated = self._steps >= self.task.max_episode_steps
        if math.isfinite(sum(o)):  # float32 values: the float64 sum cannot overflow
            reward = self.task.reward_values(vals, o)
            terminated = self.task.terminated_values(o)
            info = {"faults": faults}
            obs = raw if self._history is None else np.array(self._history.step(vals, o), np.float32)
        else:
            obs, reward, terminated, info = self._blow_up(raw, faults)
        self._obs = obs
        return obs, reward, terminated, truncated, info  # already float, bool, bool

    def _blow_up(self, raw: np.ndarray, faults: int):
        """Simulator blow-up: end the episode, never hand NaN to a learner."""
        self.nonfinite_episodes += 1
        log.warning("non-finite observation; episode terminated (%d so far)", self.nonfinite_episodes)
        obs = raw if self._history is None else np.concatenate([raw, self._obs[len(raw):]])
        return np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0), 0.0, True, {"faults": faults, "nonfinite": True}

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


# ------------------------------------------------------------------ fast-path kernel
# The fast path calls the task's own value functions (task_contract.tasks) on the simulator's
# float32 sensor buffer as a list; what it adds is the simulator's side only: the ctrl that
# WheelLeggedSim._apply would write for the task's command, computed with the same float32
# operations from the same actuator table (task_contract.actuation).
_SAFE_ACTION = 1e37  # below this, a float32 sum of up to 6 values cannot overflow


class _FastKernel:
    """A task's functions, bound for the step loop, plus the ctrl it implies for one model.

    command(action values) -> MotorCommand; observe(b, command values, origin) -> raw obs values;
    reward(action values, raw obs values); terminated(raw obs values): the TaskSpec's.
    `kp`, `kd`: the constant gain arrays every command carries. ctrl_one(action values) -> the
    ctrl tuple `_apply` writes for command(values) once those gains are in the model (no
    latency, no action noise); ctrl_batch(clipped actions, float64 (N, act_dim)) -> (N, nu) the
    same for N robots (sim_models.vector_env).
    """

    def __init__(self, task: TaskSpec, slots: "np.ndarray") -> None:
        self._args = (task, slots)
        drives = task.drives
        self.observe = task.observe_values
        self.reward = task.reward_values
        self.terminated = task.terminated_values
        self.command = drives.command
        self.kp, self.kd = drives.kp, drives.kd
        slots = [int(i) for i in slots]
        self._slots = slots
        self._position = [i in drives.position_slots for i in slots]
        self._kp = [float(drives.kp[i]) for i in slots]
        self._gains = bool(drives.kp[slots].any() or drives.kd[slots].any())
        self._pack = struct.Struct(f"{len(slots)}f")
        self._targets = drives.targets
        self._columns, scales = drives.columns, drives.scales
        position = np.array([i in drives.position_slots for i in range(len(scales))])
        self._q_scale = np.where(position, scales, 0.0)
        self._tau_scale = np.where(position, 0.0, scales)
        self._kd_qd = drives.kd * ZERO_GAINS  # kd * qd_des: +0 (qd_des is always zero)

    def __reduce__(self):  # a copied or unpickled env binds the functions again (Struct cannot be pickled)
        return _FastKernel, self._args

    def ctrl_one(self, a: list) -> tuple:
        """kp * q_des + kd * qd_des + tau_ff per model actuator, float32 (as _apply)."""
        t, pack = self._targets(a), self._pack
        v = pack.unpack(pack.pack(*[t[i] for i in self._slots]))  # q_des or tau_ff, float32
        if not self._gains:
            return v
        # Each float32 operation of _apply as a float64 one rounded to float32 (exact for one
        # product of two float32 values). kd * qd_des is +0, q_des is +0 on torque slots and
        # tau_ff is +0 on position slots: adding +0 only turns a -0 into +0, which `or 0.0` does.
        c = pack.unpack(pack.pack(*[k * x if p else x for k, x, p in zip(self._kp, v, self._position)]))
        return tuple(x or 0.0 for x in c)

    def ctrl_batch(self, a: np.ndarray) -> np.ndarray:
        """ctrl_one for N robots: (N, act_dim) clipped float64 actions -> (N, nu) float64."""
        cols = a[:, self._columns]
        if not self._gains:
            return (cols * self._tau_scale).astype(np.float32).astype(np.float64)[:, self._slots]
        # A column command() leaves at zero becomes +-0 here instead of +0, which gives the
        # same ctrl (+0 is added first: kd * qd_des is +0, and x + (+-0) is x for any other x).
        q_des = (cols * self._q_scale).astype(np.float32)
        tau = (cols * self._tau_scale).astype(np.float32)
        return (self.kp * q_des + self._kd_qd + tau).astype(np.float64)[:, self._slots]


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
        env = WheelLeggedEnv(by_id.get(task, task), profile=profile, seed=seed, **kw)  # task id may carry options
    if seed is not None:
        env.reset(seed=seed)
    return env

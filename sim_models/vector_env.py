"""A batched wheel-legged env: N robots stepped per call, so the per-step Python is paid once.

Why: one control step of the single env is ~38-76 µs of MuJoCo physics plus a few µs of Python
that cannot shrink much further (building arrays, calling the task arithmetic). Stepping N
robots per call shares the Python that does not depend on the robot (action checks, the command
arithmetic, the sensor gather and the float32 conversion, the result arrays) across all of them;
what stays per robot is the ctrl write, `mj_step`, two row copies and the task's scalar
observation/reward arithmetic (the project's target: env step within 25% of raw `mj_step` cost, docs/benchmarks.md).

Same numbers as N single envs: robot i is a private `WheelLeggedEnv` (its own model, data, noise
generator, episode origin and history); its resets are that env's `reset`, and its observation,
reward and termination come from the same task functions (task_contract, through the env's
fast-path kernel), so the batch gives, step for step, bit for bit, what N single envs give for the
same seeds and actions (tests/sim_models/test_vector_env.py). Task options (history) work as in
the single env: `WheelLeggedVectorEnv("stand_still", 8, options="action_history=2")`.
On a profile without latency, action noise, pushes or sensor noise/bias (nominal, mild) the ctrl
is computed for all robots at once and written straight to each MjData; otherwise each robot
takes the simulator's own per-step path (latency queue, noise draws in their usual order), which
is exact but costs a few µs more per robot.

Gymnasium VectorEnv API, autoreset in the same step (`AutoresetMode.SAME_STEP`): a robot whose
episode ended is reset at once; the returned observation is its first of the new episode and the
last one of the old episode is in `infos["final_obs"][i]` (`infos["_final_obs"][i]` is True).
`reset(seed=s)` seeds robot i with s + i (a list seeds each robot).

    venv = WheelLeggedVectorEnv("stand_still", num_envs=16, profile="nominal")
    obs, info = venv.reset(seed=0)
    obs, rewards, terminations, truncations, infos = venv.step(actions)  # actions (16, act_dim)
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sim_models.envs import _SAFE_ACTION, InvalidActionError, WheelLeggedEnv
from sim_models.profiles import DynamicsProfile
from sim_models.robot import _STATE_LEN, _TORQUE_LIMITED

log = logging.getLogger(__name__)


class WheelLeggedVectorEnv(VectorEnv):
    """`num_envs` robots of one task under one dynamics profile, stepped together."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task: str = "stand_still", num_envs: int = 8,
                 profile: "str | DynamicsProfile | None" = "nominal", **env_kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.envs = [WheelLeggedEnv(task, profile=profile, **env_kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.task = first.task
        self.layout = first.layout
        self._kernel = first._fast_kernel()
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        p = first.profile
        # Nothing random or delayed per step: the ctrl can be written straight to each robot.
        self._direct = not (p.latency_steps or p.action_noise_std or p.push_prob
                            or p.sensor_noise_std or p.sensor_bias)
        self._bind_io()
        self._gains_ready = False
        self._n_substeps = first.sim.n_substeps
        self._gather = first.sim._gather
        self._zero_col = np.zeros((num_envs, 1))
        self._clip_level = np.array(first.sim._clip_level)
        self._sens = np.zeros((num_envs, first.sim.model.nsensordata))
        self._forces = np.zeros((num_envs, first.sim.model.nu))
        self._steps = np.zeros(num_envs, np.int64)
        self._commands: list[list[float]] = [e._command.tolist() for e in self.envs]
        self._act_shape = (num_envs, self.task.act_dim)
        self.invalid_actions = 0
        self.nonfinite_episodes = 0

    # ----------------------------------------------------------------------------- API
    def reset(self, *, seed: "int | Sequence[int | None] | None" = None,
              options: dict[str, Any] | None = None):
        """Reset every robot (robot i gets seed + i, or seed[i]); `options` go to each robot."""
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        self._sync_task()
        obs = np.zeros((self.num_envs, self.layout.dim), np.float32)
        for i, s in enumerate(seeds):
            obs[i] = self._reset_one(i, seed=s, options=options)
        commands = np.array([e._command for e in self.envs], np.float32)
        return obs, {"command": commands}

    def step(self, actions):
        self._sync_task()
        actions = self._check(actions)
        kernel, n = self._kernel, self.num_envs
        vals = actions.tolist()
        clipped = actions.astype(np.float64).clip(-1.0, 1.0)  # = the tasks' clip of each value
        if self._direct and (self._gains_ready or self._check_gains()):
            bufs, faults = self._step_direct(kernel.ctrl_batch(clipped))
        else:
            bufs, faults = self._step_each(vals)
        origins = [e._origin for e in self.envs]
        raw = np.array(list(map(kernel.observe, bufs.tolist(), self._commands, origins)), np.float32)
        o_rows = raw.tolist()
        self._steps += 1
        truncations = self._steps >= self.task.max_episode_steps
        finite = [math.isfinite(sum(o)) for o in o_rows]  # as WheelLeggedEnv.step
        nonfinite = [i for i, f in enumerate(finite) if not f]
        reward, terminated = kernel.reward, kernel.terminated
        rewards = np.array([reward(a, o) if f else 0.0 for a, o, f in zip(vals, o_rows, finite)], np.float64)
        terminations = np.array([terminated(o) if f else True for o, f in zip(o_rows, finite)], bool)
        if self.layout.plain:
            obs = raw
        else:  # each robot's history moves one step (a blown-up robot's row is replaced below)
            obs = np.array([e._history.step(a, o) if f else e._history.values()
                            for e, a, o, f in zip(self.envs, vals, o_rows, finite)], np.float32)
        infos: dict[str, Any] = {"faults": faults}
        if nonfinite:
            self.nonfinite_episodes += len(nonfinite)
            log.warning("non-finite observation on robots %s; episodes terminated", nonfinite)
            obs[nonfinite, :raw.shape[1]] = np.nan_to_num(raw[nonfinite], nan=0.0, posinf=0.0, neginf=0.0)
            infos["nonfinite"] = np.isin(np.arange(n), nonfinite)
        done = terminations | truncations
        if done.any():
            infos["final_obs"] = obs.copy()
            infos["_final_obs"] = done
            for i in np.flatnonzero(done).tolist():
                obs[i] = self._reset_one(i)
        return obs, rewards, terminations, truncations, infos

    def close_extras(self, **kwargs: Any) -> None:
        for e in self.envs:
            e.close()

    # ----------------------------------------------------------------------------- internals
    def _bind_io(self) -> None:
        # Per robot: model, data and views of its ctrl, sensordata and actuator_force (MjData
        # arrays keep their memory for the data's lifetime, so the views can be kept; a copied
        # or unpickled env binds them again).
        self._io = [(e.sim.model, e.sim.data, e.sim.data.ctrl, e.sim.data.sensordata,
                     e.sim.data.actuator_force) for e in self.envs]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_io", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_io()

    def _sync_task(self) -> None:
        """Follow a replaced `task` (e.g. a shorter episode length) into every robot's env."""
        if self.task is not self.envs[0].task:
            for e in self.envs:
                e.task = self.task
            self._kernel = self.envs[0]._fast_kernel()
            self._gains_ready = False

    def _reset_one(self, i: int, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, _ = self.envs[i].reset(seed=seed, options=options)
        self._steps[i] = 0
        self._commands[i] = self.envs[i]._command.tolist()
        return obs

    def _check(self, actions) -> np.ndarray:
        """float32 (N, act_dim), each row valid by WheelLeggedEnv.step's rule, or a typed error."""
        a = np.asarray(actions, dtype=np.float32)
        if a.shape != self._act_shape:
            self.invalid_actions += 1
            raise InvalidActionError(f"actions must have shape {self._act_shape}, got {a.shape}")
        if not np.abs(a).max() < _SAFE_ACTION:  # also true for NaN and inf
            bad = [i for i, row in enumerate(a) if not math.isfinite(float(row.sum()))]
            if bad:
                self.invalid_actions += 1
                raise InvalidActionError(f"actions of robots {bad} are not finite: {a[bad]!r}")
        return a

    def _check_gains(self) -> bool:
        """Every robot's model holds the kernel's constant gains (after its first step)."""
        kp, kd = self._kernel.kp, self._kernel.kd
        self._gains_ready = all(e.sim._held_kp is kp and e.sim._held_kd is kd for e in self.envs)
        return self._gains_ready

    def _step_direct(self, ctrl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every robot's gains are the kernel's (in its model already): write ctrl, step, gather."""
        sens, forces, nstep, step = self._sens, self._forces, self._n_substeps, mujoco.mj_step
        i = 0
        for m, d, ctrl_view, sensordata, force in self._io:
            ctrl_view[:] = ctrl[i]
            step(m, d, nstep=nstep)
            sens[i] = sensordata
            forces[i] = force
            i += 1
        # WheelLeggedSim._sense, for all robots at once (same gather, same float32 conversion).
        bufs = np.concatenate((sens, forces, self._zero_col), axis=1)[:, self._gather].astype(np.float32)
        faults = np.where((np.abs(forces) >= self._clip_level).any(axis=1), _TORQUE_LIMITED, 0)
        return bufs, faults

    def _step_each(self, vals: list) -> tuple[np.ndarray, np.ndarray]:
        """Each robot through its simulator's own step (latency, noise, pushes; first steps)."""
        bufs = np.zeros((self.num_envs, _STATE_LEN), np.float32)
        faults = np.zeros(self.num_envs, np.int64)
        command = self._kernel.command
        for i, env in enumerate(self.envs):
            env.sim._advance(command(vals[i]), trusted=True)
            bufs[i], faults[i] = env.sim._sense()
        return bufs, faults


"""The fixed-rate control loop: read -> decide who drives -> observe -> act -> write -> record.

Per tick (the only work on the loop thread):
    1. take a freshly validated policy if the loader left one (swap at the tick boundary)
    2. the link's latest STATE and its age
    3. safety FSM on (age, tilt, policy, learner link, missed deadlines, operator)
    4. the task's episode rules on the new reading (task_contract.episodes.TaskStream): a new
       driver, a policy swap, the task's length or a tick without a driver start a new episode
       (odometry origin and history reset); the observation (with history) for the driver
    5. action from the mode's driver (controller / policy), non-finite check, clip + rate limit
    6. COMMAND to the link (a non-blocking queue put), ENABLE/DISABLE/ESTOP on mode changes
    7. the previous tick's transition (reward, termination, flags) to the recorder (non-blocking)
Nothing here waits on the network or the disk. In lock-step (against a lock-step virtual robot)
step 2 first waits, bounded, for the STATE that answers the previous COMMAND: the first one whose
firmware clock (t_us) moved forward. Why the clock and not "the newest STATE": the firmware also
answers ENABLE/DISABLE with a STATE of the same tick, and which of the two is newest when the loop
looks is a thread race; by the clock, a run is a function of its seed (bit-identical commands).
State age in lock-step is measured on the lock-step clock too (ticks without a new tick's STATE).
"""

from __future__ import annotations

import gc
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from firmware_bridge.link import SerialLink, WriteStatus
from onboard.policy import OnnxPolicy, PolicyCandidate, PolicyLoader
from onboard.batcher import Row, TransitionRecorder
from onboard.safety import ActionFilter, Mode, Operator, SafetyFSM, SafetyInputs, tilt_from_quat
from onboard.scheduler import DeadlineScheduler, RollingStats
from protocol.messages import Source
from protocol.robot_types import N_ACTUATORS, MotorCommand, MotorMode
from task_contract.episodes import RowFlag, TaskStream
from task_contract.history import ObsLayout
from task_contract.state import state_values
from task_contract.tasks import finite

log = logging.getLogger(__name__)

RECENT_OBS = 64  # observations kept for validating new policies on what the robot sees now
ENABLE_RETRY_TICKS = 20  # resend ENABLE this often while the firmware is not yet enabled


@dataclass
class LoopOptions:
    """How the loop runs (the rest of the configuration lives in its parts)."""

    explore: bool = False  # sample from the policy's Gaussian head (seeded) instead of tanh(mean)
    seed: int = 0
    # Gaussian noise (std, normalised action units) on the controller's actions while it drives a
    # task episode (a standing start, not a catch or a recovery). Why: the clean controller's rows
    # lie on its own closed-loop manifold, and a learner fitted to them (BC reproduces them
    # closely) acts arbitrarily off it: on the virtual robot such a policy fell at once from
    # states the controller never visits. Noise spreads the rows around that manifold (DART,
    # Laskey et al. 2017) at a small cost to the controller's return (docs/results.md).
    controller_noise: float = 0.0
    lockstep: bool = False  # wait for the STATE answering each COMMAND (lock-step virtual robot)
    lockstep_state_timeout_s: float = 0.2
    record: bool = True  # emit transitions while STAND or POLICY drives the robot
    loop_gc: bool = True  # run the young-generation GC in the tick's slack instead of at random


@dataclass
class Driver:
    """Who chose the current action."""

    source: Source
    version: int
    logp: float


class ControlLoop:
    """Owns the tick; see the module docstring. `run(stop)` blocks; `step()` runs one tick."""

    def __init__(
        self,
        link: SerialLink,
        layout: ObsLayout,  # the task and its observation options
        controller,  # BalanceController-like: .act(obs) -> action, optional .reset(); or a callable
        scheduler: DeadlineScheduler,
        fsm: SafetyFSM,
        action_filter: ActionFilter,
        loader: PolicyLoader | None = None,
        recorder: TransitionRecorder | None = None,
        learner_connected: Callable[[], bool] = lambda: False,
        options: LoopOptions | None = None,
        task_command: np.ndarray | None = None,
    ) -> None:
        self.link = link
        self.layout = layout
        self.task = layout.task
        self._controller_act: Callable[[np.ndarray], np.ndarray] = getattr(controller, "act", controller)
        self._controller_reset: Callable[[], None] | None = getattr(controller, "reset", None)
        self.sched = scheduler
        self.fsm = fsm
        self.filter = action_filter
        self.loader = loader
        self.recorder = recorder
        self.learner_connected = learner_connected
        self.opt = options or LoopOptions()
        self.task_command = task_command
        self.rng = np.random.default_rng(self.opt.seed) if self.opt.explore else None
        # its own generator: the policy's exploration draws stay those of a run without it
        self._controller_rng = np.random.default_rng([self.opt.seed, 1]) if self.opt.controller_noise > 0 else None
        self.policy: OnnxPolicy | None = None  # the active policy (one reference)
        self.previous_policy: OnnxPolicy | None = None
        self.swap_latency = RollingStats(100)  # policy received -> first action, seconds
        self.swaps = 0
        self.rollbacks = 0
        self._awaiting_first_action: PolicyCandidate | None = None
        self._operator: queue.SimpleQueue[Operator] = queue.SimpleQueue()
        # Called on the loop thread each tick, right after a policy swap and before the state is
        # read (onboard/supervisor.py: trials, rollbacks, operator commands); each must be quick.
        self.tick_hooks: list[Callable[[], None]] = []
        self._recent_obs = np.zeros((RECENT_OBS, layout.dim), np.float32)
        self._n_obs = 0
        self._last_index = 0
        self._last_t_us = -1  # firmware clock of the last STATE taken (lock-step: must move forward)
        self._state_taken_s = math.inf  # loop clock when that STATE was taken (lock-step ageing)
        self._tick_state = None  # the STATE this tick decided on (the ENABLE retry looks at it)
        self.stream = TaskStream(layout, task_command)
        self._prev: tuple | None = None  # (obs, action, driver, t_us) awaiting its next_obs
        self._closing: tuple | None = None  # (prev, StepResult, state mode) this tick closes
        self._restarted = False  # this tick started a new stretch
        self._stretch_key: tuple | None = None  # who drives the current stretch
        self._hold_flags = 0  # flags of the controller's stretches (RECOVERING, CAUGHT) until the policy drives
        self._last_obs: np.ndarray | None = None
        self._ticks_since_enable = ENABLE_RETRY_TICKS
        self.write_status: dict[str, int] = {}
        self.non_finite_actions = 0
        self.gc_collections = 0
        self._gc_ticks = 0
        self.no_new_state = 0
        self.last_state_age_s = math.inf
        self._damping_cmd = MotorCommand(kd=np.full(N_ACTUATORS, fsm.cfg.damping_kd, np.float32))
        self._zero_cmd = MotorCommand()

    # ------------------------------------------------------------------ API for other threads
    def request(self, op: Operator) -> None:
        """Operator command; applied at the next tick."""
        self._operator.put(op)

    def recent_observations(self) -> np.ndarray | None:
        """A copy of the last observations (for the policy loader's output checks)."""
        n = min(self._n_obs, RECENT_OBS)
        return self._recent_obs[:n].copy() if n else None

    def activate_policy(self, policy: OnnxPolicy, cand: PolicyCandidate | None = None) -> None:
        """Swap in a validated policy (loop thread, tick boundary; or before the loop starts)."""
        self.previous_policy, self.policy = self.policy, policy
        self.swaps += 1
        self._awaiting_first_action = cand
        log.info("policy v%d active (previous: %s)", policy.version,
                 "none" if self.previous_policy is None else f"v{self.previous_policy.version}")

    def rollback(self) -> bool:
        """Back to the previous policy (or to none: the controller). Loop thread only."""
        if self.policy is None:
            return False
        self.policy, self.previous_policy = self.previous_policy, None
        self.rollbacks += 1
        log.warning("policy rolled back to %s", "controller" if self.policy is None else f"v{self.policy.version}")
        return True

    def quarantine_active_policy(self) -> None:
        """The active policy misbehaved while driving (non-finite output, stalls): never run
        that version again; fall back to the previous good policy, or the controller."""
        bad = self.policy
        if self.loader is not None:
            self.loader.quarantine(bad.version, bad.fault)
        self.rollback()
        if self.policy is not None and self.policy.fault:  # the previous one failed too
            self.rollback()

    @property
    def policy_version(self) -> int:
        p = self.policy
        return -1 if p is None else p.version

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event, max_ticks: int | None = None) -> None:
        self.sched.start()
        n = 0
        loop_gc = self.opt.loop_gc and gc.isenabled()
        if loop_gc:
            gc.disable()  # collections happen below, in the tick's slack, not at random
        try:
            while not stop.is_set() and (max_ticks is None or n < max_ticks):
                tick = self.sched.wait_next()
                self.step()
                self.sched.tick_done()
                n += 1
                if loop_gc:
                    self._collect_in_slack(tick.deadline)
        finally:
            if loop_gc:
                gc.enable()

    def _collect_in_slack(self, deadline: float) -> None:
        """Young-generation GC after a tick with at least half a period to spare.

        Why: an automatic collection runs in whichever thread allocates and holds the GIL
        throughout (measured 1-5 ms, up to 48 ms for a full one on the loaded VM). Generation 0
        here every 10 ticks, generation 1 every 100; generation 2 never (start-up objects are
        frozen, see app.py; the steady state allocates few cycles).
        """
        self._gc_ticks += 1
        if self._gc_ticks % 10 or self.sched.clock.now() > deadline + self.sched.period_s / 2:
            return
        gc.collect(1 if self._gc_ticks % 100 == 0 else 0)
        self.gc_collections += 1

    def step(self) -> Mode:
        """One tick; returns the safety mode it ended in."""
        self._swap_if_pending()
        for hook in self.tick_hooks:
            hook()
        state, age, new_state = self._sense()
        self._tick_state = state
        op = self._take_operator()
        before = self.fsm.mode
        inputs = SafetyInputs(
            now_s=self.sched.clock.now(),
            state_age_s=age,
            tilt_rad=tilt_from_quat(state.imu_quat) if state is not None else math.inf,
            policy_ready=self.policy is not None,
            learner_connected=self.learner_connected(),
            missed_recent=self.sched.missed_in_last(self.fsm.cfg.overrun_window_ticks),
            operator=op,
        )
        mode = self.fsm.update(inputs)
        obs = self._observe(state, new_state, mode, op) if state is not None else None
        action, driver = None, None
        if mode in (Mode.STAND, Mode.POLICY) and obs is not None:
            action, driver = self._decide(mode, obs)
            if driver.source == Source.POLICY and self.policy is not None and self.policy.fault:
                self.quarantine_active_policy()
            if not np.all(np.isfinite(action)):
                self.non_finite_actions += 1
                inputs.action_finite, inputs.operator = False, None
                mode = self.fsm.update(inputs)
                action = None
            else:
                if before not in (Mode.STAND, Mode.POLICY):
                    self.filter.reset()
                action = self.filter.apply(action)
        self._on_mode_change(before, mode)
        self._write(mode, action)
        if action is not None and self._awaiting_first_action is not None and driver.source == Source.POLICY:
            self.swap_latency.add(time.perf_counter() - self._awaiting_first_action.received_t)
            self._awaiting_first_action = None
        self._record(obs, state, action, driver)
        if self.recorder is not None:
            self.recorder.maybe_flush()
        return mode

    # ------------------------------------------------------------------ tick parts
    def _swap_if_pending(self) -> None:
        if self.loader is not None:
            pending = self.loader.take_pending()
            if pending is not None:
                self.activate_policy(*pending)

    def _sense(self):
        """(state, state age in s, whether the state is new since the last tick)."""
        sample = self._read_state()
        if sample is None:
            self.last_state_age_s = math.inf
            return None, math.inf, False
        if self.opt.lockstep:  # simulated time: a new tick's STATE is fresh, then ages per tick
            now = self.sched.clock.now()
            new_state = sample.state.t_us > self._last_t_us
            if new_state:
                self._last_t_us, self._state_taken_s = int(sample.state.t_us), now
            age = max(0.0, now - self._state_taken_s)
        else:
            new_state = sample.index > self._last_index
            age = sample.age_s
        self._last_index = sample.index
        self.last_state_age_s = age
        return sample.state, age, new_state

    def _observe(self, state, new_state: bool, mode: Mode, op: Operator | None) -> np.ndarray | None:
        """The task's episode rules on this tick's reading; the observation the driver acts on.

        A new reading closes the open row within its stretch (`_closing`, recorded after the
        action is known). A stretch (one driver's drive, task_contract.episodes) starts when the
        driver or the policy version changes, after the task's length and after ticks without a
        driver; its flags say whether it is a task episode. Stale readings (no new STATE) give the
        last observation: the history moves one step per new reading only.
        """
        self._closing, self._restarted = None, False
        if mode is Mode.DAMPING or op is Operator.RESET:
            self._hold_flags = RowFlag.RECOVERING if mode is Mode.DAMPING else 0
        b = state_values(state)
        if not finite(b):
            self.stream.stop()
            self._prev = None
            return np.full(self.layout.dim, np.nan, np.float32)  # the driver's action fails the finite check
        stream = self.stream
        if new_state and self._prev is not None and stream.active:
            self._closing = (self._prev, stream.step(self._prev[1], b), int(state.mode))
            self._prev = None
            self._last_obs = self._closing[1].obs
        if mode not in (Mode.STAND, Mode.POLICY):
            stream.stop()
            self._stretch_key = None
            return None
        key = ("policy", self.policy.version) if mode is Mode.POLICY and self.policy is not None else ("controller",)
        ended_by_length = self._closing is not None and self._closing[1].truncated
        # On a stale reading a new stretch waits while a row is open (it closes on the old one).
        if (not stream.active or key != self._stretch_key or ended_by_length) and (new_state or self._prev is None):
            self._start_stretch(key, b)
        self._recent_obs[self._n_obs % RECENT_OBS] = self._last_obs
        self._n_obs += 1
        return self._last_obs

    def _start_stretch(self, key: tuple, b: list) -> None:
        """A new episode: the policy's are task episodes; the controller's carry the hold flags
        (CAUGHT when it takes the robot from the policy, RECOVERING after a fall)."""
        if key[0] == "policy":
            self._hold_flags = 0
        elif self._stretch_key is not None and self._stretch_key[0] == "policy" and not self._hold_flags:
            self._hold_flags = RowFlag.CAUGHT
        # a stream still active = the robot was driven up to this reading: a hand-over, so the
        # action history goes on with the actions really applied (task_contract.history)
        self._last_obs = self.stream.start(b, 0 if key[0] == "policy" else self._hold_flags,
                                           handover=self.stream.active)
        self._stretch_key, self._restarted = key, True
        if key[0] == "controller" and self._controller_reset is not None:
            self._controller_reset()  # an episode start, as the env's rollouts reset it

    def _take_operator(self) -> Operator | None:
        try:
            op = self._operator.get_nowait()
        except queue.Empty:
            return None
        if op is Operator.ROLLBACK:  # a policy matter, not a mode change
            self.rollback()
            return None
        return op

    def _read_state(self):
        if self.opt.lockstep:
            last_t = self._last_t_us
            s = self.link.wait_for_state(lambda x: x.state.t_us > last_t,
                                         timeout_s=self.opt.lockstep_state_timeout_s, after_index=self._last_index)
            if s is not None:
                return s
            self.no_new_state += 1
        return self.link.latest_state()

    def _decide(self, mode: Mode, obs: np.ndarray) -> tuple[np.ndarray, Driver]:
        if mode is Mode.POLICY and self.policy is not None:
            p = self.policy
            a, logp = p.act(obs, self.rng)
            return np.asarray(a, np.float32), Driver(Source.POLICY, p.version, logp)
        a = np.asarray(self._controller_act(obs), np.float32).reshape(self.task.act_dim)
        if self._controller_rng is not None and not self._hold_flags:  # a task episode, not a catch
            a = a + np.float32(self.opt.controller_noise) * self._controller_rng.standard_normal(a.shape, np.float32)
        return a, Driver(Source.CONTROLLER, -1, math.nan)

    def _on_mode_change(self, before: Mode, mode: Mode) -> None:
        if mode is before:
            return
        if mode is Mode.ESTOP:
            self._count(self.link.estop())
        elif mode is Mode.PASSIVE:
            if before is Mode.ESTOP:
                self._count(self.link.clear_estop())
                threading.Thread(target=self._reactivate, name="link-reactivate", daemon=True).start()
            else:
                self._count(self.link.disable())
        elif mode in (Mode.STAND, Mode.POLICY) and before not in (Mode.STAND, Mode.POLICY):
            self._count(self.link.enable())
            self._ticks_since_enable = 0

    def _reactivate(self) -> None:
        try:
            self.link.activate(enable=self.fsm.armed)  # a disarmed robot keeps its motors off
        except Exception as e:  # noqa: BLE001 - LinkError in a wrong state: logged, the FSM stays safe
            log.warning("link re-activation failed: %s", e)

    def _write(self, mode: Mode, action: np.ndarray | None) -> None:
        if mode is Mode.ESTOP:
            return
        if mode is Mode.DAMPING:
            cmd = self._damping_cmd
        elif action is not None:
            cmd = self.task.action_to_command(action)
            state = self._tick_state  # what this tick decided on (not whatever came in since)
            self._ticks_since_enable += 1
            if state is not None and state.mode != MotorMode.ENABLED and self._ticks_since_enable >= ENABLE_RETRY_TICKS:
                self._count(self.link.enable())  # e.g. the firmware watchdog switched off
                self._ticks_since_enable = 0
        else:
            cmd = self._zero_cmd  # PASSIVE (motors disabled): keeps a lock-step robot ticking
        self._count(self.link.send_command(cmd))

    def _count(self, st: WriteStatus) -> None:
        self.write_status[st.value] = self.write_status.get(st.value, 0) + 1

    def _record(self, obs, state, action, driver: Driver | None) -> None:
        """Record the row this tick closed; open this tick's row (its next_obs comes next tick).

        A row ends its episode (truncated, unless terminated) where its stretch ends: the task's
        length, a new stretch this tick, or no action this tick. Flags from the stream, plus
        MOTORS_OFF where the firmware reported its motors off after the step.
        """
        if self.recorder is None or not self.opt.record:
            return
        if self._closing is not None:
            (p_obs, p_act, p_drv, p_t), res, next_mode = self._closing
            ended = res.truncated or self._restarted or action is None
            flags = res.flags | (RowFlag.MOTORS_OFF if next_mode != MotorMode.ENABLED else 0)
            self.recorder.add(Row(
                obs=p_obs, act=p_act, rew=res.reward, next_obs=res.obs, terminated=res.terminated,
                truncated=not res.terminated and ended, policy_version=p_drv.version,
                logp=p_drv.logp, source=p_drv.source, t_us=p_t, flags=int(flags),
            ))
        if action is not None and driver is not None and self.stream.active and obs is not None:
            if self._closing is not None or self._restarted:  # a new reading: a new row opens
                self._prev = (obs, action, driver, int(state.t_us))
        else:
            self._prev = None
            self.stream.stop()

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict[str, object]:
        s = self.sched.stats()
        s.update({
            "mode": self.fsm.mode.value,
            "policy_version": self.policy_version,
            "previous_policy_version": -1 if self.previous_policy is None else self.previous_policy.version,
            "swaps": self.swaps,
            "rollbacks": self.rollbacks,
            "swap_latency_ms": {k: round(v * 1e3, 3) for k, v in self.swap_latency.summary().items()},
            "state_age_ms": round(self.last_state_age_s * 1e3, 3) if math.isfinite(self.last_state_age_s) else None,
            "non_finite_actions": self.non_finite_actions,
            "actions_filtered": self.filter.clipped,
            "controller_noise": self.opt.controller_noise,
            "no_new_state": self.no_new_state,
            "gc_collections_in_loop": self.gc_collections,
            "write_status": dict(self.write_status),
            "safety_transitions": list(self.fsm.history)[-10:],
            "safety_counts": dict(self.fsm.counts),
        })
        if self.recorder is not None:
            s["transitions"] = {
                "recorded": self.recorder.rows_recorded,
                "batches": self.recorder.batches_emitted,
                "batches_dropped": self.recorder.batches_dropped,
            }
        if self.loader is not None:
            s["policies"] = {"accepted": self.loader.accepted, "rejected": dict(self.loader.rejected)}
        return s

"""Wires the onboard parts together from an `OnboardConfig` (used by run.py, tests, benchmarks).

Threads: the loop runs on the caller's thread (it asks for real-time priority); the serial
link's reader/writer, the streamer, the policy loader and the status reporter each have their
own. They meet only through bounded queues and single references (see loop.py).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from typing import Any

import numpy as np

from firmware_bridge.link import SerialLink
from onboard.config import OnboardConfig
from onboard.control import ControlServer, Explainer
from onboard.link_watch import LinkWatch
from onboard.loop import ControlLoop, LoopOptions
from onboard.policy import PolicyLoader, PolicyRejected, PolicySpec, load_policy_file
from onboard.realtime import apply_realtime, raise_helper_threads
from onboard.batcher import TransitionRecorder
from onboard.safety import ActionFilter, Mode, SafetyFSM
from onboard.scheduler import DeadlineScheduler, LockStepClock, MonotonicClock
from onboard.status import StatusReporter
from onboard.streamer import Streamer
from onboard.supervisor import PolicySupervisor
from protocol.messages import SCHEMA_VERSION, Hello, schema_hash
from protocol.version import project_version
from task_contract.controller import BalanceController
from task_contract.history import ObsLayout

log = logging.getLogger(__name__)

SOFTWARE_VERSION = f"onboard-{project_version()}"  # in HELLO: which code the robot runs


def make_controller(task_name: str) -> BalanceController:
    """The classical balance controller of the task contract (numpy only): the STAND driver."""
    return BalanceController(task_name)


class OnboardApp:
    """Everything the robot runs. `start()` then `run(stop)`; `close()` always."""

    def __init__(self, cfg: OnboardConfig, controller=None) -> None:
        self.cfg = cfg
        r = cfg.run
        self.layout = ObsLayout.of(r.task, r.task_options)  # the task and its observation options
        self.task = self.layout.task
        catch = cfg.safety.catch_tilt_rad
        if catch and abs(self.task.max_pitch - catch) > 0.02:
            log.warning("the safety catch (%.2f rad) and the task's termination (max_pitch %.2f rad) differ: the "
                        "learner will not see a catch where it ends a policy's episode; set the task option "
                        "max_pitch=%g (docs/task_contract.md)", catch, self.task.max_pitch, catch)
        rate = r.rate_hz or self.task.control_hz
        self.virtual_robot = None
        if r.virtual_robot:
            self.virtual_robot = self._start_virtual_robot()
        self.link = SerialLink(cfg.link)
        clock = LockStepClock() if r.lockstep else MonotonicClock(spin_s=r.spin_us * 1e-6)
        self.scheduler = DeadlineScheduler(1.0 / rate, clock)
        self.fsm = SafetyFSM(cfg.safety)
        spec = PolicySpec(task=self.task.name, obs_dim=self.layout.dim, act_dim=self.task.act_dim,
                          control_hz=rate, schema_version=str(SCHEMA_VERSION), layout=self.layout)
        self.streamer: Streamer | None = None
        self.loader = PolicyLoader(spec, cfg.policy, recent_obs=lambda: self.loop.recent_observations(),
                                   on_result=self._policy_result)
        if r.stream:
            self.streamer = Streamer(cfg.learner, self._hello, stats=self._heartbeat_stats,
                                     policy_version=lambda: self.loop.policy_version, on_policy=self.loader.submit)
        # trials of new versions, rollbacks, operator commands (it counts episodes on the way out)
        self.supervisor = PolicySupervisor(cfg.trials, report=self._trial_report)
        self.recorder = TransitionRecorder(self.layout.dim, self.task.act_dim, sink=self.supervisor.tap(
            self.streamer.offer if self.streamer else (lambda b: True)))
        command = np.asarray(self.task.default_command, np.float32) if self.task.default_command else None
        self.loop = ControlLoop(
            self.link, self.layout, controller or make_controller(self.task.name), self.scheduler, self.fsm,
            ActionFilter(self.task.act_dim, cfg.safety.action_clip, cfg.safety.max_action_delta),
            loader=self.loader, recorder=self.recorder,
            learner_connected=(lambda: self.streamer.connected) if self.streamer else (lambda: False),
            options=LoopOptions(explore=r.explore, seed=r.seed, controller_noise=r.controller_noise, lockstep=r.lockstep,
                                loop_gc=r.loop_gc), task_command=command,
        )
        self.supervisor.attach(self.loop)
        self.control = ControlServer(cfg.control, self.supervisor, self.stats,
                                     Explainer(self.loop, self.link, cfg.control.explain_every_s))
        self.status = StatusReporter(self.stats, r.stats_file, r.status_interval_s)
        # reopens the port after a failure; the FSM decides what follows (onboard/link_watch.py)
        self.link_watch = LinkWatch(self.link, enable=lambda: self.fsm.armed,
                                    estopped=lambda: self.fsm.mode is Mode.ESTOP)

    def _start_virtual_robot(self):
        from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig  # imports mujoco

        vr = VirtualRobot(VirtualRobotConfig(profile=self.cfg.run.virtual_robot, variant=self.task.variant,
                                             device_link=None, lockstep=self.cfg.run.lockstep,
                                             respawn_after_s=self.cfg.run.virtual_robot_respawn_s)).start()
        self.cfg.link.url = vr.device
        return vr

    def _hello(self) -> Hello:
        return Hello(robot_id=self.cfg.learner.robot_id, schema_hash=schema_hash(), task=self.layout.id,
                     obs_dim=self.layout.dim, act_dim=self.task.act_dim, control_hz=1.0 / self.scheduler.period_s,
                     software_version=SOFTWARE_VERSION, policy_version=self.loop.policy_version)

    def _policy_result(self, version: int, ok: bool, reason: str) -> None:
        if self.streamer is not None:
            self.streamer.policy_result(version, ok, reason)

    def _trial_report(self, msg) -> None:
        if self.streamer is not None:
            self.streamer.post(msg)

    def _heartbeat_stats(self) -> dict[str, float]:
        s = self.scheduler.stats()
        return {
            "rate_hz": s["rate_hz"],
            "period_err_p99_ms": s["period_error_ms"]["p99"],
            "tick_p99_ms": s["compute_ms"]["p99"],
            "missed_deadlines": s["missed_deadlines"],
            "mode": float(list(type(self.fsm.mode)).index(self.fsm.mode)),
            "spool_rows": self.streamer.spool.pending_rows if self.streamer else 0,
            **self.supervisor.heartbeat_stats(),
        }

    def stats(self) -> dict[str, Any]:
        s = self.loop.stats()
        s["task"] = self.layout.id
        s["armed"] = self.fsm.armed
        s["why_not_moving"] = self.control.explainer.last if self.control.explainer else ""
        s["trials"] = self.supervisor.snapshot()
        s["loop_started_s"] = self.scheduler.deadline_of(0)  # safety_transitions' t_s count from here
        s["learner"] = self.streamer.status() if self.streamer else {}
        link = self.link.stats()
        c = link["counters"]
        s["link"] = {"lifecycle": link["lifecycle"], "bad_frames": c.bad_frames, "seq_lost": c.seq_lost,
                     "writes_dropped_queue_full": c.writes_dropped_queue_full, "write_errors": c.write_errors,
                     "recoveries": c.recoveries}
        if self.virtual_robot is not None:
            s["virtual_robot"] = {"respawns": self.virtual_robot.counters.respawns}
        return s

    def start(self) -> None:
        """Open the link, enable the firmware, load the start-up policy, start the helper threads."""
        self.link.configure()
        if not self.link.activate(enable=self.fsm.armed):  # a robot to be armed starts with its motors off
            log.error("firmware did not confirm ENABLE; the loop starts PASSIVE and will retry")
        if not self.fsm.armed:
            log.warning("motors off until an operator arms the robot: python -m onboard.control arm")
        if self.cfg.run.policy_path:
            try:
                cand = load_policy_file(self.cfg.run.policy_path)
                self.loop.activate_policy(self.loader.validate_now(cand))
            except (OSError, PolicyRejected) as e:
                log.error("start-up policy %s not used: %s", self.cfg.run.policy_path, e)
        self.loader.start()
        self.link_watch.start()
        if self.streamer is not None:
            self.streamer.start()
        self.control.start()
        self.status.start()
        r = self.cfg.run
        if r.gc_freeze:
            # A full collection walks every live object (tens of ms with onnxruntime, numpy,
            # mujoco-free but large heaps); frozen start-up objects are skipped from now on.
            gc.collect()
            gc.freeze()
        if r.gil_switch_interval_us > 0:
            # A woken loop thread waits up to this long for the GIL held by a busy helper thread.
            sys.setswitchinterval(r.gil_switch_interval_us * 1e-6)
        cpus = tuple(int(c) for c in r.cpus.split(",") if c.strip())
        if r.helper_priority > 0:
            # Before the loop thread's own request: helpers holding the GIL must not be preempted.
            # The serial threads above the others: FIFO does not time-slice, and a policy
            # validation (tens of ms) must not hold up the firmware state.
            serial = min(r.helper_priority + 5, max(r.fifo_priority - 1, r.helper_priority))
            raise_helper_threads(r.helper_priority, {"serial-": serial})
        apply_realtime(r.fifo_priority, cpus, r.lock_memory)

    def run(self, stop: threading.Event, max_ticks: int | None = None) -> None:
        self.loop.run(stop, max_ticks)

    def close(self, drain_s: float = 1.0) -> None:
        """Motors off (DISABLE), then stop the helpers; the stream gets `drain_s` to empty.

        Every recorded row ends either acknowledged by the learner or in the spool on disk (sent
        on the next start): the partial batch is flushed here and the streamer spools whatever is
        still queued before it exits.
        """
        try:
            self.link_watch.stop()  # no reopening while the port is being closed
            self.link.close()
        finally:
            self.loader.stop()
            if self.recorder is not None:
                self.recorder.flush()  # the last partial batch: without this its rows never leave the robot
            if self.streamer is not None:
                self.streamer.stop(drain_s)
            self.status.stop()
            self.control.stop()
            if self.virtual_robot is not None:
                self.virtual_robot.stop()

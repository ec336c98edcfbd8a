"""The policy supervisor: on-robot trials, rollbacks, pins and operator commands, on the loop thread.

Why its own part: the loop decides each tick who drives (safety FSM) and with which policy
object; which policy *version* the robot should trust is a slower decision made from finished
episodes (onboard/trials.py). The supervisor joins the two with one hook per tick
(`ControlLoop.tick_hooks`, right after a policy swap, before the state is read): it notices a
new version from the learner and starts its trial, feeds catches and falls from the FSM's
counters and episodes from the recorder's batches (`tap`), and applies a verdict by activating
the incumbent's policy object again. Operator commands (onboard/control.py) arrive on a queue
and are applied here too, so every change of policy or mode happens at a tick boundary on the
loop thread; each command is answered on the tick after, with the mode it led to.

A version is never run twice by accident: after a rollback the loop's `previous_policy` is the
incumbent's predecessor (or none), never the rolled-back candidate, so a later quarantine
cannot fall back onto it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from onboard.policy import OnnxPolicy
from onboard.safety import Mode, Operator
from onboard.trials import NO_VERSION, PROMOTED, ROLLED_BACK, SUPERSEDED, EpisodeTally, TrialConfig, TrialManager, Verdict
from protocol.messages import TrialReport

if TYPE_CHECKING:
    from onboard.loop import ControlLoop

log = logging.getLogger(__name__)

OPERATOR_COMMANDS: dict[str, Operator] = {
    "arm": Operator.ARM, "disarm": Operator.DISARM, "stand": Operator.STAND, "policy": Operator.POLICY,
    "damp": Operator.DAMP, "estop": Operator.ESTOP, "clear": Operator.RESET,
}
POLICY_COMMANDS = ("rollback", "pin", "unpin")
KEEP_BEST_PROMOTED = 4  # the best promoted versions by the robot's measure, never evicted (_remember)
FALL_AFTER_CATCH_S = 2.0  # a fall this soon after a catch of a version counts as that version's


@dataclass
class Command:
    """One operator command, answered on the tick after it was applied."""

    name: str
    arg: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] = field(default_factory=dict)


def to_message(v: Verdict, t_us: int | None = None) -> TrialReport:
    """A verdict as the TRIAL_REPORT the learner records."""
    def p(x: float) -> float:
        return -1.0 if x != x else float(min(1.0, max(0.0, x)))

    return TrialReport(version=v.candidate, incumbent=max(v.incumbent, -1), outcome=v.outcome,
                       reason=v.reason[:500], returns=np.asarray(v.returns, np.float32),
                       lengths=np.asarray(v.lengths, np.int32),
                       reference_returns=np.asarray(v.reference, np.float32),
                       reference_lengths=np.asarray(v.reference_lengths, np.int32),
                       catches=v.catches, falls=v.falls, p_not_worse=p(v.p_not_worse), p_worse=p(v.p_worse),
                       duration_s=max(0.0, v.duration_s),
                       t_us=time.time_ns() // 1000 if t_us is None else t_us)


class PolicySupervisor:
    """See the module docstring. `attach(loop)` once; `tap(sink)` wraps the recorder's sink."""

    def __init__(self, cfg: TrialConfig | None = None, report: Callable[[TrialReport], None] = lambda m: None,
                 keep_policies: int = 8) -> None:
        self.trials = TrialManager(cfg)
        self.report = report
        self.keep_policies = keep_policies
        self.loop: ControlLoop | None = None
        self.pinned: int | None = None  # the operator's pinned version (-1: the controller)
        self._cache: collections.OrderedDict[int, OnnxPolicy] = collections.OrderedDict()
        self._trusted: list[int] = []  # incumbents in the order they were trusted (rollback history)
        self._held: OnnxPolicy | None = None  # newest version that arrived while pinned
        self._active: OnnxPolicy | None = None
        self._started = False
        self._tally = EpisodeTally()
        self._tally_lock = threading.Lock()
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._answer_next: list[Command] = []
        self._last_mode = Mode.PASSIVE
        self._clock: float | None = None  # the loop's clock at the last tick
        self._driving_s = 0.0  # time in STAND or POLICY so far (the trials' clock)
        self._drove = NO_VERSION  # the version that drove during the last tick
        self._catches = 0
        self._caught: tuple[int, float] | None = None  # (version, loop time) of the last catch
        self._snapshot: dict[str, Any] = {}
        self.reports_sent = 0

    # ------------------------------------------------------------------ wiring
    def attach(self, loop: ControlLoop) -> None:
        self.loop = loop
        loop.tick_hooks.append(self.tick)
        self._refresh()

    def tap(self, sink: Callable[[dict[str, np.ndarray]], bool]) -> Callable[[dict[str, np.ndarray]], bool]:
        """The recorder's sink with the episodes counted on the way (same thread, no copy)."""
        def observe_then(batch: dict[str, np.ndarray]) -> bool:
            with self._tally_lock:
                for ep in self._tally.add(batch):
                    self.trials.episode(ep)
            return sink(batch)

        return observe_then

    # ------------------------------------------------------------------ other threads
    def submit(self, name: str, arg: str = "") -> Command:
        """Queue an operator command (any thread); wait on `.done` for `.reply`."""
        cmd = Command(name, arg)
        if name not in OPERATOR_COMMANDS and name not in POLICY_COMMANDS:
            cmd.reply = {"ok": False, "message": f"unknown command {name!r}"}
            cmd.done.set()
        else:
            self._commands.put(cmd)
        return cmd

    def snapshot(self) -> dict[str, Any]:
        """Trials, pin and held policies as of the last change (a copy; any thread)."""
        return self._snapshot

    def heartbeat_stats(self) -> dict[str, float]:
        t = self.trials.trial
        return {"trial_version": float(t.candidate if t else -1), "incumbent_version": float(self.trials.incumbent),
                "pinned": float(self.pinned is not None),
                "pinned_version": float(self.pinned if self.pinned is not None else -1)}

    # ------------------------------------------------------------------ the tick (loop thread)
    def tick(self) -> None:
        loop = self.loop
        now = self._driving_clock(loop)
        for cmd in self._answer_next:  # applied last tick: the FSM has acted on it since
            cmd.reply.setdefault("ok", True)
            cmd.reply.update(mode=loop.fsm.mode.value, armed=loop.fsm.armed, policy_version=loop.policy_version)
            cmd.done.set()
        self._answer_next = []
        changed = False
        if loop.policy is not self._active or not self._started:
            self._started = True
            self._on_activation(loop.policy, now)
            changed = True
        changed |= self._count_catches_and_falls(loop, now)
        with self._tally_lock:
            verdict = self.trials.poll(now)
        if verdict is not None:
            self._apply(verdict)
            changed = True
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                break
            self._command(cmd, now)
            self._answer_next.append(cmd)
            changed = True
        self._drove = loop.policy_version
        if changed or self.trials.trial is not None and loop.sched.ticks % 200 == 0:
            self._refresh()

    def _driving_clock(self, loop: ControlLoop) -> float:
        """Seconds the robot has stood or driven (STAND/POLICY): the trials' clock. A robot lying
        in DAMPING, unpowered or with a dead link does not use up a candidate's trial."""
        clock = loop.sched.clock.now()
        if self._clock is not None and self._last_mode in (Mode.STAND, Mode.POLICY):
            self._driving_s += max(0.0, clock - self._clock)
        self._clock = clock
        return self._driving_s

    def _count_catches_and_falls(self, loop: ControlLoop, now: float) -> bool:
        mode, counted = loop.fsm.mode, False
        catches = loop.fsm.counts.get("catches", 0)
        if catches > self._catches and self._drove >= 0:
            self.trials.catch(self._drove)
            self._caught = (self._drove, now)
            counted = True
        self._catches = catches
        if mode is Mode.DAMPING and self._last_mode is not Mode.DAMPING:
            who = self._drove if self._last_mode is Mode.POLICY else NO_VERSION
            if who < 0 and self._caught is not None and now - self._caught[1] <= FALL_AFTER_CATCH_S:
                who = self._caught[0]  # the controller took it too late
            if who >= 0:
                self.trials.fall(who)
                counted = True
        self._last_mode = mode
        return counted

    def _on_activation(self, p: OnnxPolicy | None, now: float) -> None:
        """The loop's policy changed without us: a new version from the learner, or the loop's
        own fallback (quarantine, the old `rollback` request)."""
        loop = self.loop
        prev, self._active = self._active, p
        if prev is not None and prev.fault:  # the loop quarantined it: never trust or run it again
            self._forget(prev.version, prev.fault, now)
        t = self.trials.trial
        if p is None:
            if t is not None:
                self._apply(self.trials.end(ROLLED_BACK, "the loop dropped it (quarantine or rollback)", now),
                            drive=False)
            return
        if p.version in self._cache:  # a version we know, put back by the loop
            self._cache[p.version] = p
            if t is not None and p.version != t.candidate:
                self._apply(self.trials.end(ROLLED_BACK, f"the loop fell back to v{p.version} (quarantine or rollback)", now),
                            drive=False)
            if self.trials.trial is None and self.trials.incumbent != p.version:
                self.trials.adopt(p.version)
                self._trust(p.version)
            return
        self._remember(p)
        if self.pinned is not None:
            self._held = p
            log.warning("policy v%d held, not driving: v%s is pinned by the operator (unpin to try it)",
                        p.version, self.pinned)
            self._drive(self.pinned)
            return
        ended = self.trials.start(p.version, now)
        if ended is not None:
            self._send(ended)
        if not self.trials.cfg.enabled:
            self._trust(p.version)
        elif self.trials.incumbent in self._cache and loop.previous_policy is not self._cache[self.trials.incumbent]:
            # the loader swapped over a candidate still on trial: a quarantine falls back to the incumbent
            loop.previous_policy = self._cache[self.trials.incumbent]

    def _apply(self, v: Verdict | None, drive: bool = True) -> None:
        if v is None:
            return
        if v.outcome == PROMOTED:
            self._trust(v.candidate)
        elif v.outcome == ROLLED_BACK and drive:
            self._drive(v.incumbent)
            self._forget_previous()
        self._send(v)

    def _send(self, v: Verdict) -> None:
        try:
            self.report(to_message(v))
            self.reports_sent += 1
        except Exception as e:  # noqa: BLE001 - reporting must never stop the loop
            log.warning("trial report for v%d not sent: %s", v.candidate, e)

    # ------------------------------------------------------------------ policies
    def _remember(self, p: OnnxPolicy) -> None:
        self._cache[p.version] = p
        # never evict the best version this robot has measured, nor the best few it promoted: the
        # learner's deployable policy is the best promoted one by its own count of the episodes
        # (the trial reports'), and a demo's end pins it. It was evicted once, 8 versions later;
        # once more when the best measured overall was a version the robot had rolled back; once
        # more when the learner's count ranked the robot's second-best promoted version first.
        keep = {self.trials.incumbent, self.pinned, p.version, self.trials.best_measured(),
                *self.trials.top_measured(KEEP_BEST_PROMOTED, among=set(self._trusted)), *self._trusted[-2:]}
        for v in list(self._cache):
            if len(self._cache) <= self.keep_policies:
                break
            if v not in keep:
                del self._cache[v]

    def _forget(self, version: int, why: str, now: float) -> None:
        self._cache.pop(version, None)
        self._trusted = [v for v in self._trusted if v != version]
        self.trials.demote(version)
        t = self.trials.trial
        if t is not None and t.candidate == version:
            self._apply(self.trials.end(ROLLED_BACK, f"quarantined: {why}", now), drive=False)
        elif t is None and self.trials.incumbent == version:
            successor = self.loop.policy
            self.trials.adopt(successor.version if successor is not None else NO_VERSION)

    def _trust(self, version: int) -> None:
        if not self._trusted or self._trusted[-1] != version:
            self._trusted.append(version)
            del self._trusted[:-32]

    def _drive(self, version: int) -> bool:
        """Make `version` (-1: the controller) the loop's policy, at this tick boundary."""
        loop = self.loop
        if version < 0:
            if loop.policy is not None:
                loop.previous_policy, loop.policy = loop.policy, None
                log.warning("policy: the controller drives (no policy)")
        else:
            p = self._cache.get(version)
            if p is None:
                return False
            if loop.policy is not p:
                loop.activate_policy(p)
        self._active = loop.policy
        return True

    def _forget_previous(self) -> None:
        """After a rollback the loop's fallback is the trusted version before the incumbent."""
        before = [v for v in self._trusted[:-1] if v in self._cache and v != self.trials.incumbent]
        self.loop.previous_policy = self._cache[before[-1]] if before else None

    # ------------------------------------------------------------------ operator commands
    def _command(self, cmd: Command, now: float) -> None:
        op = OPERATOR_COMMANDS.get(cmd.name)
        if op is not None:
            self.loop.request(op)  # the FSM takes it later in this same tick
            cmd.reply["message"] = f"{cmd.name} applied"
            return
        if cmd.name == "unpin":
            self._unpin(cmd, now)
        elif cmd.name == "pin":
            self._pin(cmd, now)
        else:
            self._rollback(cmd, now)

    def _rollback(self, cmd: Command, now: float) -> None:
        if self.pinned is not None:
            cmd.reply.update(ok=False, message=f"v{self.pinned} is pinned: unpin first")
            return
        t = self.trials.trial
        if t is not None:
            self._apply(self.trials.end(ROLLED_BACK, "operator rollback", now))
            cmd.reply["message"] = f"trial of v{t.candidate} ended, back to {_name(t.incumbent)}"
            return
        bad = self.trials.incumbent
        if bad < 0:
            cmd.reply.update(ok=False, message="no policy to roll back: the controller drives")
            return
        before = [v for v in self._trusted if v != bad and v in self._cache]
        target = before[-1] if before else NO_VERSION
        self._trusted = [v for v in self._trusted if v != bad]
        self.trials.demote(bad)
        self.trials.adopt(target)
        self._drive(target)
        self._forget_previous()
        self._send(Verdict(bad, target, ROLLED_BACK, "operator rollback", [], [], 0, 0, [], [], 0.0))
        cmd.reply["message"] = f"v{bad} rolled back, {_name(target)} drives"

    def _pin(self, cmd: Command, now: float) -> None:
        arg = cmd.arg.strip().lower().lstrip("v")
        version = NO_VERSION if arg in ("controller", "-1") else int(arg) if arg.isdigit() else None
        if version is None or (version >= 0 and version not in self._cache):
            held = ", ".join(f"v{v}" for v in self._cache) or "none"
            cmd.reply.update(ok=False, message=f"cannot pin {cmd.arg!r}: this robot holds {held} (or 'controller')")
            return
        if self.trials.trial is not None:
            self._send(self.trials.end(SUPERSEDED, f"operator pinned {_name(version)}", now))
        self.pinned = version
        self.trials.adopt(version)
        self._trust(version)
        self._drive(version)
        cmd.reply["message"] = f"{_name(version)} pinned: it drives, new versions are held until unpin"

    def _unpin(self, cmd: Command, now: float) -> None:
        if self.pinned is None:
            cmd.reply.update(ok=False, message="nothing is pinned")
            return
        was, self.pinned = self.pinned, None
        held, self._held = self._held, None
        if held is not None and held.version > max(was, self.trials.incumbent):
            self._drive(held.version)
            self.trials.start(held.version, now)
            cmd.reply["message"] = f"{_name(was)} unpinned; v{held.version} (held) is on trial now"
        else:
            cmd.reply["message"] = f"{_name(was)} unpinned: new versions are tried again"

    # ------------------------------------------------------------------ status
    def _refresh(self) -> None:
        snap = self.trials.snapshot()
        snap.update(pinned=self.pinned, held=self._held.version if self._held else None,
                    policies_held=list(self._cache), trusted=self._trusted[-8:], reports_sent=self.reports_sent)
        self._snapshot = snap


def _name(version: int) -> str:
    return "the controller" if version < 0 else f"v{version}"

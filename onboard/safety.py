"""The onboard safety state machine and action filter.

Modes, in order of trust:
    PASSIVE  motors off; waiting for a fresh, upright state (or an operator "stand").
    STAND    the classical balance controller drives the robot (the fallback).
    POLICY   the learned policy drives the robot, its actions clipped and rate-limited.
    DAMPING  motors on, zero torque target, joint damping only: a soft landing. Latched.
    ESTOP    firmware ESTOP sent. Latched until an operator "reset".

Faults that leave STAND/POLICY for DAMPING: tilt past the limit, stale or missing state, a
non-finite action, a burst of missed deadlines, and (if so configured) the learner unreachable.
Every transition is logged with its reason and kept in a bounded history for the stats file, so
"why did the robot stop?" always has an answer. Each history entry names who drives after it
(`source`: controller for STAND, policy for POLICY, operator for an operator's command, safety
for the rest).

Keeping a learning robot alive (all off by default, on in configs/onboard_virtual.toml):
- catch (`catch_tilt_rad` > 0): the policy tilting the robot past this soft limit, below the
  DAMPING limit, hands over to the classical controller (POLICY -> STAND); the policy's episode
  ends there.
- retry (`policy_retry_s` > 0): STAND -> POLICY only after the robot has been steady (upright
  within `upright_rad`) that long under the controller, counted from entering STAND (a catch
  below `upright_rad` must not hand the robot straight back).
- recovery (`recover_after_s` > 0): after DAMPING caused by tilt (a fall), once the state is fresh
  and the robot upright (someone picked it up; the virtual robot's respawn) for that long,
  DAMPING -> STAND, and then POLICY by the rules above.
- link recovery (`link_recover_s` > 0): after DAMPING caused by a stale or missing state (a noisy
  or unplugged serial link), once the state has been fresh without a break for that long and
  the robot is upright (for `recover_after_s`, as after a fall), DAMPING -> PASSIVE (then STAND
  by `auto_stand`). A link that is still bad keeps breaking the run of fresh states, so the robot
  stays in DAMPING. The link's evidence does not wait on the posture: a robot that lies down in
  DAMPING (the virtual robot, stood back up by its respawn and falling again within 0.3 s) would
  otherwise never show 0.5 s fresh *and* upright, and stayed latched.
Other DAMPING causes stay latched; an operator "reset" leaves any of them (DAMPING -> PASSIVE).

Arming (`require_arm`, on in the real robot's config): the motors are enabled (PASSIVE -> STAND,
fall recovery -> STAND) only while armed. An operator "arm" arms (python -m onboard.control arm);
"disarm" disarms and lands a standing robot softly (-> DAMPING); an ESTOP disarms too, so after
"clear" a person arms again on purpose. Without `require_arm` the robot starts armed.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
from dataclasses import dataclass

import numpy as np
from protocol.config_cli import help_field

log = logging.getLogger(__name__)


class Mode(str, enum.Enum):
    PASSIVE = "PASSIVE"
    STAND = "STAND"
    POLICY = "POLICY"
    DAMPING = "DAMPING"
    ESTOP = "ESTOP"


class Operator(str, enum.Enum):
    """Commands a person (or the test harness) may give the robot."""

    STAND = "stand"  # PASSIVE -> STAND, or POLICY -> STAND (hold with the controller)
    POLICY = "policy"  # allow STAND -> POLICY again after an operator "stand"
    DAMP = "damp"
    ESTOP = "estop"
    RESET = "reset"  # DAMPING / ESTOP -> PASSIVE
    ROLLBACK = "rollback"  # back to the previous policy (handled by the loop, not a mode change)
    ARM = "arm"  # allow the motors to be enabled (PASSIVE -> STAND once upright)
    DISARM = "disarm"  # no motors until the next arm: STAND/POLICY -> DAMPING (soft landing), then PASSIVE stays


LEARNER_LOST_CHOICES = ("keep", "stand", "damping")


@dataclass
class SafetyConfig:
    """Limits and choices of the safety state machine."""

    tilt_limit_rad: float = help_field(0.6, "base tilt from vertical beyond which the robot goes DAMPING")
    upright_rad: float = help_field(0.3, "PASSIVE -> STAND only when tilted less than this")
    stale_state_ms: float = help_field(50.0, "newest firmware state older than this -> DAMPING")
    overrun_burst: int = help_field(5, "this many missed deadlines ...")
    overrun_window_ticks: int = help_field(200, "... within this many slots -> DAMPING")
    action_clip: float = help_field(1.0, "actions are clipped to [-clip, clip] (the task's normalised range)")
    max_action_delta: float = help_field(0.25, "largest change of any action component per tick")
    auto_stand: bool = help_field(True, "PASSIVE -> STAND by itself once the state is fresh and upright")
    auto_policy: bool = help_field(True, "STAND -> POLICY by itself once a validated policy is active")
    learner_lost: str = help_field("keep", "learner unreachable: keep (the last policy), stand, or damping")
    damping_recover_s: float = help_field(0.0, "> 0: DAMPING -> PASSIVE by itself after this long")
    damping_kd: float = help_field(0.5, "N·m·s/rad joint damping in DAMPING")
    recover_after_s: float = help_field(0.0,
                                        "> 0: DAMPING after a fall -> STAND once fresh and upright this long (0: "
                                        "latched)")
    catch_tilt_rad: float = help_field(0.0,
                                       "> 0: POLICY -> STAND (controller catches) beyond this tilt, below "
                                       "tilt_limit_rad")
    policy_retry_s: float = help_field(0.0,
                                       "> 0: STAND -> POLICY only after this long steady (upright) under the "
                                       "controller")
    link_recover_s: float = help_field(0.0,
                                       "> 0: DAMPING from a stale state -> PASSIVE once fresh this long and upright "
                                       "(0: latched)")
    require_arm: bool = help_field(False,
                                   "motors are enabled only after an operator \"arm\" (the real robot); an ESTOP "
                                   "disarms")

    def __post_init__(self) -> None:
        if self.learner_lost not in LEARNER_LOST_CHOICES:
            raise ValueError(f"learner_lost must be one of {LEARNER_LOST_CHOICES}, got {self.learner_lost!r}")
        if not (0 < self.upright_rad <= self.tilt_limit_rad):
            raise ValueError("need 0 < upright_rad <= tilt_limit_rad")
        if self.catch_tilt_rad and not (0 < self.catch_tilt_rad < self.tilt_limit_rad):
            raise ValueError("need 0 < catch_tilt_rad < tilt_limit_rad (or 0: no catch)")
        if self.recover_after_s < 0 or self.policy_retry_s < 0 or self.link_recover_s < 0:
            raise ValueError("recover_after_s, policy_retry_s and link_recover_s must be >= 0")


@dataclass
class SafetyInputs:
    """What the FSM looks at each tick."""

    now_s: float
    state_age_s: float  # inf when no state was ever received
    tilt_rad: float
    policy_ready: bool
    learner_connected: bool
    missed_recent: int = 0
    action_finite: bool = True
    operator: Operator | None = None


def tilt_from_quat(q_wxyz: np.ndarray) -> float:
    """Angle between the base z axis and world z: acos(1 - 2(x^2 + y^2)), NaN-safe (-> inf)."""
    w, x, y, z = (float(v) for v in q_wxyz)
    n = w * w + x * x + y * y + z * z
    if not math.isfinite(n) or n < 1e-6:
        return math.inf
    c = 1.0 - 2.0 * (x * x + y * y) / n
    return math.acos(max(-1.0, min(1.0, c)))


class SafetyFSM:
    """Decides each tick who drives the robot; see the module docstring for the modes."""

    def __init__(self, cfg: SafetyConfig, history: int = 100) -> None:
        self.cfg = cfg
        self.mode = Mode.PASSIVE
        self.since_s = 0.0
        self.history: collections.deque[dict] = collections.deque(maxlen=history)
        self.counts: dict[str, int] = collections.Counter()
        self._operator_hold_stand = False  # operator said "stand": do not auto-enter POLICY
        self._fell = False  # the current DAMPING was caused by tilt (recoverable, see recover_after_s)
        self._link_fault = False  # the current DAMPING was caused by a stale state (see link_recover_s)
        self._upright_since: float | None = None  # since when the state is fresh and upright
        self._fresh_since: float | None = None  # since when every state is fresh (the link's health)
        self.armed = not cfg.require_arm  # may the motors be enabled (operator arm / disarm)

    def update(self, x: SafetyInputs) -> Mode:
        cfg = self.cfg
        m = self.mode
        if x.operator is not None:
            self._operator(x)
            if self.mode is not m:  # an operator's transition holds for at least one tick
                return self.mode
        if m is Mode.ESTOP:
            return m
        stale = x.state_age_s * 1e3 > cfg.stale_state_ms
        upright = not stale and x.tilt_rad <= cfg.upright_rad
        self._upright_since, upright_s = _run_length(upright, self._upright_since, x.now_s)
        self._fresh_since, fresh_s = _run_length(not stale, self._fresh_since, x.now_s)
        if m is Mode.DAMPING:
            if self._fell and self.armed and cfg.recover_after_s > 0 and upright_s >= cfg.recover_after_s:
                self._go(Mode.STAND, f"upright {upright_s:.2f} s after a fall: recovered", x.now_s)
            elif (self._link_fault and cfg.link_recover_s > 0 and fresh_s >= cfg.link_recover_s and upright
                  and upright_s >= cfg.recover_after_s):
                self._go(Mode.PASSIVE, f"state fresh {fresh_s:.2f} s after a link fault: link healthy", x.now_s)
            elif cfg.damping_recover_s > 0 and x.now_s - self.since_s >= cfg.damping_recover_s:
                self._go(Mode.PASSIVE, f"damping held {cfg.damping_recover_s} s", x.now_s)
            return self.mode
        if m in (Mode.STAND, Mode.POLICY):
            if stale:
                why = "no state" if math.isinf(x.state_age_s) else f"state stale ({x.state_age_s * 1e3:.0f} ms)"
                self._go(Mode.DAMPING, why, x.now_s)
                self._link_fault = True
                return self.mode
            if not x.tilt_rad <= cfg.tilt_limit_rad:
                self._go(Mode.DAMPING, f"tilt {x.tilt_rad:.2f} rad > {cfg.tilt_limit_rad}", x.now_s)
                self._fell = math.isfinite(x.tilt_rad)
                return self.mode
            if not x.action_finite:
                return self._go(Mode.DAMPING, "non-finite action", x.now_s)
            if x.missed_recent >= cfg.overrun_burst:
                return self._go(Mode.DAMPING, f"{x.missed_recent} missed deadlines in {cfg.overrun_window_ticks} ticks", x.now_s)
            if not x.learner_connected and cfg.learner_lost == "damping":
                return self._go(Mode.DAMPING, "learner unreachable", x.now_s)
        if m is Mode.PASSIVE:
            if cfg.auto_stand and self.armed and not stale and x.tilt_rad <= cfg.upright_rad:
                self._go(Mode.STAND, "fresh upright state", x.now_s)
        elif m is Mode.STAND:
            learner_ok = x.learner_connected or cfg.learner_lost == "keep"
            steady_s = min(upright_s, x.now_s - self.since_s)  # upright under the controller
            steady = cfg.policy_retry_s <= 0 or steady_s >= cfg.policy_retry_s
            if x.policy_ready and cfg.auto_policy and learner_ok and steady and not self._operator_hold_stand:
                self._go(Mode.POLICY, "policy active" if cfg.policy_retry_s <= 0 else
                         f"policy active, robot steady {steady_s:.2f} s", x.now_s)
        elif m is Mode.POLICY:
            if cfg.catch_tilt_rad > 0 and x.tilt_rad > cfg.catch_tilt_rad:
                self.counts["catches"] += 1
                self._go(Mode.STAND, f"catch: tilt {x.tilt_rad:.2f} rad > {cfg.catch_tilt_rad}", x.now_s)
            elif not x.policy_ready:
                self._go(Mode.STAND, "no active policy", x.now_s)
            elif not x.learner_connected and cfg.learner_lost == "stand":
                self._go(Mode.STAND, "learner unreachable", x.now_s)
        return self.mode

    def _operator(self, x: SafetyInputs) -> None:
        op = x.operator
        self.counts[f"operator_{op.value}"] += 1
        if op is Operator.ARM:
            self.armed = True
        elif op is Operator.DISARM:
            self.armed = False
            if self.mode in (Mode.STAND, Mode.POLICY):
                self._go(Mode.DAMPING, "operator disarm", x.now_s)
        elif op is Operator.ESTOP:
            self.armed = self.armed and not self.cfg.require_arm
            self._go(Mode.ESTOP, "operator estop", x.now_s)
        elif op is Operator.DAMP and self.mode is not Mode.ESTOP:
            self._go(Mode.DAMPING, "operator damp", x.now_s)
        elif op is Operator.RESET and self.mode in (Mode.DAMPING, Mode.ESTOP):
            self._operator_hold_stand = False
            self._go(Mode.PASSIVE, "operator reset", x.now_s)
        elif op is Operator.STAND and self.mode in (Mode.PASSIVE, Mode.POLICY) and self.armed:
            self._operator_hold_stand = True
            self._go(Mode.STAND, "operator stand", x.now_s)
        elif op is Operator.POLICY:
            self._operator_hold_stand = False

    def _go(self, to: Mode, reason: str, now_s: float) -> Mode:
        if to is not self.mode:
            level = logging.WARNING if to in (Mode.DAMPING, Mode.ESTOP) else logging.INFO
            source = ("operator" if reason.startswith("operator") else
                      "controller" if to is Mode.STAND else "policy" if to is Mode.POLICY else "safety")
            log.log(level, "safety: %s -> %s (%s; source=%s)", self.mode.value, to.value, reason, source)
            self.history.append({"t_s": round(now_s, 4), "from": self.mode.value, "to": to.value,
                                 "reason": reason, "source": source})
            if to is not Mode.DAMPING:
                self._fell = False
            self._link_fault = False
            self.counts[f"to_{to.value}"] += 1
            self.mode = to
            self.since_s = now_s
        return self.mode


class ActionFilter:
    """Clip to the normalised range and limit the change per tick (no step changes at a swap)."""

    def __init__(self, act_dim: int, clip: float = 1.0, max_delta: float = 0.25) -> None:
        self.clip = clip
        self.max_delta = max_delta
        self.prev = np.zeros(act_dim, np.float32)
        self.clipped = 0  # ticks where clipping or rate limiting changed the action

    def reset(self, action: np.ndarray | None = None) -> None:
        self.prev[:] = 0.0 if action is None else action

    def apply(self, a: np.ndarray) -> np.ndarray:
        out = np.clip(a, -self.clip, self.clip)
        if self.max_delta > 0:
            out = np.clip(out, self.prev - self.max_delta, self.prev + self.max_delta)
        out = out.astype(np.float32)
        if not np.array_equal(out, a):
            self.clipped += 1
        self.prev = out
        return out


def _run_length(ok: bool, since: float | None, now_s: float) -> tuple[float | None, float]:
    """(since when `ok` has held without a break, for how long): (None, 0) when it does not hold now."""
    if not ok:
        return None, 0.0
    since = now_s if since is None else since
    return since, now_s - since

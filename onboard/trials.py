"""On-robot trials: a new policy version drives as a candidate for a bounded trial, and the robot
promotes it or rolls back to the incumbent by itself.

Why on the robot: the learner ranks policies in its nominal simulator, and the simulator ranks
policies the robot does not (the dynamics gap: a version that scores higher in simulation can
score lower on the robot). Only the robot's own episodes can say whether a new version is worse,
and only the robot can act on that at once, with or without a learner link.

This module is pure logic (numpy and math only, no loop, no sockets): episodes in, verdicts out,
so every rule is unit-tested. `onboard/supervisor.py` feeds it from the loop thread and applies
its verdicts (activates the incumbent again on a rollback).

The rule (docs/onboard.md, "On-robot trials"):
- Every version's finished policy episodes on this robot (return, length, falls, catches) are
  kept per version (the last `reference_episodes`).
- A new version from the learner starts a trial as the candidate; the version that drove before
  is the incumbent (none for the first policy: it is promoted after `min_episodes` unless it
  falls `max_falls` times; the controller catches it meanwhile).
- From `min_episodes` candidate episodes on, after each one, a one-sided Welch t-test on episode
  returns compares the candidate (its trial episodes) with the incumbent (its episodes before the
  trial) with a margin d = `tolerance` x |incumbent mean|:
    promote   when H0 "candidate mean <= incumbent mean - d" is rejected at `alpha`
              (non-inferiority shown),
    roll back when H0 "candidate mean >= incumbent mean - d" is rejected at `alpha`
              (shown worse by more than the margin),
  and otherwise go on. With `ratchet` (on by default), the same pair of tests also runs against
  the best version this robot has promoted (highest mean return over its episodes here) when that
  is not the incumbent: a candidate must be not worse than both to be promoted, and worse than
  either rolls it back. Without it, each promotion may land up to d below the last, and a chain of
  them drifts ever further below the best version the robot had.
  At `max_episodes` or `max_s` seconds without non-inferiority shown, the
  candidate is rolled back: a version is promoted only if the robot's episodes show it is not
  worse, never for lack of evidence. `max_falls` falls (DAMPING from POLICY) end a trial at once
  (0: falls count only through the returns; the virtual robot, where a fall costs a respawn).
  Checking after every episode is a sequential test: its real error rates are somewhat above
  `alpha` (each look is a chance to err); `alpha` is a per-look threshold, not a guarantee.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass, field
from typing import Collection, Sequence

import numpy as np
from protocol.config_cli import help_field

log = logging.getLogger(__name__)

NO_VERSION = -1  # the controller: no policy


@dataclass
class TrialConfig:
    """When a new policy version is promoted or rolled back (docs/onboard.md, On-robot trials)."""

    enabled: bool = help_field(True,
                               "trial every new version; false: a new version simply drives (no rollback by the "
                               "robot)")
    min_episodes: int = help_field(5,
                                   "candidate episodes before the first test (and the incumbent's needed as a "
                                   "reference)")
    max_episodes: int = help_field(30, "the trial ends here at the latest: rolled back unless shown not worse")
    max_s: float = help_field(120.0,
                              "... or after this long standing or driving (STAND/POLICY) since the candidate first "
                              "drove")
    reference_episodes: int = help_field(50, "the incumbent's last episodes kept as its reference")
    alpha: float = help_field(0.2, "significance of each one-sided Welch t-test (per look)")
    tolerance: float = help_field(0.1, "margin d as a fraction of |incumbent mean return|")
    ratchet: bool = help_field(True,
                               "also test the candidate against the best version this robot has promoted (not "
                               "only the incumbent): promotions cannot drift more than the margin below it")
    max_falls: int = help_field(1,
                                "this many falls (DAMPING from POLICY) during the trial: rolled back at once; 0: "
                                "falls alone never do")

    def __post_init__(self) -> None:
        if not 2 <= self.min_episodes <= self.max_episodes:
            raise ValueError("need 2 <= min_episodes <= max_episodes")
        if not 0 < self.alpha < 0.5:
            raise ValueError("need 0 < alpha < 0.5")
        if self.tolerance < 0 or self.max_s <= 0 or self.max_falls < 0:
            raise ValueError("need tolerance >= 0, max_s > 0, max_falls >= 0")
        if self.reference_episodes < self.min_episodes:
            raise ValueError("need reference_episodes >= min_episodes")


# ---------------------------------------------------------------------------- the test
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (what scipy.special.betainc computes; no scipy here)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T >= t) for Student's t with `df` (real) degrees of freedom."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


@dataclass
class WelchResult:
    """One-sided Welch t-test of candidate vs incumbent - margin."""

    t: float  # (mean_c - mean_i + margin) / se
    df: float  # Welch-Satterthwaite degrees of freedom
    p_not_worse: float  # p of H0 "mean_c <= mean_i - margin": small -> candidate shown not worse
    p_worse: float  # p of H0 "mean_c >= mean_i - margin": small -> candidate shown worse
    mean_c: float
    mean_i: float
    margin: float


def welch_one_sided(cand: Sequence[float], inc: Sequence[float], margin: float) -> WelchResult:
    """Welch's unequal-variance t-test of mean(cand) against mean(inc) - margin, both sides.

    Both samples need >= 2 values. With zero variance on both sides the difference is known
    exactly: the p-values are 0 or 1 (the comparison decides).
    """
    c = np.asarray(cand, np.float64)
    i = np.asarray(inc, np.float64)
    if c.size < 2 or i.size < 2:
        raise ValueError("Welch's test needs at least 2 episodes on each side")
    mc, mi = float(c.mean()), float(i.mean())
    vc, vi = float(c.var(ddof=1)) / c.size, float(i.var(ddof=1)) / i.size
    diff = mc - mi + margin
    se = math.sqrt(vc + vi)
    if se <= 1e-12 * max(1.0, abs(mc), abs(mi)):
        return WelchResult(math.copysign(math.inf, diff) if diff else 0.0, math.inf,
                           0.0 if diff > 0 else 1.0, 0.0 if diff < 0 else 1.0, mc, mi, margin)
    df = (vc + vi) ** 2 / ((vc * vc / (c.size - 1) if vc else 0.0) + (vi * vi / (i.size - 1) if vi else 0.0))
    t = diff / se
    return WelchResult(t, df, student_t_sf(t, df), student_t_sf(-t, df), mc, mi, margin)


# ---------------------------------------------------------------------------- episodes
@dataclass
class Episode:
    """One finished policy episode on the robot."""

    version: int
    ret: float
    length: int
    terminated: bool  # the task's termination (a fall by the task's rules), not a catch or the length


class EpisodeTally:
    """Recorded rows (TRANSITIONS columns, as the recorder hands them on) -> finished policy
    episodes. An episode is a run of task-episode rows (flags 0) of one policy version, ending at
    a row with `terminated` or `truncated` (the loop sets one where every stretch ends)."""

    def __init__(self) -> None:
        self._version = NO_VERSION
        self._ret = 0.0
        self._len = 0

    def add(self, cols: dict[str, np.ndarray]) -> list[Episode]:
        rew = np.asarray(cols["rew"], np.float64)
        versions = np.asarray(cols["policy_version"])
        ends = np.asarray(cols["terminated"], bool) | np.asarray(cols["truncated"], bool)
        term = np.asarray(cols["terminated"], bool)
        flags = cols.get("flags")
        ok = np.ones(rew.size, bool) if flags is None else np.asarray(flags) == 0
        out: list[Episode] = []
        for k in range(rew.size):
            v = int(versions[k])
            if not ok[k] or v < 0:  # controller rows, rows outside the task's episodes
                if self._len and ends[k]:
                    self._reset()
                continue
            if v != self._version:
                self._reset()
                self._version = v
            self._ret += float(rew[k])
            self._len += 1
            if ends[k]:
                out.append(Episode(v, self._ret, self._len, bool(term[k])))
                self._reset()
        return out

    def _reset(self) -> None:
        self._version, self._ret, self._len = NO_VERSION, 0.0, 0


@dataclass
class VersionStats:
    """What this robot measured of one version."""

    version: int
    keep: int = 50
    returns: collections.deque = field(default=None)  # type: ignore[assignment]
    lengths: collections.deque = field(default=None)  # type: ignore[assignment]
    episodes: int = 0
    catches: int = 0
    falls: int = 0

    def __post_init__(self) -> None:
        self.returns = collections.deque(maxlen=self.keep)
        self.lengths = collections.deque(maxlen=self.keep)

    def add(self, ep: Episode) -> None:
        self.returns.append(ep.ret)
        self.lengths.append(ep.length)
        self.episodes += 1

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    def summary(self) -> dict:
        return {"version": self.version, "episodes": self.episodes, "mean_return": self.mean_return,
                "mean_length": float(np.mean(self.lengths)) if self.lengths else math.nan,
                "catches": self.catches, "falls": self.falls}


# ---------------------------------------------------------------------------- trials
PROMOTED, ROLLED_BACK, SUPERSEDED = "promoted", "rolled_back", "superseded"


@dataclass
class Trial:
    """A running trial: the candidate's episodes since it first drove, the incumbent's reference."""

    candidate: int
    incumbent: int
    started_s: float
    reference: list[float]  # the incumbent's returns before the trial
    reference_lengths: list[int]
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    falls: int = 0
    catches: int = 0
    tested: int = -1  # episodes at the last test (a test runs once per new episode)


@dataclass
class Verdict:
    """How a trial ended, with its evidence (sent to the learner as TRIAL_REPORT)."""

    candidate: int
    incumbent: int
    outcome: str  # promoted | rolled_back | superseded
    reason: str
    returns: list[float]
    lengths: list[int]
    catches: int
    falls: int
    reference: list[float]
    reference_lengths: list[int]
    duration_s: float
    p_not_worse: float = math.nan
    p_worse: float = math.nan

    @property
    def rolled_back(self) -> bool:
        return self.outcome == ROLLED_BACK


class TrialManager:
    """Per-version episode stats and the promote / roll back rule (see the module docstring).

    Calls: `start(version, now)` when a new version from the learner begins to drive;
    `episode(ep)`, `catch(version)`, `fall(version)` as they happen; `poll(now)` -> a Verdict
    once the running trial is decided (the caller then activates `incumbent` on a rollback);
    `end(outcome, reason, now)` for an operator's rollback.
    """

    def __init__(self, cfg: TrialConfig | None = None) -> None:
        self.cfg = cfg or TrialConfig()
        self.stats: dict[int, VersionStats] = {}
        self.incumbent = NO_VERSION  # the version the robot trusts (rollback target)
        self.promoted: set[int] = set()  # every version a trial promoted or the operator pinned
        self.trial: Trial | None = None
        self.verdicts: list[Verdict] = []

    def best_measured(self, among: "Collection[int] | None" = None) -> int:
        """The version with the highest mean robot return over at least `min_episodes` episodes
        (NO_VERSION when none has that many): what a person would pin at the end of a run.
        `among`: only these versions (the promoted ones: the learner deploys only those)."""
        best = self.top_measured(1, among)
        return best[0] if best else NO_VERSION

    def top_measured(self, n: int, among: "Collection[int] | None" = None) -> list[int]:
        """The n versions with the highest mean robot return (best first), as best_measured."""
        measured = [s for s in self.stats.values() if s.episodes >= self.cfg.min_episodes and s.version >= 0
                    and (among is None or s.version in among)]
        return [s.version for s in sorted(measured, key=lambda s: s.mean_return, reverse=True)[:n]]

    def version(self, v: int) -> VersionStats:
        s = self.stats.get(v)
        if s is None:
            s = self.stats[v] = VersionStats(v, keep=self.cfg.reference_episodes)
        return s

    # ------------------------------------------------------------------ events
    def start(self, version: int, now_s: float) -> Verdict | None:
        """`version` begins to drive as a new candidate. A trial still running is superseded
        (returned). With trials off, the version simply becomes the incumbent."""
        ended = None
        if self.trial is not None:
            ended = self.end(SUPERSEDED, f"v{version} arrived during the trial", now_s)
        if not self.cfg.enabled:
            self.incumbent = version
            return ended
        ref = self.stats.get(self.incumbent)
        self.trial = Trial(version, self.incumbent, now_s,
                           list(ref.returns) if ref else [], list(ref.lengths) if ref else [])
        log.info("trial: v%d is the candidate against %s (%d reference episodes)", version,
                 _name(self.incumbent), len(self.trial.reference))
        return ended

    def adopt(self, version: int) -> None:
        """The operator made `version` the trusted one (pin): no trial, it is the incumbent."""
        self.trial = None
        self.incumbent = version
        self.promoted.add(version)

    def demote(self, version: int) -> None:
        """`version` is no longer trusted (an operator's rollback, a quarantine): it stops being a
        reference for the ratchet."""
        self.promoted.discard(version)

    def episode(self, ep: Episode) -> None:
        self.version(ep.version).add(ep)
        t = self.trial
        if t is not None and ep.version == t.candidate:
            t.returns.append(ep.ret)
            t.lengths.append(ep.length)

    def catch(self, version: int) -> None:
        self.version(version).catches += 1
        if self.trial is not None and version == self.trial.candidate:
            self.trial.catches += 1

    def fall(self, version: int) -> None:
        self.version(version).falls += 1
        if self.trial is not None and version == self.trial.candidate:
            self.trial.falls += 1

    # ------------------------------------------------------------------ decisions
    def poll(self, now_s: float) -> Verdict | None:
        """The running trial's verdict once it is decided; None while it goes on (or no trial)."""
        t, cfg = self.trial, self.cfg
        if t is None:
            return None
        n = len(t.returns)
        if cfg.max_falls and t.falls >= cfg.max_falls:
            return self.end(ROLLED_BACK, f"{t.falls} falls in {n} episodes", now_s)
        over = n >= cfg.max_episodes or now_s - t.started_s >= cfg.max_s
        if n == t.tested and not over:
            return None
        t.tested = n
        if n < cfg.min_episodes:
            if over:
                return self.end(ROLLED_BACK, f"only {n} episodes in {now_s - t.started_s:.0f} s "
                                             f"(need {cfg.min_episodes})", now_s)
            return None
        if len(t.reference) < cfg.min_episodes:
            return self.end(PROMOTED, f"{n} episodes, mean return {np.mean(t.returns):.0f}; no "
                                      f"measured incumbent ({_name(t.incumbent)}, "
                                      f"{len(t.reference)} episodes) to compare with", now_s)
        tests = [self._test(t.returns, t.reference, t.incumbent)]
        best = self.best_promoted(besides=t)
        if best is not None:
            tests.append(self._test(t.returns, list(self.stats[best].returns), best, "best promoted "))
        said = "; ".join(text for _w, text in tests)
        worse = [w for w, _text in tests if w.p_worse <= cfg.alpha]
        weakest = max((w for w, _text in tests), key=lambda w: w.p_not_worse)  # the test that decides promotion
        if worse:
            return self.end(ROLLED_BACK, f"worse: {said}", now_s, worse[-1])
        if weakest.p_not_worse <= cfg.alpha:
            return self.end(PROMOTED, f"not worse: {said}", now_s, weakest)
        if over:
            return self.end(ROLLED_BACK, f"not shown not worse by the trial's end: {said}", now_s, weakest)
        return None

    def best_promoted(self, besides: Trial) -> int | None:
        """The ratchet's second reference: the promoted version with the highest mean return over at
        least `min_episodes` episodes here, if better than the incumbent; None when off or none is."""
        if not self.cfg.ratchet:
            return None
        best = self.best_measured(among=self.promoted - {besides.candidate})
        if best in (NO_VERSION, besides.incumbent) or self.stats[best].mean_return <= float(np.mean(besides.reference)):
            return None
        return best

    def _test(self, returns: list[float], reference: list[float], version: int, label: str = "") -> tuple:
        """(Welch result, its log text) of the candidate's returns against `version`'s."""
        margin = self.cfg.tolerance * abs(float(np.mean(reference)))
        w = welch_one_sided(returns, reference, margin)
        return w, (f"mean return {w.mean_c:.0f} ({len(returns)} ep) vs {label}{_name(version)}'s {w.mean_i:.0f} "
                   f"({len(reference)} ep), margin {margin:.0f}: p(not worse) {w.p_not_worse:.3f}, "
                   f"p(worse) {w.p_worse:.3f}")

    def end(self, outcome: str, reason: str, now_s: float, w: WelchResult | None = None) -> Verdict | None:
        """End the running trial with `outcome` (also an operator's rollback)."""
        t = self.trial
        if t is None:
            return None
        self.trial = None
        if outcome == PROMOTED:
            self.incumbent = t.candidate
            self.promoted.add(t.candidate)
        v = Verdict(t.candidate, t.incumbent, outcome, reason, list(t.returns), list(t.lengths),
                    t.catches, t.falls, list(t.reference), list(t.reference_lengths),
                    now_s - t.started_s, w.p_not_worse if w else math.nan, w.p_worse if w else math.nan)
        self.verdicts.append(v)
        del self.verdicts[:-100]
        log.log(logging.WARNING if outcome == ROLLED_BACK else logging.INFO, "trial: v%d %s (%s)%s",
                t.candidate, outcome.replace("_", " "), reason,
                f"; back to {_name(t.incumbent)}" if outcome == ROLLED_BACK else "")
        return v

    def snapshot(self) -> dict:
        t = self.trial
        return {
            "incumbent": self.incumbent,
            "trial": None if t is None else {"candidate": t.candidate, "incumbent": t.incumbent,
                                             "episodes": len(t.returns), "falls": t.falls,
                                             "catches": t.catches, "reference_episodes": len(t.reference)},
            "versions": {str(v): s.summary() for v, s in sorted(self.stats.items())[-8:]},
            "last_verdicts": [{"candidate": v.candidate, "incumbent": v.incumbent, "outcome": v.outcome,
                               "reason": v.reason} for v in self.verdicts[-5:]],
        }


def _name(version: int) -> str:
    return "the controller" if version < 0 else f"v{version}"

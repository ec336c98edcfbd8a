"""What the robots measured of each policy version, the deployable policy that follows from it,
and which policy to offer a robot next.

Why: the trainer's publish gate sees only the nominal simulator, which ranks policies the robot
does not. Robots try every new version for a bounded trial and promote or roll it back by
themselves (onboard/trials.py), then say how it went with its evidence (TRIAL_REPORT). This
module keeps that evidence per version and acts on it:

- deployable policy: the promoted version with the best mean robot return (at least
  `min_episodes` episodes; ties go to the newer) is copied to `policies/deployable.onnx`, with
  `policies/deployable.json` holding its evidence (episode returns and lengths, catches, falls,
  the trial's test). A version a robot rolled back never becomes deployable.
- what to offer next (`offer`): nothing new while a robot's trial runs (its heartbeat says
  `trial_version` >= 0) or while a version just sent has not started driving; never again a
  version that robot rolled back; the best measured version first to a robot that runs an older
  one (a robot restarted without it), then the newest published version.
Every report is a row of `trials.jsonl`, read back at start so a restarted learner keeps its
evidence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from learner.service.publisher import PolicyBlob
from protocol import strict_json
from protocol.atomic_file import write_atomic

log = logging.getLogger(__name__)

SENT_WAIT_S = 30.0  # a version sent this long ago that never drove no longer holds back newer ones


@dataclass
class VersionEvidence:
    """The robot's latest window of episodes of one version and how its trials went."""

    version: int
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    catches: int = 0
    falls: int = 0
    outcome: str = ""  # promoted | rolled_back | superseded (its own trial); "" before one
    trial: dict[str, Any] = field(default_factory=dict)  # its own trial's report (without arrays)
    robot: str = ""

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "robot": self.robot, "mean_return": self.mean_return,
                "episodes": len(self.returns), "returns": [round(r, 3) for r in self.returns],
                "lengths": self.lengths, "catches": self.catches, "falls": self.falls,
                "outcome": self.outcome, "trial": self.trial}


@dataclass
class RobotState:
    """Per robot: versions it rolled back, the version last sent and when."""

    rolled_back: set[int] = field(default_factory=set)
    sent: int = -1
    sent_at: float = 0.0
    offered_best: set[int] = field(default_factory=set)


class RobotEvidence:
    """See the module docstring. Thread-safe: the server thread writes, status readers read."""

    def __init__(self, run_dir: Path, policy_path: Callable[[int], Path] | None = None,
                 min_episodes: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.policy_dir = self.run_dir / "policies"
        self.policy_path = policy_path or (lambda v: self.policy_dir / f"policy-v{v:05d}.onnx")
        self.min_episodes = min_episodes
        self.versions: dict[int, VersionEvidence] = {}
        self.robots: dict[str, RobotState] = {}
        self.blobs: dict[int, PolicyBlob] = {}
        self.deployable: int | None = None
        self.reports = 0
        self._lock = threading.Lock()
        self._log_path = self.run_dir / "trials.jsonl"
        self._reload()

    # ------------------------------------------------------------------ reports
    def record(self, robot: str, msg, write: bool = True) -> None:
        """A TRIAL_REPORT from `robot` (protocol.messages.TrialReport or its JSON row)."""
        row = report_row(robot, msg) if not isinstance(msg, dict) else msg
        with self._lock:
            self.reports += 1
            v = row["version"]
            ev = self.versions.setdefault(v, VersionEvidence(v))
            ev.robot = robot
            if row["returns"] or not ev.returns:
                ev.returns, ev.lengths = list(row["returns"]), list(row["lengths"])
            ev.catches += row["catches"]
            ev.falls += row["falls"]
            ev.outcome = row["outcome"]
            ev.trial = {k: row[k] for k in ("incumbent", "outcome", "reason", "p_not_worse", "p_worse",
                                            "duration_s", "t")}
            inc = row["incumbent"]
            if inc >= 0 and row["reference_returns"]:  # the robot's newest window of the incumbent
                iev = self.versions.setdefault(inc, VersionEvidence(inc, outcome="promoted", robot=robot))
                iev.returns, iev.lengths = list(row["reference_returns"]), list(row["reference_lengths"])
            st = self.robots.setdefault(robot, RobotState())
            if row["outcome"] == "rolled_back":
                st.rolled_back.add(v)
            if st.sent == v:
                st.sent = -1
            changed = self._choose_deployable()
        if write:
            self._append(row)
        log.log(logging.WARNING if row["outcome"] == "rolled_back" else logging.INFO,
                "robot %r: trial of v%d %s against %s (%s)", robot, v, row["outcome"].replace("_", " "),
                f"v{inc}" if inc >= 0 else "the controller", row["reason"])
        if write:  # the evidence of every version changes with each report
            self._export(copy_onnx=changed)

    def _choose_deployable(self) -> bool:
        """Best promoted version by mean robot return; True when it changed."""
        eligible = [e for e in self.versions.values()
                    if e.outcome == "promoted" and len(e.returns) >= self.min_episodes
                    and not any(e.version in r.rolled_back for r in self.robots.values())]
        best = max(eligible, key=lambda e: (e.mean_return, e.version), default=None)
        new = None if best is None else best.version
        changed = new != self.deployable
        self.deployable = new
        return changed

    # ------------------------------------------------------------------ push choice
    def note_sent(self, robot: str, blob: PolicyBlob) -> None:
        with self._lock:
            self.blobs[blob.version] = blob
            for v in sorted(self.blobs)[:-16]:
                if v != self.deployable:
                    del self.blobs[v]
            st = self.robots.setdefault(robot, RobotState())
            if st.sent != blob.version:
                st.sent, st.sent_at = blob.version, time.monotonic()

    def note_hello(self, robot: str) -> None:
        """A (re)connected robot: it may have restarted without the best version."""
        with self._lock:
            st = self.robots.setdefault(robot, RobotState())
            st.offered_best.clear()
            st.sent = -1

    def note_heartbeat(self, robot: str, stats: dict) -> None:
        """The version just sent is on trial or trusted (or the robot runs no trials): stop
        waiting for it."""
        with self._lock:
            st = self.robots.setdefault(robot, RobotState())
            if st.sent >= 0 and ("trial_version" not in stats or st.sent in (
                    int(stats["trial_version"]), int(stats.get("incumbent_version", -1)))):
                st.sent = -1

    def note_rejected(self, robot: str, version: int) -> None:
        with self._lock:
            st = self.robots.setdefault(robot, RobotState())
            if st.sent == version:
                st.sent = -1

    def offer(self, session, latest: PolicyBlob | None) -> PolicyBlob | None:
        """The policy to offer this robot now (None: nothing now); see the module docstring."""
        running = int((session.stats or {}).get("trial_version", -1))
        with self._lock:
            st = self.robots.setdefault(session.robot_id, RobotState())
            if st.sent >= 0 and time.monotonic() - st.sent_at > SENT_WAIT_S:
                st.sent = -1  # never drove: no longer waiting for it
            if running >= 0:
                return None
            if st.sent >= 0 and (latest is None or latest.version != st.sent):
                return None  # wait until the version just sent drives, before sending another
            best = self.deployable
            if best is not None and session.policy_version < best and best not in st.offered_best \
                    and best not in st.rolled_back:
                blob = self.blobs.get(best) or self._blob_from_file(best)
                if blob is not None:
                    st.offered_best.add(best)
                    log.info("robot %r runs v%d: offering the best measured v%d first",
                             session.robot_id, session.policy_version, best)
                    return blob
            if latest is None or latest.version in st.rolled_back:
                return None
            return latest

    def _blob_from_file(self, version: int) -> PolicyBlob | None:
        path = self.policy_path(version)
        try:
            return PolicyBlob.from_file(path, version)
        except OSError:
            return None

    # ------------------------------------------------------------------ files
    def _append(self, row: dict) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "a") as fh:
                fh.write(strict_json.dumps(row) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", self._log_path, exc)

    def _reload(self) -> None:
        if not self._log_path.exists():
            return
        for line in self._log_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.record(row.get("robot", ""), row, write=False)
        log.info("trial evidence: %d reports read back, deployable %s", self.reports,
                 "none" if self.deployable is None else f"v{self.deployable}")

    def _export(self, copy_onnx: bool = True) -> None:
        """policies/deployable.onnx (atomic copy of the version's file) + deployable.json."""
        with self._lock:
            v = self.deployable
            ev = self.versions.get(v) if v is not None else None
            blob = self.blobs.get(v) if v is not None else None
            table = {str(k): {"mean_return": e.mean_return, "episodes": len(e.returns), "outcome": e.outcome}
                     for k, e in sorted(self.versions.items())}
        if ev is None:
            return
        try:
            data = blob.onnx if blob is not None else self.policy_path(v).read_bytes()
        except OSError as exc:
            log.error("deployable v%d: its ONNX file is missing (%s); deployable.json only", v, exc)
            data = b""
        self.policy_dir.mkdir(parents=True, exist_ok=True)
        if data and (copy_onnx or not (self.policy_dir / "deployable.onnx").exists()):
            write_atomic(self.policy_dir / "deployable.onnx", data)
        info = {**ev.to_json(), "sha256": hashlib.sha256(data).hexdigest() if data else "",
                "file": "deployable.onnx" if data else "", "source_file": self.policy_path(v).name,
                "chosen_unix": time.time(),
                "rule": "the promoted version with the best mean robot return over its latest "
                        f"episodes (>= {self.min_episodes}); never a version a robot rolled back",
                "versions": table}
        write_atomic(self.policy_dir / "deployable.json", (strict_json.dumps(info, indent=1) + "\n").encode())
        if copy_onnx:
            log.info("deployable policy: v%d (mean robot return %.0f over %d episodes) -> %s", v,
                     ev.mean_return, len(ev.returns), self.policy_dir / "deployable.onnx")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"deployable": self.deployable, "reports": self.reports,
                    "versions": {v: {"mean_return": e.mean_return, "episodes": len(e.returns),
                                     "outcome": e.outcome} for v, e in sorted(self.versions.items())[-10:]}}


def report_row(robot: str, msg) -> dict[str, Any]:
    """A TRIAL_REPORT as the JSON row of trials.jsonl."""
    def p(x: float) -> float | None:
        return None if x < 0 else float(x)

    return {"t": time.time(), "robot": robot, "version": int(msg.version), "incumbent": int(msg.incumbent),
            "outcome": msg.outcome, "reason": msg.reason,
            "returns": [float(x) for x in msg.returns], "lengths": [int(x) for x in msg.lengths],
            "reference_returns": [float(x) for x in msg.reference_returns],
            "reference_lengths": [int(x) for x in msg.reference_lengths],
            "catches": int(msg.catches), "falls": int(msg.falls), "p_not_worse": p(msg.p_not_worse),
            "p_worse": p(msg.p_worse), "duration_s": float(msg.duration_s), "t_us": int(msg.t_us)}



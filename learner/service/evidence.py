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
Every report is a row of `trials.jsonl` (appended and fsync'd before the robot's report is
acknowledged), read back at start so a restarted learner keeps its evidence and knows which
numbered reports (robot, report stream, seq) it already holds: a resent report is acknowledged
again, never counted twice.

A fleet: each robot's episodes of a version are kept apart (`VersionEvidence.windows`, the
robot's latest window each), and a version's mean return is over all its robots' episodes; a
version any robot rolled back is never deployable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
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
    """Each robot's latest window of episodes of one version and how its trials went."""

    version: int
    windows: dict[str, tuple[list[float], list[int]]] = field(default_factory=dict)  # robot -> (returns, lengths)
    catches: int = 0
    falls: int = 0
    outcome: str = ""  # promoted | rolled_back | superseded (its latest trial); "" before one
    trial: dict[str, Any] = field(default_factory=dict)  # its latest trial's report (without arrays)
    robot: str = ""  # the robot that reported on it last

    def set_window(self, robot: str, returns: list[float], lengths: list[int]) -> None:
        self.windows[robot] = (list(returns), list(lengths))

    @property
    def returns(self) -> list[float]:
        return [r for rets, _ in self.windows.values() for r in rets]

    @property
    def lengths(self) -> list[int]:
        return [n for _, lens in self.windows.values() for n in lens]

    @property
    def mean_return(self) -> float:
        returns = self.returns
        return float(np.mean(returns)) if returns else math.nan

    def per_robot(self) -> dict[str, dict[str, Any]]:
        return {robot: {"mean_return": float(np.mean(rets)) if rets else math.nan, "episodes": len(rets)}
                for robot, (rets, _) in sorted(self.windows.items())}

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "robot": self.robot, "mean_return": self.mean_return,
                "episodes": len(self.returns), "returns": [round(r, 3) for r in self.returns],
                "lengths": self.lengths, "catches": self.catches, "falls": self.falls,
                "outcome": self.outcome, "trial": self.trial, "robots": self.per_robot()}


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
        self.report_next: dict[tuple[str, str], int] = {}  # (robot, report stream) -> next seq to record
        self.reports_duplicate = 0
        self.reports_out_of_order = 0
        self._lock = threading.Lock()
        self._log_path = self.run_dir / "trials.jsonl"
        self._reload()

    # ------------------------------------------------------------------ reports
    def receive(self, robot: str, msg) -> int | None:
        """A TRIAL_REPORT off the wire, recorded at most once per (robot, stream_id, seq).

        Returns the report stream's cumulative ACK (every seq <= it is durably recorded), or None
        for an unnumbered report (recorded, not acknowledged). A numbered report is recorded only
        when it is the next of its stream: a duplicate is acknowledged again without counting,
        one past a gap waits for the robot's resend. Raises OSError when trials.jsonl cannot be
        made durable: nothing is acknowledged then, and the robot resends."""
        if msg.seq < 0:
            self.record(robot, msg)
            return None
        key = (robot, msg.stream_id)
        with self._lock:
            nxt = self.report_next.get(key, 0)
        if msg.seq < nxt:
            self.reports_duplicate += 1
            log.info("robot %r: trial report %s #%d already recorded; acknowledged again", robot,
                     msg.stream_id, msg.seq)
        elif msg.seq > nxt:
            self.reports_out_of_order += 1
            log.warning("robot %r: trial report %s #%d before #%d; waiting for the resend", robot,
                        msg.stream_id, msg.seq, nxt)
        else:
            self.record(robot, msg, durable=True)
            nxt += 1
        return nxt - 1

    def record(self, robot: str, msg, write: bool = True, durable: bool = False) -> None:
        """A TRIAL_REPORT from `robot` (protocol.messages.TrialReport or its JSON row). With
        `write`, the row is appended to trials.jsonl first (fsync'd with `durable`; an OSError
        then leaves the evidence untouched) and only then counted."""
        row = report_row(robot, msg) if not isinstance(msg, dict) else msg
        if write:
            self._append(row, durable)
        with self._lock:
            self.reports += 1
            if row.get("stream_id") and int(row.get("seq", -1)) >= 0:
                key = (robot, row["stream_id"])
                self.report_next[key] = max(self.report_next.get(key, 0), int(row["seq"]) + 1)
            v = row["version"]
            ev = self.versions.setdefault(v, VersionEvidence(v))
            ev.robot = robot
            if row["returns"] or robot not in ev.windows:
                ev.set_window(robot, row["returns"], row["lengths"])
            ev.catches += row["catches"]
            ev.falls += row["falls"]
            ev.outcome = row["outcome"]
            ev.trial = {k: row[k] for k in ("incumbent", "outcome", "reason", "p_not_worse", "p_worse",
                                            "duration_s", "t")}
            inc = row["incumbent"]
            if inc >= 0 and row["reference_returns"]:  # the robot's newest window of the incumbent
                iev = self.versions.setdefault(inc, VersionEvidence(inc, outcome="promoted", robot=robot))
                iev.set_window(robot, row["reference_returns"], row["reference_lengths"])
            st = self.robots.setdefault(robot, RobotState())
            if row["outcome"] == "rolled_back":
                st.rolled_back.add(v)
            if st.sent == v:
                st.sent = -1
            changed = self._choose_deployable()
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
    def _append(self, row: dict, durable: bool = False) -> None:
        """One row of trials.jsonl. `durable`: fsync'd before returning (the robot's report is
        acknowledged after this), and an OSError is raised to the caller; otherwise a failure is
        logged and the evidence is kept in memory only."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "a") as fh:
                fh.write(strict_json.dumps(row) + "\n")
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            log.warning("cannot write %s: %s", self._log_path, exc)
            if durable:
                raise

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
                    "reports_duplicate": self.reports_duplicate,
                    "versions": {v: {"mean_return": e.mean_return, "episodes": len(e.returns),
                                     "outcome": e.outcome, "robots": e.per_robot()}
                                 for v, e in sorted(self.versions.items())[-10:]}}


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
            "p_worse": p(msg.p_worse), "duration_s": float(msg.duration_s), "t_us": int(msg.t_us),
            "stream_id": getattr(msg, "stream_id", ""), "seq": int(getattr(msg, "seq", -1))}



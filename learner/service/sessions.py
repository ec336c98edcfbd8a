"""Per-robot link state: who said HELLO, with which key, what policy it runs, when last heard.

Why a class with explicit fields (not dicts in the loop): the status view, the policy push and the
HELLO checks all read the same state, and a reconnect (new ZMQ identity, same robot id) must
carry the robot's streams and version over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from learner.service.wire import Hello


@dataclass
class Session:
    robot_id: str
    identity: bytes
    curve_key: str
    software_version: str
    policy_version: int = -1  # -1: no policy active (the robot's controller)
    connected_unix: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    rows_received: int = 0
    rows_duplicate: int = 0
    policy_sent_version: int = 0
    policy_sent_at: float = 0.0
    policy_rejected_version: int = -1  # newest version this robot refused (not offered again)
    last_policy_result: str = ""
    stats: dict = field(default_factory=dict)
    rejected: int = 0  # this robot's messages answered with ERROR (bad data stays its own)
    trial_reports: int = 0  # TRIAL_REPORT messages received (resends included)

    def link_state(self, timeout_s: float, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        return "up" if now - self.last_seen <= timeout_s else "lost"


@dataclass
class HelloPolicy:
    """What a robot must match to be welcomed."""

    schema_hash: str
    obs_dim: int
    act_dim: int
    task: str

    def check(self, hello: Hello) -> str:
        """Return '' if the robot is acceptable, else a clear reason for refusing it."""
        if hello.schema_hash != self.schema_hash:
            return (f"schema_mismatch: robot {hello.schema_hash[:12]!r}, learner "
                    f"{self.schema_hash[:12]!r} (update the robot or the learner so both run the "
                    "same protocol version)")
        if hello.obs_dim != self.obs_dim or hello.act_dim != self.act_dim:
            return (f"spec_mismatch: robot obs_dim={hello.obs_dim} act_dim={hello.act_dim},"
                    f" learner task {self.task!r} obs_dim={self.obs_dim} act_dim={self.act_dim}")
        if hello.task and self.task and hello.task != self.task:
            return f"task_mismatch: robot runs {hello.task!r}, learner trains {self.task!r}"
        return ""


class SessionTable:
    """Sessions by ZMQ identity and by robot id (a reconnect replaces the old identity)."""

    def __init__(self) -> None:
        self.by_identity: dict[bytes, Session] = {}
        self.by_robot: dict[str, Session] = {}

    def open(self, identity: bytes, hello: Hello, curve_key: str,
             timeout_s: float = 3.0) -> Session:
        """Open a session. The robot id's newest connection becomes `by_robot`'s; older ones stay
        served while they are live (two processes sharing one key would otherwise flap, each
        HELLO cutting the other off; the server warns when an older one keeps talking) and are
        dropped once silent for `timeout_s`."""
        now = time.monotonic()
        for ident, s in list(self.by_identity.items()):
            if s.robot_id == hello.robot_id and ident != identity and \
                    s.link_state(timeout_s, now) != "up":
                del self.by_identity[ident]
        old = self.by_robot.get(hello.robot_id)
        session = Session(robot_id=hello.robot_id, identity=identity, curve_key=curve_key,
                          software_version=hello.software_version,
                          policy_version=hello.policy_version)
        if old is not None:
            session.rows_received = old.rows_received
            session.rows_duplicate = old.rows_duplicate
            session.policy_rejected_version = old.policy_rejected_version
            session.rejected = old.rejected
            session.trial_reports = old.trial_reports
        self.by_identity[identity] = session
        self.by_robot[hello.robot_id] = session
        return session

    def get(self, identity: bytes) -> Session | None:
        return self.by_identity.get(identity)

    def __iter__(self):
        return iter(list(self.by_robot.values()))

"""Robot <-> learner messages: typed dataclasses, one msgpack map per ZMQ frame.

Wire form of every message: a msgpack map {"v": SCHEMA_VERSION, "type": "<NAME>", <fields>}.
Arrays are maps {"dtype", "shape", "data"} holding raw little-endian bytes (never pickle).
`decode` validates everything (size, version, type, exact field set, field types, dtypes, shapes,
byte counts, finiteness, cross-field rules) and raises a ProtocolError subclass with a `code`.
docs/protocol.md lists who sends what when.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import msgpack
import numpy as np

from protocol.errors import (
    ERROR_CODES,
    BadShape,
    ExtraField,
    HashMismatch,
    MalformedMessage,
    MessageTooLarge,
    MissingField,
    OutOfRange,
    ProtocolError,
    SchemaVersionMismatch,
    UnknownMessageType,
    WrongType,
)
from protocol.wire_fields import (
    FINITE_ALL,
    FINITE_NAN_OK,
    Array,
    Bool,
    Bytes,
    Float,
    Int,
    Kind,
    Limits,
    Map,
    Str,
    StrList,
)

SCHEMA_VERSION = 1
INT64_MAX = 2**63 - 1
SHA256_HEX = r"[0-9a-f]{64}"
ENVELOPE_KEYS = ("v", "type")


class Source(enum.IntEnum):
    """Who chose the action of a transition (TRANSITIONS.source column)."""

    POLICY = 0  # the learned ONNX policy
    CONTROLLER = 1  # the classical balance controller (fallback / behaviour policy)
    OPERATOR = 2  # a human with a joystick


def wire(kind: Kind, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field carrying its wire kind in metadata."""
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"kind": kind})
    return field(default=default, metadata={"kind": kind})


class Message:
    """Base of all messages; subclasses set TYPE and declare fields with `wire(...)`."""

    TYPE: ClassVar[str] = ""

    def validate(self, limits: Limits) -> None:
        """Cross-field rules, run after every field passed its own check."""


@dataclass
class Hello(Message):
    """Robot -> learner, first message after (re)connecting: who I am and what I speak."""

    TYPE: ClassVar[str] = "HELLO"
    robot_id: str = wire(Str(r"[A-Za-z0-9_.\-]{1,64}"))
    schema_hash: str = wire(Str(SHA256_HEX))
    task: str = wire(Str())
    obs_dim: int = wire(Int(1, 4096))
    act_dim: int = wire(Int(1, 4096))
    obs_names: list[str] = wire(StrList(), default_factory=list)  # empty or obs_dim names
    act_names: list[str] = wire(StrList(), default_factory=list)  # empty or act_dim names
    control_hz: float = wire(Float(1e-3, 1e5), default=200.0)
    software_version: str = wire(Str(), default="")
    policy_version: int = wire(Int(-1, INT64_MAX), default=-1)  # active policy; -1: none (controller)
    # stream_id -> first seq the robot still holds on it (its next seq if it holds none): a new
    # stream starts there, and rows below it the learner lacks are recorded as lost, not awaited.
    # At most Limits.max_map_len streams; the robot says HELLO again for the rest.
    streams: dict[str, int] = wire(Map("int"), default_factory=dict)
    # stream_id -> rows above its first held row that the robot no longer holds, as a flat list
    # [a0, b0, a1, b1, ...] of ranges [a, b) (a damaged record its spool had to skip): the learner
    # records those it lacks as lost, so the rows after them are not refused as a gap forever.
    gaps: dict[str, list[int]] = wire(Map("ranges"), default_factory=dict)

    def validate(self, limits: Limits) -> None:
        if any(seq < 0 for seq in self.streams.values()):
            raise OutOfRange("HELLO.streams: sequence numbers must be >= 0")
        for names, dim, label in ((self.obs_names, self.obs_dim, "obs"), (self.act_names, self.act_dim, "act")):
            if names and len(names) != dim:
                raise BadShape(f"{label}_names has {len(names)} names for {label}_dim {dim}")


@dataclass
class Welcome(Message):
    """Learner -> robot, answer to HELLO. accepted=False is a refusal; `reason` says why and the
    robot must not stream (it may retry later with a new HELLO)."""

    TYPE: ClassVar[str] = "WELCOME"
    accepted: bool = wire(Bool())
    reason: str = wire(Str(), default="")  # refusal code, e.g. "schema_mismatch", "unknown_robot"
    learner_version: str = wire(Str(), default="")
    latest_policy_version: int = wire(Int(-1, INT64_MAX), default=-1)
    heartbeat_interval_s: float = wire(Float(1e-3, 3600.0), default=1.0)
    acked: dict[str, int] = wire(Map("int"), default_factory=dict)  # stream_id -> highest stored seq


@dataclass
class Transitions(Message):
    """Robot -> learner: a columnar batch of consecutive transitions of one stream.

    Row i has sequence number first_seq + i. Arrays decode as read-only views.
    """

    TYPE: ClassVar[str] = "TRANSITIONS"
    stream_id: str = wire(Str(r"[A-Za-z0-9_.\-]{1,64}"))
    first_seq: int = wire(Int(0, INT64_MAX))
    obs: np.ndarray = wire(Array("<f4", 2, FINITE_ALL))  # [n, obs_dim]
    act: np.ndarray = wire(Array("<f4", 2, FINITE_ALL))  # [n, act_dim], in [-1, 1] policy units
    rew: np.ndarray = wire(Array("<f4", 1, FINITE_ALL))  # [n]
    next_obs: np.ndarray = wire(Array("<f4", 2, FINITE_ALL))  # [n, obs_dim]
    terminated: np.ndarray = wire(Array("|b1", 1))  # [n]
    truncated: np.ndarray = wire(Array("|b1", 1))  # [n]
    policy_version: np.ndarray = wire(Array("<i8", 1))  # [n]; -1 when no policy acted
    logp: np.ndarray = wire(Array("<f4", 1, FINITE_NAN_OK))  # [n]; NaN when not from the policy
    t_us: np.ndarray = wire(Array("<u8", 1))  # [n] robot clock at the observation, microseconds
    source: np.ndarray = wire(Array("|u1", 1))  # [n] Source values
    # [n] task_contract.episodes.RowFlag bits: nonzero = outside a task episode (past a
    # termination, recovering, caught, motors off); the learner trains on rows with 0 only.
    # A sender that does not set it sends zeros (every row inside an episode).
    flags: np.ndarray = wire(Array("|u1", 1), default=None)

    def __post_init__(self) -> None:
        if self.flags is None:
            self.flags = np.zeros(self.obs.shape[0], np.uint8)

    @property
    def n_rows(self) -> int:
        return int(self.obs.shape[0])

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.n_rows - 1

    def validate(self, limits: Limits) -> None:
        n = self.obs.shape[0]
        if n == 0:
            raise BadShape("TRANSITIONS carries no rows")
        for name in ("act", "rew", "next_obs", "terminated", "truncated", "policy_version", "logp", "t_us", "source",
                     "flags"):
            if getattr(self, name).shape[0] != n:
                raise BadShape(f"{name} has {getattr(self, name).shape[0]} rows, obs has {n}")
        if self.next_obs.shape[1] != self.obs.shape[1]:
            raise BadShape(f"next_obs has {self.next_obs.shape[1]} columns, obs has {self.obs.shape[1]}")
        if self.obs.shape[1] == 0 or self.act.shape[1] == 0:
            raise BadShape("obs and act need at least one column")
        if self.source.size and int(self.source.max()) > max(Source):
            raise OutOfRange(f"source holds {int(self.source.max())}, known values are {[int(s) for s in Source]}")
        if self.policy_version.size and int(self.policy_version.min()) < -1:
            raise OutOfRange("policy_version below -1")
        if self.first_seq + n - 1 > INT64_MAX:
            raise OutOfRange("sequence numbers overflow int64")


@dataclass
class Ack(Message):
    """Learner -> robot: every row of `stream_id` with seq <= acked_seq is durably stored
    (cumulative; -1 = nothing yet). The robot may delete them from its spool."""

    TYPE: ClassVar[str] = "ACK"
    stream_id: str = wire(Str(r"[A-Za-z0-9_.\-]{1,64}"))
    acked_seq: int = wire(Int(-1, INT64_MAX))


@dataclass
class Heartbeat(Message):
    """Both ways, every heartbeat interval. From the robot: its loop stats and active policy
    version (the learner answers with POLICY when a newer one exists). From the learner:
    latest published policy version and its own stats."""

    TYPE: ClassVar[str] = "HEARTBEAT"
    seq: int = wire(Int(0, INT64_MAX))
    t_us: int = wire(Int(0))  # sender clock, microseconds
    policy_version: int = wire(Int(-1, INT64_MAX), default=-1)
    stats: dict[str, Any] = wire(Map("number"), default_factory=dict)  # e.g. period_err_p99_ms, overruns


@dataclass
class Policy(Message):
    """Learner -> robot: a policy to activate. sha256 is of the whole .onnx file and is checked
    here on decode; the robot checks the sender key and the model itself."""

    TYPE: ClassVar[str] = "POLICY"
    version: int = wire(Int(0, INT64_MAX))
    sha256: str = wire(Str(SHA256_HEX))
    onnx: bytes = wire(Bytes())
    metadata: dict[str, Any] = wire(Map("scalar"), default_factory=dict)  # ONNX metadata_props copy

    @classmethod
    def from_onnx(cls, version: int, onnx: bytes, metadata: dict[str, Any] | None = None) -> "Policy":
        return cls(version=version, sha256=hashlib.sha256(onnx).hexdigest(), onnx=onnx, metadata=dict(metadata or {}))

    def validate(self, limits: Limits) -> None:
        if hashlib.sha256(self.onnx).hexdigest() != self.sha256:
            raise HashMismatch(f"POLICY {self.version}: sha256 of the onnx bytes does not match")


@dataclass
class PolicyResult(Message):
    """Robot -> learner: what became of POLICY `version` (activated, or rejected and why)."""

    TYPE: ClassVar[str] = "POLICY_RESULT"
    version: int = wire(Int(0, INT64_MAX))
    accepted: bool = wire(Bool())
    reason: str = wire(Str(), default="")  # e.g. "bad_hash", "nan_output", "shape", "too_slow"
    t_us: int = wire(Int(0), default=0)  # robot clock when activated or rejected


@dataclass
class TrialReport(Message):
    """Robot -> learner: how the on-robot trial of policy `version` ended (onboard/trials.py),
    with its evidence: the candidate's trial episodes and the incumbent's reference episodes
    (returns and lengths, one entry per finished policy episode on the robot)."""

    TYPE: ClassVar[str] = "TRIAL_REPORT"
    version: int = wire(Int(0, INT64_MAX))  # the candidate
    incumbent: int = wire(Int(-1, INT64_MAX))  # what it was tried against; -1: the controller
    outcome: str = wire(Str(r"promoted|rolled_back|superseded"))
    reason: str = wire(Str(), default="")
    returns: np.ndarray = wire(Array("<f4", 1, FINITE_ALL), default=None)  # [episodes] candidate
    lengths: np.ndarray = wire(Array("<i4", 1), default=None)  # [episodes] candidate, in steps
    reference_returns: np.ndarray = wire(Array("<f4", 1, FINITE_ALL), default=None)  # incumbent
    reference_lengths: np.ndarray = wire(Array("<i4", 1), default=None)  # incumbent
    catches: int = wire(Int(0, INT64_MAX), default=0)  # controller catches during the trial
    falls: int = wire(Int(0, INT64_MAX), default=0)  # falls (DAMPING) during the trial
    p_not_worse: float = wire(Float(-1.0, 1.0), default=-1.0)  # Welch test p-values; -1: no test
    p_worse: float = wire(Float(-1.0, 1.0), default=-1.0)
    duration_s: float = wire(Float(0.0, 1e9), default=0.0)  # robot loop time the trial ran
    t_us: int = wire(Int(0), default=0)  # robot clock when it ended
    # Acknowledged delivery (like TRANSITIONS): the robot spools each report before sending it,
    # numbers it on its report stream, and deletes it when the learner's ACK(stream_id, acked_seq)
    # covers it; the learner records each (robot, stream_id, seq) once. seq -1: not numbered
    # (recorded on arrival, never acknowledged: a sender without a report spool).
    stream_id: str = wire(Str(r"[A-Za-z0-9_.\-]{0,64}"), default="")
    seq: int = wire(Int(-1, INT64_MAX), default=-1)

    def __post_init__(self) -> None:
        for name, dtype in (("returns", np.float32), ("lengths", np.int32), ("reference_returns", np.float32),
                            ("reference_lengths", np.int32)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(0, dtype))

    def validate(self, limits: Limits) -> None:
        if self.returns.shape != self.lengths.shape or self.reference_returns.shape != self.reference_lengths.shape:
            raise BadShape("TRIAL_REPORT: returns and lengths must have one entry per episode")
        if (self.seq >= 0) != bool(self.stream_id):
            raise OutOfRange("TRIAL_REPORT: a numbered report needs its stream_id, and only it")


@dataclass
class Error(Message):
    """Either way: a message was rejected (`code` = the ProtocolError code or a service code).
    fatal=True: the sender closes the session (the peer must send HELLO again)."""

    TYPE: ClassVar[str] = "ERROR"
    code: str = wire(Str())
    message: str = wire(Str(), default="")
    fatal: bool = wire(Bool(), default=False)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Welcome, Transitions, Ack, Heartbeat, Policy, PolicyResult, Error,
                            TrialReport)
}
_FIELDS: dict[type[Message], tuple[tuple[str, Kind], ...]] = {
    cls: tuple((f.name, f.metadata["kind"]) for f in fields(cls)) for cls in MESSAGE_TYPES.values()  # type: ignore[arg-type]
}
DEFAULT_LIMITS = Limits()


def schema_description() -> dict[str, Any]:
    """Canonical description of every message schema (what schema_hash hashes)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "messages": {name: [[f, kind.describe()] for f, kind in _FIELDS[cls]] for name, cls in MESSAGE_TYPES.items()},
    }


def schema_hash() -> str:
    """sha256 (hex) of the message schemas; sent in HELLO so robot and learner detect a mismatch."""
    text = json.dumps(schema_description(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def encode(msg: Message, validate: bool = True, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Message -> msgpack bytes. With validate, a message the peer would reject raises here."""
    cls = type(msg)
    kinds = _FIELDS.get(cls)
    if kinds is None:
        raise UnknownMessageType(f"{cls.__name__} is not a protocol message")
    body: dict[str, Any] = {"v": SCHEMA_VERSION, "type": cls.TYPE}
    for name, kind in kinds:
        body[name] = kind.to_wire(getattr(msg, name))
    if validate:
        _build(cls, body, limits)
    try:
        buf = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WrongType(f"{cls.TYPE}: cannot encode: {exc}") from None
    if len(buf) > limits.max_message_bytes:
        raise MessageTooLarge(f"{cls.TYPE} of {len(buf)} bytes exceeds {limits.max_message_bytes}")
    return buf


def _reject_ext(code: int, data: bytes) -> None:
    raise MalformedMessage(f"msgpack extension type {code} is not used by this protocol")


def decode(buf: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Message:
    """msgpack bytes -> validated Message. Any problem raises a ProtocolError subclass."""
    if len(buf) > limits.max_message_bytes:
        raise MessageTooLarge(f"message of {len(buf)} bytes exceeds {limits.max_message_bytes}")
    try:
        body = msgpack.unpackb(
            buf,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=max(limits.max_str_len * 4, 1024),  # utf-8 bytes
            max_bin_len=limits.max_message_bytes,
            max_array_len=max(limits.max_dim, 16),
            max_map_len=max(limits.max_map_len, 64),
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types (FormatError, ExtraData, ValueError, ...)
        raise MalformedMessage(f"not a single msgpack message: {type(exc).__name__}: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedMessage(f"top level must be a map, got {type(body).__name__}")
    version = body.get("v", None)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SchemaVersionMismatch(f"schema version {version!r}, this side speaks {SCHEMA_VERSION}")
    type_name = body.get("type")
    cls = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise UnknownMessageType(f"unknown message type {str(type_name)[:40]!r}")
    return _build(cls, body, limits)


def _build(cls: type[Message], body: dict[str, Any], limits: Limits) -> Message:
    kinds = _FIELDS[cls]
    if len(body) != len(kinds) + len(ENVELOPE_KEYS):
        known = {name for name, _ in kinds}.union(ENVELOPE_KEYS)
        extra = [k for k in body if k not in known]
        if extra:
            raise ExtraField(f"{cls.TYPE}: unknown field(s) {sorted(map(str, extra))[:5]}")
    values: dict[str, Any] = {}
    for name, kind in kinds:
        if name not in body:
            raise MissingField(f"{cls.TYPE}: missing field {name!r}")
        values[name] = kind.check(f"{cls.TYPE}.{name}", body[name], limits)
    msg = cls(**values)
    msg.validate(limits)
    return msg


class MessageDecoder:
    """decode() with counters: `accepted[type]` and `rejected[code]`, for status lines and tests."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.accepted: dict[str, int] = {name: 0 for name in MESSAGE_TYPES}
        self.rejected: dict[str, int] = {code: 0 for code in ERROR_CODES}

    def decode(self, buf: bytes | bytearray | memoryview) -> Message:
        try:
            msg = decode(buf, self.limits)
        except ProtocolError as exc:
            self.rejected[exc.code] = self.rejected.get(exc.code, 0) + 1
            raise
        self.accepted[msg.TYPE] += 1
        return msg

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def error_for(exc: ProtocolError, fatal: bool = False) -> Error:
    """The ERROR message that answers a rejected message."""
    return Error(code=exc.code, message=str(exc)[:200], fatal=fatal)


def empty_transitions(stream_id: str, first_seq: int, n: int, obs_dim: int, act_dim: int) -> Transitions:
    """Zero-filled, writable columns of the right dtypes for a sender to fill row by row."""
    return Transitions(
        stream_id=stream_id,
        first_seq=first_seq,
        obs=np.zeros((n, obs_dim), np.float32),
        act=np.zeros((n, act_dim), np.float32),
        rew=np.zeros(n, np.float32),
        next_obs=np.zeros((n, obs_dim), np.float32),
        terminated=np.zeros(n, np.bool_),
        truncated=np.zeros(n, np.bool_),
        policy_version=np.full(n, -1, np.int64),
        logp=np.full(n, np.nan, np.float32),
        t_us=np.zeros(n, np.uint64),
        source=np.full(n, int(Source.POLICY), np.uint8),
    )


__all__ = [
    "Ack",
    "DEFAULT_LIMITS",
    "Error",
    "Heartbeat",
    "Hello",
    "Limits",
    "MESSAGE_TYPES",
    "Message",
    "MessageDecoder",
    "Policy",
    "PolicyResult",
    "ProtocolError",
    "SCHEMA_VERSION",
    "Source",
    "Transitions",
    "TrialReport",
    "Welcome",
    "decode",
    "empty_transitions",
    "encode",
    "error_for",
    "schema_hash",
]

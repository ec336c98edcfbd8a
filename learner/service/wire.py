"""The service's view of the wire: typed messages in, bytes out, one place that knows the codec.

Why a separate module: `protocol/messages.py` owns the robot <-> learner schema; the server only
needs "decode one frame into a typed message or raise WireError(reason)" and "encode a reply".
Everything in the service goes through these functions, so a schema change touches this file only.

When `protocol.messages` is importable it is used; the fallback codec here follows DESIGN.md
("Wire protocol") and exists so the service could be built and tested before it landed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgpack
import numpy as np

SCHEMA_VERSION = 1
MAX_ROWS_PER_BATCH = 65_536


class WireError(ValueError):
    """An inbound frame is not a valid message; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ----------------------------------------------------------------------------- messages (typed)
@dataclass
class Hello:
    robot_id: str
    schema_hash: str
    obs_dim: int
    act_dim: int
    task: str = ""
    software_version: str = ""
    policy_version: int = 0


@dataclass
class Welcome:
    accepted: bool
    reason: str = ""
    learner_version: str = ""
    policy_version: int = 0


@dataclass
class Transitions:
    stream_id: int
    first_seq: int
    columns: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.columns["rew"])


@dataclass
class Ack:
    stream_id: int
    acked_seq: int  # every row with seq <= acked_seq on this stream is durable on the learner


@dataclass
class Heartbeat:
    policy_version: int = 0
    stats: dict = field(default_factory=dict)


@dataclass
class Policy:
    version: int
    sha256: str
    onnx: bytes
    metadata: dict


@dataclass
class PolicyResult:
    version: int
    accepted: bool
    reason: str = ""


@dataclass
class Error:
    code: str
    detail: str = ""


TRANSITION_COLUMNS = ("obs", "act", "rew", "next_obs", "done", "policy_version")


def schema_hash() -> str:
    """Hash of this schema's message layout; HELLO must carry the same one."""
    text = f"v{SCHEMA_VERSION}:" + ",".join(TRANSITION_COLUMNS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- codec
def _arr(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unarr(d, name: str) -> np.ndarray:
    if not isinstance(d, dict) or set(d) != {"dtype", "shape", "data"}:
        raise WireError("bad_array", name)
    try:
        dt = np.dtype(d["dtype"])
    except (TypeError, ValueError) as exc:
        raise WireError("bad_dtype", f"{name}: {exc}") from exc
    if dt.hasobject or dt.kind not in "biuf":
        raise WireError("bad_dtype", f"{name}: {dt}")
    shape = d["shape"]
    if not isinstance(shape, list) or len(shape) > 3 or not all(
            isinstance(s, int) and 0 <= s <= MAX_ROWS_PER_BATCH for s in shape):
        raise WireError("bad_shape", name)
    if not isinstance(d["data"], bytes) or len(d["data"]) != dt.itemsize * int(np.prod(shape)):
        raise WireError("bad_size", name)
    return np.frombuffer(d["data"], dtype=dt).reshape(shape)


def _need(m: dict, key: str, types):
    v = m.get(key)
    if not isinstance(v, types) or isinstance(v, bool) and types is int:
        raise WireError("bad_field", key)
    return v


def decode(frame: bytes) -> Hello | Transitions | Heartbeat | PolicyResult:
    """Decode and structurally validate one inbound frame. Raises WireError(reason)."""
    try:
        m = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=len(frame),
                            max_str_len=4096, max_array_len=64, max_map_len=64)
    except Exception as exc:  # msgpack raises many types on garbage
        raise WireError("undecodable", type(exc).__name__) from None
    if not isinstance(m, dict):
        raise WireError("not_a_map")
    if m.get("v") != SCHEMA_VERSION:
        raise WireError("schema_version", str(m.get("v")))
    kind = m.get("type")
    if kind == "HELLO":
        return Hello(robot_id=_need(m, "robot_id", str), schema_hash=_need(m, "schema_hash", str),
                     obs_dim=_need(m, "obs_dim", int), act_dim=_need(m, "act_dim", int),
                     task=m.get("task", "") if isinstance(m.get("task", ""), str) else "",
                     software_version=str(m.get("software_version", ""))[:64],
                     policy_version=int(m.get("policy_version", 0) or 0))
    if kind == "TRANSITIONS":
        cols = _need(m, "columns", dict)
        if set(cols) != set(TRANSITION_COLUMNS):
            raise WireError("bad_columns", ",".join(sorted(map(str, cols)))[:100])
        columns = {k: _unarr(cols[k], k) for k in TRANSITION_COLUMNS}
        return Transitions(stream_id=_need(m, "stream_id", int),
                           first_seq=_need(m, "first_seq", int), columns=columns)
    if kind == "HEARTBEAT":
        stats = m.get("stats", {})
        return Heartbeat(policy_version=_need(m, "policy_version", int),
                         stats=stats if isinstance(stats, dict) else {})
    if kind == "POLICY_RESULT":
        return PolicyResult(version=_need(m, "version", int),
                            accepted=bool(m.get("accepted", False)),
                            reason=str(m.get("reason", ""))[:256])
    raise WireError("unknown_type", str(kind)[:32])


def encode(msg) -> bytes:
    """Encode an outbound (or, for test clients and replay, inbound) message."""
    body: dict = {"v": SCHEMA_VERSION}
    if isinstance(msg, Transitions):
        body.update(type="TRANSITIONS", stream_id=msg.stream_id, first_seq=msg.first_seq,
                    columns={k: _arr(v) for k, v in msg.columns.items()})
    else:
        names = {Hello: "HELLO", Welcome: "WELCOME", Ack: "ACK", Heartbeat: "HEARTBEAT",
                 Policy: "POLICY", PolicyResult: "POLICY_RESULT", Error: "ERROR"}
        body["type"] = names[type(msg)]
        body.update(msg.__dict__)
    return msgpack.packb(body, use_bin_type=True)


def decode_reply(frame: bytes):
    """Decode a learner -> robot message (for test clients and the replay tool)."""
    m = msgpack.unpackb(frame, raw=False)
    kind = m.pop("type")
    m.pop("v", None)
    cls = {"WELCOME": Welcome, "ACK": Ack, "HEARTBEAT": Heartbeat, "POLICY": Policy,
           "ERROR": Error}[kind]
    return cls(**m)

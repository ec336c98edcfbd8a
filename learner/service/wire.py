"""The service's view of the wire: `protocol.messages`, with one error type for the server.

Why a module: the server counts and answers every rejected frame the same way, by a short reason
code; this wraps `protocol.messages.decode` so decoder failures (ProtocolError, or a decoder bug)
all become `WireError(reason)`, and names the columns the store keeps.
"""

from __future__ import annotations

import numpy as np

from protocol.messages import (  # noqa: F401  (re-exported for the service)
    DEFAULT_LIMITS,
    Ack,
    Error,
    Heartbeat,
    Hello,
    Limits,
    Message,
    Policy,
    PolicyResult,
    ProtocolError,
    Source,
    Transitions,
    TrialReport,
    Welcome,
    empty_transitions,
    encode,
    schema_hash,
)
from protocol.messages import decode as _decode

# TRANSITIONS columns kept in the store and fed to the real buffer, in wire order
# ("flags": task_contract.episodes.RowFlag; rows stored before it existed have none: all zero)
TRANSITION_COLUMNS = ("obs", "act", "rew", "next_obs", "terminated", "truncated",
                      "policy_version", "logp", "t_us", "source", "flags")


class WireError(ValueError):
    """An inbound frame or message is refused; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode(frame: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode and validate one inbound frame. Raises WireError(reason)."""
    try:
        return _decode(frame, limits)
    except ProtocolError as exc:
        raise WireError(exc.code, str(exc)) from None


def decode_reply(frame: bytes) -> Message:
    """Decode a learner -> robot message (test clients and the replay tool)."""
    return _decode(frame)


def columns_of(batch: Transitions) -> dict[str, np.ndarray]:
    return {name: getattr(batch, name) for name in TRANSITION_COLUMNS}


def transitions_from_columns(stream_id: str, first_seq: int, cols: dict[str, np.ndarray]) -> Transitions:
    return Transitions(stream_id=stream_id, first_seq=int(first_seq),
                       **{name: np.ascontiguousarray(cols[name]) for name in TRANSITION_COLUMNS if name in cols})

"""Typed errors of the robot<->learner message decoder.

Every rejection is a `ProtocolError` subclass with a short machine-readable `code`, so a service
can count rejections by reason (`counters[exc.code] += 1`) and answer with an ERROR message
without parsing text.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message could not be encoded or decoded. `code` is a stable counter key."""

    code = "protocol_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MessageTooLarge(ProtocolError):
    code = "oversized"


class MalformedMessage(ProtocolError):
    """Not parseable msgpack, trailing bytes, or not a map at the top level."""

    code = "malformed"


class SchemaVersionMismatch(ProtocolError):
    code = "bad_version"


class UnknownMessageType(ProtocolError):
    code = "unknown_type"


class MissingField(ProtocolError):
    code = "missing_field"


class ExtraField(ProtocolError):
    code = "extra_field"


class WrongType(ProtocolError):
    code = "bad_type"


class BadDtype(ProtocolError):
    code = "bad_dtype"


class BadShape(ProtocolError):
    """Shape and byte count disagree, wrong number of dimensions, or columns of unequal length."""

    code = "bad_shape"


class NonFiniteValue(ProtocolError):
    code = "non_finite"


class OutOfRange(ProtocolError):
    """A number, string, list or map outside its allowed range or size."""

    code = "out_of_range"


class HashMismatch(ProtocolError):
    code = "bad_hash"


ERROR_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        MessageTooLarge,
        MalformedMessage,
        SchemaVersionMismatch,
        UnknownMessageType,
        MissingField,
        ExtraField,
        WrongType,
        BadDtype,
        BadShape,
        NonFiniteValue,
        OutOfRange,
        HashMismatch,
    )
)

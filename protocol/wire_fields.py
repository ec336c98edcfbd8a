"""Field kinds of the message schemas: each converts a value to its msgpack form and validates
what arrives, raising a typed ProtocolError. `describe()` feeds the schema hash, so changing a
kind's rules changes the hash and robot and learner notice.

Arrays travel as {"dtype": "<f4", "shape": [rows, cols], "data": <raw little-endian bytes>} and
decode to read-only np.frombuffer views on msgpack's bytes (no further copy).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.errors import BadDtype, BadShape, NonFiniteValue, OutOfRange, WrongType

# dtypes allowed on the wire at all; each array field also names the one it expects.
DTYPE_WHITELIST: frozenset[str] = frozenset({"<f4", "<f8", "|b1", "|u1", "<i4", "<i8", "<u4", "<u8"})
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class Limits:
    """Size limits enforced by the decoder (configurable per service)."""

    max_message_bytes: int = 32 * 1024 * 1024  # a large ONNX policy fits; a flood does not
    max_rows: int = 1 << 16  # rows in one TRANSITIONS batch
    max_dim: int = 4096  # columns of an obs/act array, length of a name list
    max_str_len: int = 1024
    max_map_len: int = 256


def _type_name(value: Any) -> str:
    return type(value).__name__


class Kind:
    """One field's wire rules."""

    def describe(self) -> str:
        raise NotImplementedError

    def to_wire(self, value: Any) -> Any:
        return value

    def check(self, name: str, value: Any, limits: Limits) -> Any:
        """Validate a decoded value; return the Python value the dataclass holds."""
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Kind):
    lo: int = INT64_MIN
    hi: int = UINT64_MAX

    def describe(self) -> str:
        return f"int[{self.lo},{self.hi}]"

    def to_wire(self, value: Any) -> Any:
        return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value

    def check(self, name: str, value: Any, limits: Limits) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WrongType(f"{name}: expected int, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise OutOfRange(f"{name}: {value} not in [{self.lo}, {self.hi}]")
        return value


@dataclass(frozen=True)
class Float(Kind):
    """A finite float (a msgpack int is accepted too: other languages' packers send 1 for 1.0)."""

    lo: float = -math.inf
    hi: float = math.inf

    def describe(self) -> str:
        return f"float(finite,[{self.lo},{self.hi}])"

    def to_wire(self, value: Any) -> Any:
        return float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else value

    def check(self, name: str, value: Any, limits: Limits) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise WrongType(f"{name}: expected float, got {_type_name(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteValue(f"{name}: {value} is not finite")
        if not self.lo <= value <= self.hi:
            raise OutOfRange(f"{name}: {value} not in [{self.lo}, {self.hi}]")
        return value


@dataclass(frozen=True)
class Bool(Kind):
    def describe(self) -> str:
        return "bool"

    def to_wire(self, value: Any) -> Any:
        return bool(value) if isinstance(value, (bool, np.bool_)) else value

    def check(self, name: str, value: Any, limits: Limits) -> bool:
        if not isinstance(value, bool):
            raise WrongType(f"{name}: expected bool, got {_type_name(value)}")
        return value


@dataclass(frozen=True)
class Str(Kind):
    pattern: str | None = None  # full-match regex, e.g. lowercase hex for sha256

    def describe(self) -> str:
        return f"str({self.pattern or ''})"

    def check(self, name: str, value: Any, limits: Limits) -> str:
        if not isinstance(value, str):
            raise WrongType(f"{name}: expected str, got {_type_name(value)}")
        if len(value) > limits.max_str_len:
            raise OutOfRange(f"{name}: string of {len(value)} chars exceeds {limits.max_str_len}")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise OutOfRange(f"{name}: {value[:80]!r} does not match {self.pattern}")
        return value


@dataclass(frozen=True)
class Bytes(Kind):
    def describe(self) -> str:
        return "bytes"

    def check(self, name: str, value: Any, limits: Limits) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise WrongType(f"{name}: expected bytes, got {_type_name(value)}")
        return bytes(value) if not isinstance(value, bytes) else value


@dataclass(frozen=True)
class StrList(Kind):
    def describe(self) -> str:
        return "list[str]"

    def to_wire(self, value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value

    def check(self, name: str, value: Any, limits: Limits) -> list[str]:
        if not isinstance(value, (list, tuple)):
            raise WrongType(f"{name}: expected list of str, got {_type_name(value)}")
        if len(value) > limits.max_dim:
            raise OutOfRange(f"{name}: {len(value)} items exceed {limits.max_dim}")
        item = Str()
        return [item.check(f"{name}[{i}]", v, limits) for i, v in enumerate(value)]


@dataclass(frozen=True)
class Map(Kind):
    """str -> value map; `values` is "number" (finite float/int), "int", "scalar" (str/num/bool) or
    "ranges" (a flat list [a0, b0, a1, b1, ...] of ascending, disjoint row ranges [a, b), a >= 0)."""

    values: str = "scalar"

    def describe(self) -> str:
        return f"map[str,{self.values}]"

    def to_wire(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in value.items()}

    def check(self, name: str, value: Any, limits: Limits) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise WrongType(f"{name}: expected map, got {_type_name(value)}")
        if len(value) > limits.max_map_len:
            raise OutOfRange(f"{name}: {len(value)} entries exceed {limits.max_map_len}")
        key_kind = Str()
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_kind.check(f"{name} key", key, limits)
            where = f"{name}[{key!r}]"
            if self.values == "int":
                out[key] = Int().check(where, item, limits)
            elif self.values == "ranges":
                out[key] = _check_ranges(where, item, limits)
            elif self.values == "number":
                out[key] = Float().check(where, item, limits) if isinstance(item, float) else Int().check(where, item, limits)
            else:
                if isinstance(item, str):
                    out[key] = key_kind.check(where, item, limits)
                elif isinstance(item, bool):
                    out[key] = item
                elif isinstance(item, float):
                    out[key] = Float().check(where, item, limits)
                else:
                    out[key] = Int().check(where, item, limits)
        return out


def _check_ranges(where: str, value: Any, limits: Limits) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise WrongType(f"{where}: expected a list of ints, got {_type_name(value)}")
    if len(value) % 2 or len(value) > limits.max_dim:
        raise OutOfRange(f"{where}: {len(value)} numbers: an even count up to {limits.max_dim} ([a, b) pairs)")
    nums = [Int().check(f"{where}[{i}]", v, limits) for i, v in enumerate(value)]
    prev = 0
    for a, b in zip(nums[::2], nums[1::2]):
        if not prev <= a < b:
            raise OutOfRange(f"{where}: ranges must be ascending, disjoint and non-empty, got [{a}, {b})")
        prev = b
    return nums


FINITE_ALL = "all"  # no NaN, no inf
FINITE_NAN_OK = "nan_ok"  # NaN means "unknown" (e.g. log-prob of a controller action); inf is still rejected


@dataclass(frozen=True)
class Array(Kind):
    """A numpy array of one dtype; `ndim` 1 is a per-row column, 2 a [rows, cols] block."""

    dtype: str
    ndim: int
    finite: str | None = None

    def describe(self) -> str:
        return f"array({self.dtype},ndim={self.ndim},finite={self.finite})"

    def to_wire(self, value: Any) -> Any:
        array = np.ascontiguousarray(value, dtype=np.dtype(self.dtype))
        return {"dtype": self.dtype, "shape": list(array.shape), "data": memoryview(array).cast("B")}

    def check(self, name: str, value: Any, limits: Limits) -> np.ndarray:
        if isinstance(value, np.ndarray):  # already decoded (encode-side validation)
            value = self.to_wire(value)
        if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
            raise WrongType(f"{name}: expected array map with keys dtype, shape, data")
        dtype, shape, data = value["dtype"], value["shape"], value["data"]
        if not isinstance(dtype, str) or dtype not in DTYPE_WHITELIST:
            raise BadDtype(f"{name}: dtype {dtype!r} is not allowed on the wire")
        if dtype != self.dtype:
            raise BadDtype(f"{name}: dtype {dtype} where {self.dtype} is required")
        if not isinstance(shape, (list, tuple)) or len(shape) != self.ndim:
            raise BadShape(f"{name}: shape {shape!r} must have {self.ndim} dimension(s)")
        for extent in shape:
            if not isinstance(extent, int) or isinstance(extent, bool) or extent < 0:
                raise BadShape(f"{name}: shape {shape!r} must hold non-negative ints")
        if shape[0] > limits.max_rows or any(extent > limits.max_dim for extent in shape[1:]):
            raise OutOfRange(f"{name}: shape {shape!r} exceeds rows {limits.max_rows} / dim {limits.max_dim}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise WrongType(f"{name}: data must be bytes, got {_type_name(data)}")
        np_dtype = np.dtype(dtype)
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if len(data) != expected:
            raise BadShape(f"{name}: {len(data)} data bytes for shape {shape} of {dtype} ({expected} expected)")
        array = np.frombuffer(data, dtype=np_dtype).reshape(shape)
        if np_dtype == np.bool_:
            if array.size and np.frombuffer(data, dtype=np.uint8).max() > 1:
                raise OutOfRange(f"{name}: bool bytes must be 0 or 1")
        elif self.finite == FINITE_ALL and not np.isfinite(array).all():
            raise NonFiniteValue(f"{name}: contains NaN or inf")
        elif self.finite == FINITE_NAN_OK and np.isinf(array).any():
            raise NonFiniteValue(f"{name}: contains inf")
        return array

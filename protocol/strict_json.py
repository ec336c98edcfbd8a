"""Strict JSON for every file and reply the programs write: no NaN, no Infinity.

Why: Python's json writes float('nan') as the bare word NaN, which is not JSON (RFC 8259); strict
parsers (browsers' JSON.parse, jq, Go, Rust's serde_json, pandas with some engines) refuse the whole
file. A statistic that does not exist yet (a p99 before the first tick, a mean of no episodes) is
written as null instead. numpy scalars and arrays become plain numbers and lists on the way.

Robot-safe (standard library and numpy only): onboard, the learner and the tools share it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np


def strict(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """`value` with every non-finite float replaced by None, numpy values made plain, tuples as
    lists; any other object goes through `default` (TypeError without one)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v, default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v, default) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return strict(value.tolist(), default)
    if default is None:
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
    return strict(default(value), default)


def dumps(value: Any, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """json.dumps of `strict(value, default)`; allow_nan=False makes a miss here an error, not a NaN."""
    return json.dumps(strict(value, default), allow_nan=False, **kwargs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers do."""
    return json.loads(text, parse_constant=_refuse_constant)

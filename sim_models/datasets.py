"""Offline datasets in the D4RL HDF5 layout, so users with real D4RL files can load theirs too.

Layout (root datasets, N rows): observations [N, obs_dim] float32, actions [N, act_dim] float32,
rewards [N] float32, next_observations [N, obs_dim] float32, terminals [N] bool, timeouts [N] bool.
Our metadata (task, profile, behaviour, seed, ...) is a JSON string in the root attribute
`h2o_metadata`. Real D4RL files carry extra keys (infos/..., metadata/...): `load_d4rl` ignores
unknown datasets, reads scalar `metadata/*` entries into the metadata dict, and rebuilds
next_observations (as d4rl.qlearning_dataset does) when a file lacks them.

`load_dataset` also reads a Minari dataset, `minari:<id or folder>` (sim_models/minari_io.py):
the programs that take a dataset path (`learner.train --dataset`, the service's `datasets`) read
through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from protocol import strict_json

D4RL_KEYS: tuple[str, ...] = (
    "observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
_DTYPES = {"observations": np.float32, "actions": np.float32, "rewards": np.float32,
           "next_observations": np.float32, "terminals": np.bool_, "timeouts": np.bool_}
METADATA_ATTR = "h2o_metadata"
MINARI_PREFIX = "minari:"  # load_dataset("minari:h2o/stand_still/moderate-medium-v0")


class DatasetError(ValueError):
    """A dataset is missing keys, has inconsistent lengths or shapes, or non-finite values."""


def validate(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check keys, lengths, ranks and finiteness; return the arrays cast to the D4RL dtypes."""
    missing = [k for k in D4RL_KEYS if k not in data]
    if missing:
        raise DatasetError(f"dataset is missing key(s) {missing}; required: {list(D4RL_KEYS)}")
    out = {k: np.asarray(data[k]).astype(_DTYPES[k], copy=False) for k in D4RL_KEYS}
    n = len(out["rewards"])
    for k, v in out.items():
        if len(v) != n:
            raise DatasetError(f"{k} has {len(v)} rows, rewards has {n}")
        want_rank = 2 if k in ("observations", "actions", "next_observations") else 1
        if v.ndim != want_rank:
            raise DatasetError(f"{k} must be {want_rank}-D, got shape {v.shape}")
        if v.dtype != np.bool_ and not np.all(np.isfinite(v)):
            raise DatasetError(f"{k} contains non-finite values")
    if out["observations"].shape[1:] != out["next_observations"].shape[1:]:
        raise DatasetError("observations and next_observations differ in width")
    return out


def save_d4rl(path: str | Path, data: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write a D4RL-layout HDF5 file (atomically: temp file, then rename)."""
    arrays = validate(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, compression="gzip", compression_opts=4)
        f.attrs[METADATA_ATTR] = strict_json.dumps(metadata, sort_keys=True, default=_json_default)
    tmp.replace(path)
    return path


def load_d4rl(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read our files and real D4RL files: (the six D4RL arrays, metadata dict)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path} is not a readable HDF5 file: {err}") from err
    with f:
        data = {k: f[k][()] for k in D4RL_KEYS if k in f and isinstance(f[k], h5py.Dataset)}
        metadata: dict[str, Any] = {}
        if METADATA_ATTR in f.attrs:
            metadata = json.loads(f.attrs[METADATA_ATTR])
        elif "metadata" in f and isinstance(f["metadata"], h5py.Group):
            f["metadata"].visititems(lambda name, obj: _read_scalar(metadata, name, obj))
    if "timeouts" not in data and "rewards" in data:
        data["timeouts"] = np.zeros(len(data["rewards"]), np.bool_)
    if "next_observations" not in data and "observations" in data:
        data = _with_next_observations(data)
    return validate(data), metadata


def load_dataset(spec: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`load_d4rl(spec)`, or for `minari:<id or folder>` the Minari dataset as the same arrays (its
    root: MINARI_DATASETS_PATH, else Minari's default; sim_models.minari_io.load_minari)."""
    if str(spec).startswith(MINARI_PREFIX):
        from sim_models.minari_io import load_minari

        return load_minari(str(spec)[len(MINARI_PREFIX):])
    return load_d4rl(spec)


def _read_scalar(out: dict[str, Any], name: str, obj: Any) -> None:
    if isinstance(obj, h5py.Dataset) and obj.shape == ():
        value = obj[()]
        out[name] = value.decode() if isinstance(value, bytes) else np.asarray(value).item()


def _with_next_observations(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pair each row with the next; drop rows whose next row belongs to another episode."""
    n = len(data["observations"])
    keep = np.ones(n, bool)
    keep[-1] = False
    keep[:-1] &= ~np.asarray(data["timeouts"][:-1], bool)  # the next row starts a new episode
    idx = np.flatnonzero(keep)
    out = {k: np.asarray(v)[idx] for k, v in data.items() if k in D4RL_KEYS}
    out["next_observations"] = np.asarray(data["observations"])[idx + 1]
    return out


def _json_default(value: Any) -> Any:
    """numpy values are made plain by strict_json; anything else in metadata is a mistake."""
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")

"""Minari datasets beside the D4RL-layout HDF5 files: export ours, import anyone's.

    python -m sim_models.minari_io export --dataset data/stand_still-moderate-medium.hdf5 --root data/minari
    python -m sim_models.minari_io import --source h2o/stand_still/moderate-medium-v0 --root data/minari \
        --out data/from-minari.hdf5
    MINARI_DATASETS_PATH=data/minari python -m learner.train --dataset minari:h2o/stand_still/moderate-medium-v0

Minari (Farama's maintained successor of D4RL) keeps a dataset as episodes: N steps of actions,
rewards, terminations, truncations and N+1 observations. The D4RL layout keeps rows. Export cuts
the rows into episodes at every terminal or timeout, and also wherever a row's next_observation is
not the next row's observation (data that reset without a flag, the file's last row), so the
import rebuilds every row exactly: observations, actions, rewards, next_observations, terminals
(= terminations) and timeouts (= truncations) come back value-identical (float32, bool).

- The spaces are gymnasium Boxes: observations (obs_dim,) unbounded, actions (act_dim,) in
  [-1, 1] (the robot's policy units), unbounded when a stored action lies outside.
- The dataset id defaults to `h2o/<task>/<profile>-<behaviour>-v0` from the file's metadata (the
  profile too: data of one behaviour on two profiles are different datasets); `--dataset-id`
  names it yourself. Our metadata travels whole as the Minari metadata key `h2o_metadata`, and
  comes back from an import; a foreign dataset's import carries Minari's own fields instead.
- Storage: Minari's `hdf5` format (h5py, already the sim extra's): it works offline and needs no
  pyarrow. Nothing is ever downloaded: a dataset is read from a local root only.
- Where: `--root` (a folder of Minari datasets), else `MINARI_DATASETS_PATH`, else Minari's own
  default (~/.minari/datasets). `minari:<id>` in `learner.train --dataset` and the service's
  `datasets` reads through `load_minari` (root: `MINARI_DATASETS_PATH`); `minari:<folder>` names
  one dataset's folder (the one holding `data/`) directly.

`minari` is imported only here, lazily: it is in the `sim` extra (`pip install '.[sim]'`); without
it everything else works and these functions raise `MinariMissingError` naming the extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from protocol import strict_json
from protocol.config_cli import ArgumentParser, ConfigError, add_dataclass_arguments, help_field, load_config
from sim_models.datasets import DatasetError, load_d4rl, save_d4rl, validate

log = logging.getLogger(__name__)

ROOT_ENV = "MINARI_DATASETS_PATH"  # Minari's own variable for its datasets folder
METADATA_KEY = "h2o_metadata"  # our HDF5 metadata, whole, in the Minari metadata
_ID_PART = re.compile(r"[^-\w]+")


class MinariMissingError(DatasetError):
    """The minari package is not installed."""


def require_minari():
    """The minari module, or MinariMissingError saying which extra brings it."""
    try:
        import minari
    except ImportError as exc:
        raise MinariMissingError(
            f"Minari datasets need the minari package ({exc}): pip install '.[sim]' (the sim extra, also "
            "in learner and dev), or pip install 'minari[hdf5]>=0.5,<0.6'") from None
    return minari


@contextlib.contextmanager
def minari_root(root: str | Path | None) -> Iterator[None]:
    """Minari finds its datasets through MINARI_DATASETS_PATH only: set it to `root` meanwhile
    (None: leave it as it is)."""
    if root is None or str(root) == "":
        yield
        return
    old = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(Path(root).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = old


# ---------------------------------------------------------------------------- rows <-> episodes
def episode_bounds(data: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """[start, stop) of each episode: a row ends one when it is terminal or a timeout, when the next
    row does not start where it ended (its next_observation is not the next row's observation),
    and at the last row."""
    n = len(data["rewards"])
    if n == 0:
        return []
    end = np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool)
    end[:-1] |= np.any(data["next_observations"][:-1] != data["observations"][1:], axis=1)
    end[-1] = True
    stops = np.flatnonzero(end) + 1
    starts = np.concatenate([[0], stops[:-1]])
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def _id_part(value: Any) -> str:
    """A piece of a Minari id: word characters and '-' only ('stand_still:action_history=2' ->
    'stand_still_action_history_2')."""
    text = str(value)
    if "/" in text or text.endswith(".toml"):  # a profile given as a TOML path: its name
        text = Path(text).stem
    return _ID_PART.sub("_", text).strip("_") or "unknown"


def default_dataset_id(metadata: dict[str, Any]) -> str:
    """`h2o/<task>/<profile>-<behaviour>-v0` from our metadata (collect, the grid's data, the
    behaviour-data tool); DatasetError when the metadata lacks the task or the behaviour."""
    task = metadata.get("task")
    behaviour = metadata.get("level") or metadata.get("behaviour") or metadata.get("kind")
    if not task or not behaviour:
        raise DatasetError("the dataset's metadata names no task or behaviour: give --dataset-id "
                           "(e.g. h2o/stand_still/moderate-medium-v0)")
    profile = metadata.get("profile")
    if isinstance(profile, dict):
        profile = profile.get("name")
    name = f"{_id_part(profile)}-{_id_part(behaviour)}" if profile else _id_part(behaviour)
    return f"h2o/{_id_part(task)}/{name}-v0"


def _spaces(data: dict[str, np.ndarray]):
    import gymnasium as gym

    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    bounded = bool(np.all(np.abs(data["actions"]) <= 1.0))
    lim = 1.0 if bounded else np.inf
    return (gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            gym.spaces.Box(-lim, lim, (act_dim,), np.float32))


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as plain JSON values (numpy scalars made plain, NaN -> None)."""
    import json

    return json.loads(strict_json.dumps(metadata))


# ---------------------------------------------------------------------------- export
def export_minari(dataset: str | Path | dict[str, np.ndarray], dataset_id: str = "",
                  root: str | Path | None = None, metadata: dict[str, Any] | None = None,
                  author: str = "", description: str = "") -> tuple[str, Path]:
    """A D4RL-layout dataset (an HDF5 path, or the arrays with `metadata`) as a new Minari dataset
    under `root` (None: MINARI_DATASETS_PATH or Minari's default). Returns (id, its folder).
    DatasetError when the id is malformed or taken."""
    minari = require_minari()
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id

    source = ""
    if isinstance(dataset, (str, Path)):
        source = Path(dataset).name
        data, metadata = load_d4rl(dataset)
    else:
        data, metadata = validate(dataset), dict(metadata or {})
    dataset_id = dataset_id or default_dataset_id(metadata)
    try:
        parse_dataset_id(dataset_id)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    bounds = episode_bounds(data)
    episodes = []
    for k, (a, b) in enumerate(bounds):
        obs = np.concatenate([data["observations"][a:b], data["next_observations"][b - 1:b]])
        episodes.append(EpisodeBuffer(id=k, observations=obs, actions=data["actions"][a:b],
                                      rewards=data["rewards"][a:b], terminations=data["terminals"][a:b],
                                      truncations=data["timeouts"][a:b]))
    returns = [float(data["rewards"][a:b].sum()) for a, b in bounds]
    obs_space, act_space = _spaces(data)
    behaviour = metadata.get("level") or metadata.get("behaviour") or metadata.get("kind") or "unknown"
    description = description or (
        f"h2o-robot offline data: task {metadata.get('task', '?')}, behaviour {behaviour}; {len(data['rewards'])} "
        f"transitions in {len(bounds)} episodes, mean episode return {np.mean(returns):.6g}. Exported from the "
        f"D4RL-layout file {source or '(arrays)'}; its metadata is under '{METADATA_KEY}'.")
    with minari_root(root), warnings.catch_warnings():
        # Minari warns about every optional field left out (code_permalink, author, eval_env, env_spec):
        # the env is ours (sim_models, recovered from h2o_metadata's task and profile), not a gym id here.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        try:
            ds = minari.create_dataset_from_buffers(
                dataset_id, episodes, observation_space=obs_space, action_space=act_space,
                algorithm_name=str(behaviour), author=author or None, description=description,
                data_format="hdf5")
        except ValueError as exc:  # the id exists already
            raise DatasetError(f"{exc} (choose another --dataset-id, e.g. a higher -vN)") from None
        ds.storage.update_metadata({METADATA_KEY: _plain(metadata),
                                    "h2o_episode_returns": returns, "h2o_source_file": source})
        path = Path(ds.storage.data_path).parent
    log.info("exported %d transitions in %d episodes as Minari dataset %s (%s)", len(data["rewards"]),
             len(bounds), dataset_id, path)
    return dataset_id, path


# ---------------------------------------------------------------------------- import
def dataset_folder(source: str | Path, root: str | Path | None = None) -> Path:
    """The `data/` folder of a Minari dataset named by id (under `root`, else MINARI_DATASETS_PATH,
    else Minari's default) or by path (the dataset's folder, or its data/ folder)."""
    p = Path(source)
    for cand in (p / "data", p):
        if (cand / "metadata.json").is_file():
            return cand
    require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        parse_dataset_id(str(source))
    except ValueError as exc:
        raise DatasetError(f"{source}: not a Minari dataset folder, and {exc}") from None
    with minari_root(root):
        folder = Path(get_dataset_path(str(source))) / "data"
    if not (folder / "metadata.json").is_file():
        where = root or os.environ.get(ROOT_ENV) or "Minari's default root (~/.minari/datasets)"
        raise DatasetError(f"Minari dataset {source} not found in {where} (no {folder}); give --root or set "
                           f"{ROOT_ENV} (local datasets only: nothing is downloaded)")
    return folder


def load_minari(source: str | Path, root: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A Minari dataset (id or folder, see `dataset_folder`) as (the six D4RL arrays, metadata):
    the metadata we exported, or Minari's own fields for a foreign dataset, plus `minari_dataset_id`."""
    require_minari()
    import gymnasium as gym
    from minari import MinariDataset

    ds = MinariDataset(dataset_folder(source, root))
    for what, space in (("observation", ds.observation_space), ("action", ds.action_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise DatasetError(f"Minari dataset {ds.id}: its {what} space {space} is not a 1-D Box; "
                               "the D4RL layout holds flat float rows only")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                        "terminals", "timeouts")}
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations)
        cols["observations"].append(obs[:-1])
        cols["next_observations"].append(obs[1:])
        cols["actions"].append(np.asarray(ep.actions).reshape(len(ep.rewards), -1))
        cols["rewards"].append(np.asarray(ep.rewards))
        cols["terminals"].append(np.asarray(ep.terminations, bool))
        cols["timeouts"].append(np.asarray(ep.truncations, bool))
    if not cols["rewards"]:
        raise DatasetError(f"Minari dataset {ds.id} holds no episodes")
    data = validate({k: np.concatenate(v) for k, v in cols.items()})
    raw = ds.storage.metadata
    if isinstance(raw.get(METADATA_KEY), dict):
        metadata = dict(raw[METADATA_KEY])
    else:
        metadata = {k: (sorted(v) if isinstance(v, set) else v) for k, v in raw.items()
                    if isinstance(v, (str, int, float, bool, set)) and k not in ("data_format",)}
        metadata["source"] = "minari"
    metadata["minari_dataset_id"] = ds.id
    return data, metadata


def import_minari(source: str | Path, out: str | Path, root: str | Path | None = None) -> Path:
    """A Minari dataset written as a D4RL-layout HDF5 file `out` (what `learner.train --dataset` reads)."""
    data, metadata = load_minari(source, root)
    path = save_d4rl(out, data, metadata)
    log.info("imported Minari dataset %s: %d transitions -> %s", metadata["minari_dataset_id"],
             len(data["rewards"]), path)
    return path


# ---------------------------------------------------------------------------- CLI
_f = help_field


@dataclass
class ExportConfig:
    """`export`: a D4RL-layout HDF5 file -> a new Minari dataset."""

    dataset: str = _f("", "the D4RL-layout HDF5 file to export (required)")
    root: str = _f("", f"folder of Minari datasets to write into; empty: ${ROOT_ENV}, else ~/.minari/datasets")
    dataset_id: str = _f("", "Minari id; empty: h2o/<task>/<profile>-<behaviour>-v0 from the file's metadata")
    author: str = _f("", "author recorded in the Minari metadata (optional)")
    description: str = _f("", "description recorded in the Minari metadata; empty: one made from the metadata")

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError("dataset: give the HDF5 file to export (--dataset)")


@dataclass
class ImportConfig:
    """`import`: a Minari dataset -> a D4RL-layout HDF5 file."""

    source: str = _f("", "the Minari dataset: its id (looked up in the root) or its folder (required)")
    root: str = _f("", f"folder of Minari datasets to read from; empty: ${ROOT_ENV}, else ~/.minari/datasets")
    out: str = _f("", "the HDF5 file to write (required)")

    def validate(self) -> None:
        if not self.source or not self.out:
            raise ConfigError("give --source (a Minari id or folder) and --out (the HDF5 file)")


COMMANDS = {
    "export": (ExportConfig, "write a D4RL-layout HDF5 file as a Minari dataset",
               "python -m sim_models.minari_io export --dataset data/stand_still-moderate-medium.hdf5 --root data/minari"),
    "import": (ImportConfig, "write a Minari dataset as a D4RL-layout HDF5 file (learner.train --dataset reads it)",
               "python -m sim_models.minari_io import --source h2o/stand_still/moderate-medium-v0 --root data/minari "
               "--out data/x.hdf5"),
}


def build_parser():

    parser = ArgumentParser(prog="python -m sim_models.minari_io", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, summary, example) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary, example=example)
        p.add_argument("--config", default="", help=f"TOML file of {cls.__name__} fields (CLI flags override it)")
        add_dataclass_arguments(p, cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    from protocol.logs import setup_logging

    args = build_parser().parse_args(argv)
    cls = COMMANDS[args.command][0]
    try:
        cfg = load_config(cls, args.config, args)
    except (ConfigError, OSError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging("INFO")
    try:
        if args.command == "export":
            dataset_id, path = export_minari(cfg.dataset, cfg.dataset_id, cfg.root or None, author=cfg.author,
                                             description=cfg.description)
            print(f"wrote Minari dataset {dataset_id} ({path})")
        else:
            print(f"wrote {import_minari(cfg.source, cfg.out, cfg.root or None)}")
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

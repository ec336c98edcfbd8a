"""Minari export and import (sim_models/minari_io.py) on real files in temporary Minari roots.

The round trip HDF5 -> Minari -> HDF5 must give back every D4RL array value for value; Minari's
own API must read the export as episodes with the right lengths and spaces; `minari:<id>` must
load through the same function learner.train and the service use. Nothing touches ~/.minari.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

minari = pytest.importorskip("minari")

from sim_models.collect import CollectConfig, collect  # noqa: E402
from sim_models.datasets import D4RL_KEYS, DatasetError, load_d4rl, load_dataset, save_d4rl  # noqa: E402
from sim_models.minari_io import (MinariMissingError, default_dataset_id, episode_bounds, export_minari,  # noqa: E402
                                  import_minari, load_minari, require_minari)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_home_root(monkeypatch, tmp_path):
    """A test that forgot its root writes into tmp_path, never the user's ~/.minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "default-root"))


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, dict, dict]:
    """400 rows of the random behaviour on `moderate` (falls: terminals; the step budget: a timeout)."""
    data, meta = collect(CollectConfig(task="stand_still", profile="moderate", behaviour="random", steps=400, seed=1))
    path = save_d4rl(tmp_path_factory.mktemp("d4rl") / "stand_still-moderate-random.hdf5", data, meta)
    return path, *load_d4rl(path)


def _lengths(data: dict) -> list[int]:
    """Episode lengths the D4RL flags give (each episode ends at a terminal or a timeout)."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    return np.diff(np.concatenate([[-1], ends])).tolist()


def test_round_trip_hdf5_minari_hdf5_is_value_identical(collected, tmp_path):
    path, data, meta = collected
    assert data["terminals"].sum() >= 3 and data["timeouts"].sum() >= 1  # both kinds of episode end
    dataset_id, folder = export_minari(path, root=tmp_path / "minari")
    assert dataset_id == "h2o/stand_still/moderate-random-v0"
    assert folder == tmp_path / "minari" / "h2o" / "stand_still" / "moderate-random-v0"
    out = import_minari(dataset_id, tmp_path / "back.hdf5", root=tmp_path / "minari")
    back, back_meta = load_d4rl(out)
    for key in D4RL_KEYS:
        assert back[key].dtype == data[key].dtype, key
        np.testing.assert_array_equal(back[key], data[key], err_msg=key)
    assert {k: back_meta[k] for k in meta} == meta  # task, profile, behaviour, seed, returns, ...
    assert back_meta["minari_dataset_id"] == dataset_id
    assert not (tmp_path / "default-root").exists()  # the explicit root, not the environment's


def test_rows_that_reset_without_a_flag_still_come_back_exactly(tmp_path):
    """Data whose episodes end without a terminal or timeout (a reset the collector did not flag,
    an unflagged last row): export cuts there too, so the import rebuilds every next_observation."""
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((31, 3)).astype(np.float32)
    data = {"observations": obs[:-1].copy(), "next_observations": obs[1:].copy(),
            "actions": rng.uniform(-2, 2, (30, 2)).astype(np.float32),  # outside [-1, 1]: unbounded space
            "rewards": rng.standard_normal(30).astype(np.float32),
            "terminals": np.zeros(30, bool), "timeouts": np.zeros(30, bool)}
    data["terminals"][9] = True
    data["next_observations"][19] = 7.0  # row 20 starts elsewhere, unflagged
    assert episode_bounds(data) == [(0, 10), (10, 20), (20, 30)]
    dataset_id, _ = export_minari(data, "tests/synthetic-v1", tmp_path, metadata={"task": "x"})
    back, meta = load_minari(dataset_id, tmp_path)
    for key in D4RL_KEYS:
        np.testing.assert_array_equal(back[key], data[key], err_msg=key)
    assert meta == {"task": "x", "minari_dataset_id": "tests/synthetic-v1"}
    ds = minari.MinariDataset(tmp_path / "tests" / "synthetic-v1" / "data")
    assert np.isinf(ds.action_space.high).all()


def test_minari_reads_the_export_with_its_own_api(collected, tmp_path, monkeypatch):
    path, data, meta = collected
    root = tmp_path / "minari"
    dataset_id, _ = export_minari(path, root=root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))  # how Minari itself finds a root
    assert dataset_id in minari.list_local_datasets()
    ds = minari.load_dataset(dataset_id)
    lengths = _lengths(data)
    assert ds.total_episodes == len(lengths) == meta["episodes"] and ds.total_steps == 400
    assert ds.observation_space.shape == (4,) and ds.observation_space.dtype == np.float32
    assert ds.action_space.shape == (1,) and ds.action_space.low[0] == -1 and ds.action_space.high[0] == 1
    start = 0
    for ep, n in zip(ds.iterate_episodes(), lengths):
        assert len(ep) == n and ep.observations.shape == (n + 1, 4) and ep.actions.shape == (n, 1)
        np.testing.assert_array_equal(ep.observations[:-1], data["observations"][start:start + n])
        np.testing.assert_array_equal(ep.observations[-1], data["next_observations"][start + n - 1])
        assert bool(ep.terminations[-1]) == bool(data["terminals"][start + n - 1])
        assert bool(ep.truncations[-1]) == bool(data["timeouts"][start + n - 1])
        assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()
        start += n
    md = ds.storage.metadata
    assert md["h2o_metadata"]["profile"]["name"] == "moderate" and md["algorithm_name"] == "random"
    assert md["h2o_metadata"]["mean_episode_return"] == pytest.approx(np.mean(md["h2o_episode_returns"]), rel=1e-5)
    # what learner.train --dataset minari:<id> and the service's datasets read
    loaded, loaded_meta = load_dataset(f"minari:{dataset_id}")
    np.testing.assert_array_equal(loaded["next_observations"], data["next_observations"])
    assert loaded_meta["task"] == "stand_still"
    by_folder, _ = load_dataset(f"minari:{root / dataset_id}")
    np.testing.assert_array_equal(by_folder["actions"], data["actions"])


def test_a_foreign_minari_dataset_imports_with_minaris_metadata(tmp_path, monkeypatch):
    """A dataset made with Minari's own API (float64, no h2o metadata) becomes our float32 layout."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    rng = np.random.default_rng(1)
    eps = [EpisodeBuffer(id=i, observations=rng.standard_normal((n + 1, 2)), actions=rng.uniform(-1, 1, (n, 1)),
                         rewards=rng.standard_normal(n), terminations=np.arange(n) == n - 1,
                         truncations=np.zeros(n, bool)) for i, n in enumerate((5, 7))]
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(
            "other/pendulum-v2", eps, observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
            action_space=gym.spaces.Box(-1, 1, (1,), np.float64), algorithm_name="sac", author="someone")
    data, meta = load_minari("other/pendulum-v2")
    assert data["observations"].dtype == np.float32 and len(data["rewards"]) == 12
    np.testing.assert_array_equal(data["next_observations"][:5], eps[0].observations[1:].astype(np.float32))
    assert data["terminals"].tolist() == [False] * 4 + [True] + [False] * 6 + [True]
    assert meta["source"] == "minari" and meta["algorithm_name"] == "sac" and meta["author"] == ["someone"]
    assert meta["minari_dataset_id"] == "other/pendulum-v2"


def test_errors_name_the_fix(collected, tmp_path, monkeypatch):
    path, data, meta = collected
    export_minari(path, root=tmp_path)
    with pytest.raises(DatasetError, match="already exists.*-vN"):
        export_minari(path, root=tmp_path)
    with pytest.raises(DatasetError, match="not found in"):
        load_minari("h2o/stand_still/nope-v0", tmp_path)
    with pytest.raises(DatasetError, match="Malformed"):
        load_minari("no version, spaces", tmp_path)
    with pytest.raises(DatasetError, match="--dataset-id"):
        default_dataset_id({"task": "stand_still"})
    assert default_dataset_id({"task": "stand_still:action_history=2", "profile": "configs/p/nominal_com_dr.toml",
                               "kind": "medium_replay"}) == "h2o/stand_still_action_history_2/nominal_com_dr-medium_replay-v0"
    monkeypatch.setitem(sys.modules, "minari", None)  # as if not installed
    with pytest.raises(MinariMissingError, match=r"\.\[sim\]"):
        require_minari()


def test_cli_export_then_import(collected, tmp_path):
    path, data, _meta = collected
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "unused")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sim_models.minari_io", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    root = str(tmp_path / "m")
    run = cli("export", "--dataset", str(path), "--root", root, "--dataset-id", "h2o/stand_still/cli-v3")
    assert run.returncode == 0, run.stderr
    assert "wrote Minari dataset h2o/stand_still/cli-v3" in run.stdout
    run = cli("import", "--source", "h2o/stand_still/cli-v3", "--root", root, "--out", str(tmp_path / "x.hdf5"))
    assert run.returncode == 0, run.stderr
    back, _ = load_d4rl(tmp_path / "x.hdf5")
    np.testing.assert_array_equal(back["observations"], data["observations"])
    again = cli("export", "--dataset", str(path), "--root", root, "--dataset-id", "h2o/stand_still/cli-v3")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cli("import", "--source", "h2o/stand_still/cli-v3").returncode == 2  # no --out: a config error
    assert not (tmp_path / "unused").exists()
    helped = cli("export", "--help")
    assert helped.returncode == 0 and "(default '')" in helped.stdout and "example:" in helped.stdout

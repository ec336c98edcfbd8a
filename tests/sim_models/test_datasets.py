"""D4RL-layout HDF5: round trip, validation, real D4RL files, and the collect CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from sim_models.collect import BEHAVIOURS, CollectConfig, CollectConfigError, collect
from sim_models.datasets import D4RL_KEYS, DatasetError, load_d4rl, save_d4rl


def _data(n=20, obs_dim=4, act_dim=1, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": np.arange(n) == n - 1,
        "timeouts": np.zeros(n, bool),
    }


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    data = _data()
    meta = {"task": "stand_still", "profile": {"name": "mild"}, "seed": np.int64(3)}
    path = save_d4rl(tmp_path / "d.hdf5", data, meta)
    loaded, loaded_meta = load_d4rl(path)
    for key in D4RL_KEYS:
        np.testing.assert_array_equal(loaded[key], data[key])
    assert loaded["terminals"].dtype == np.bool_ and loaded["observations"].dtype == np.float32
    assert loaded_meta == {"task": "stand_still", "profile": {"name": "mild"}, "seed": 3}
    assert not (tmp_path / "d.hdf5.tmp").exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("timeouts"), r"missing key\(s\) \['timeouts'\]"),
    (lambda d: d.update(rewards=d["rewards"][:-1]), "rows"),
    (lambda d: d.update(actions=d["actions"].ravel()), "actions must be 2-D"),
    (lambda d: d["observations"].__setitem__((0, 0), np.nan), "non-finite"),
])
def test_bad_datasets_are_rejected_with_clear_errors(tmp_path, mutate, message):
    data = _data()
    mutate(data)
    with pytest.raises(DatasetError, match=message):
        save_d4rl(tmp_path / "bad.hdf5", data, {})
    assert not (tmp_path / "bad.hdf5").exists()


def test_missing_or_corrupt_files_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_d4rl(tmp_path / "nope.hdf5")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_d4rl(junk)


def test_reads_a_real_d4rl_style_file_with_extra_groups_and_no_next_observations(tmp_path):
    """D4RL's halfcheetah files: infos/ and metadata/ groups, no next_observations in older ones."""
    n = 10
    obs = np.arange(n * 17, dtype=np.float32).reshape(n, 17)
    timeouts = np.zeros(n, bool)
    timeouts[4] = True  # episode boundary after row 4
    path = tmp_path / "halfcheetah_medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.zeros((n, 6), np.float32)
        f["rewards"] = np.ones(n, np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = timeouts
        f["infos/qpos"] = np.zeros((n, 9))
        f["infos/action_log_probs"] = np.zeros(n)
        f["metadata/algorithm"] = b"SAC"
        f["metadata/policy/nonlinearity"] = b"relu"
        f["metadata/iteration"] = 500
    data, meta = load_d4rl(path)
    # Rows 4 (timeout: next row is another episode) and 9 (last) have no successor.
    assert len(data["rewards"]) == n - 2
    np.testing.assert_array_equal(data["next_observations"][0], obs[1])
    np.testing.assert_array_equal(data["next_observations"][4], obs[6])
    assert meta["algorithm"] == "SAC" and meta["policy/nonlinearity"] == "relu"
    assert meta["iteration"] == 500


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_every_behaviour_collects_consistent_transitions(behaviour):
    data, meta = collect(CollectConfig(task="stand_still", profile="mild", behaviour=behaviour,
                                       steps=300, seed=1))
    assert len(data["rewards"]) == 300 and meta["behaviour"] == behaviour
    assert meta["profile"]["name"] == "mild" and meta["task"] == "stand_still"
    ends = data["terminals"] | data["timeouts"]
    assert ends[-1] and not np.any(data["terminals"] & data["timeouts"])
    inside = np.flatnonzero(~ends[:-1])  # within an episode, next_obs is the next row's obs
    np.testing.assert_array_equal(data["next_observations"][inside], data["observations"][inside + 1])
    assert np.all(np.abs(data["actions"]) <= 1.0)


def test_same_seed_collects_the_same_data():
    a, _ = collect(CollectConfig(behaviour="medium", steps=200, seed=4, profile="moderate"))
    b, _ = collect(CollectConfig(behaviour="medium", steps=200, seed=4, profile="moderate"))
    for key in D4RL_KEYS:
        np.testing.assert_array_equal(a[key], b[key])


def test_bad_collect_config_is_rejected():
    with pytest.raises(CollectConfigError, match="unknown behaviour"):
        collect(CollectConfig(behaviour="perfect", steps=10))
    with pytest.raises(CollectConfigError, match="steps must be > 0"):
        collect(CollectConfig(steps=0))


def test_collect_cli_writes_a_loadable_file(tmp_path):
    config = tmp_path / "collect.toml"
    config.write_text('task = "move_straight"\nbehaviour = "expert"\nsteps = 50\n')
    out = tmp_path / "out.hdf5"
    run = subprocess.run(
        [sys.executable, "-m", "sim_models.collect", "--config", str(config), "--steps", "120",
         "--profile", "mild", "--seed", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "120 transitions" in run.stdout
    data, meta = load_d4rl(out)
    assert data["observations"].shape == (120, 4)
    assert meta["task"] == "move_straight" and meta["seed"] == 2 and meta["behaviour"] == "expert"
    with h5py.File(out) as f:
        assert json.loads(f.attrs["h2o_metadata"])["profile"]["name"] == "mild"
    help_run = subprocess.run([sys.executable, "-m", "sim_models.collect", "--help"],
                              capture_output=True, text=True, timeout=60)
    assert help_run.returncode == 0 and "--behaviour" in help_run.stdout

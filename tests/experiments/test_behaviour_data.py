"""The HalfCheetah behaviour-data CLI: real (tiny) SAC in the real dynamics, real HDF5 files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from learner.experiments.behaviour_data import (BehaviourConfig, BehaviourDataError, Snapshot, build, main,
                                                pick_medium)
from sim_models.datasets import D4RL_KEYS, load_d4rl

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]
OBS, ACT = 17, 6  # HalfCheetah


def tiny(out_dir: Path, **kw) -> BehaviourConfig:
    """400 env steps in blocks of 100, 50-step episodes, 32-32 networks: a few seconds."""
    values = dict(task="halfcheetah", out_dir=str(out_dir), env_steps=400, steps_per_epoch=100, updates_per_epoch=50,
                  random_steps=100, start_updates=100, batch=64, hidden="32-32", eval_every=100, eval_episodes=1,
                  max_episode_steps=50, transitions=150, medium_step=200, threads=1)
    return BehaviourConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[BehaviourConfig, dict]:
    torch.set_num_threads(1)
    cfg = tiny(tmp_path_factory.mktemp("behaviour"))
    return cfg, build(cfg)


def test_files_are_named_like_the_paper_grid_expects(built) -> None:
    cfg, _ = built
    paper = tomllib.loads((REPO / "configs/experiments/halfcheetah_paper.toml").read_text())
    wanted = {Path(d["path"]).name for d in paper["datasets"]}
    written = {cfg.path(level).name for level in ("medium", "medium_replay", "medium_expert")}
    assert written == wanted
    assert all(cfg.path(level).exists() for level in ("medium", "medium_replay", "medium_expert", "expert",
                                                      "full_replay"))


def test_every_level_has_the_d4rl_keys_shapes_and_dtypes(built) -> None:
    cfg, _ = built
    sizes = {"medium": 150, "expert": 150, "medium_expert": 300, "medium_replay": 200, "full_replay": 400}
    for level, n in sizes.items():
        with h5py.File(cfg.path(level), "r") as f:
            assert set(D4RL_KEYS) <= set(f.keys())
            assert f["observations"].shape == f["next_observations"].shape == (n, OBS)
            assert f["actions"].shape == (n, ACT) and f["actions"].dtype == np.float32
            assert f["rewards"].shape == f["terminals"].shape == f["timeouts"].shape == (n,)
            assert f["terminals"].dtype == np.bool_ and f["timeouts"].dtype == np.bool_
            assert np.all(np.abs(f["actions"][()]) <= 1.0)
        data, meta = load_d4rl(cfg.path(level))  # the learner's own loader accepts them
        assert meta["level"] == level and meta["profile"] == "nominal"
        # time order: within an episode each row's next observation is the next row's observation
        cont = ~data["timeouts"][:-1] & ~data["terminals"][:-1]
        assert np.allclose(data["next_observations"][:-1][cont], data["observations"][1:][cont])
        assert data["timeouts"].sum() == n // 50  # 50-step episodes end in a time-out (none terminate)


def test_medium_replay_is_the_replay_buffer_prefix_and_medium_expert_is_the_concatenation(built) -> None:
    cfg, report = built
    assert report["medium_snapshot"]["env_steps"] == 200 and report["expert_snapshot"]["env_steps"] == 400
    replay, _ = load_d4rl(cfg.path("medium_replay"))
    full, _ = load_d4rl(cfg.path("full_replay"))
    medium, _ = load_d4rl(cfg.path("medium"))
    expert, _ = load_d4rl(cfg.path("expert"))
    mixed, _ = load_d4rl(cfg.path("medium_expert"))
    for k in D4RL_KEYS:
        assert np.array_equal(replay[k], full[k][:200])
        assert np.array_equal(mixed[k], np.concatenate([medium[k], expert[k]]))
    # the first block is uniform random, later blocks come from the (stochastic) SAC policy
    assert not np.array_equal(full["actions"][:100], full["actions"][100:200])


def test_returns_json_reports_every_level_and_the_learning_curve(built) -> None:
    cfg, report = built
    saved = json.loads(Path(report["json"]).read_text())
    assert Path(report["json"]).name == "halfcheetah-behaviour.json"
    assert [p["env_steps"] for p in saved["learning_curve"]] == [0, 100, 200, 300, 400]
    assert saved["updates"] == 4 * 50  # updates start once 100 steps are stored
    for level, n_eps in (("medium", 3), ("expert", 3), ("medium_expert", 6), ("medium_replay", 4)):
        info = saved["levels"][level]
        assert info["episodes"] == n_eps and np.isfinite(info["return_mean"])
    assert saved["d4rl_reference_returns"]["expert"] > 10_000
    side = json.loads(cfg.path("medium").with_suffix(".json").read_text())  # what the grid driver reads
    assert side["behaviour_return_mean"] == saved["levels"]["medium"]["return_mean"]


def _snaps(returns: list[float]) -> list[Snapshot]:
    return [Snapshot(1000 * i, 1000 * i, r, torch.nn.Identity()) for i, r in enumerate(returns)]


def test_medium_is_the_first_snapshot_past_the_fraction_of_the_gain(tmp_path) -> None:
    snaps = _snaps([-300.0, 100.0, 900.0, 700.0, 1700.0])  # threshold -300 + 0.5 * 2000 = 700
    assert pick_medium(tiny(tmp_path, medium_step=0, env_steps=5000), snaps).env_steps == 2000
    assert pick_medium(tiny(tmp_path, medium_step=2500, env_steps=5000), snaps).env_steps == 3000
    with pytest.raises(BehaviourDataError, match="did not improve"):
        pick_medium(tiny(tmp_path, medium_step=0), _snaps([-300.0, -350.0, -400.0]))


def test_bad_settings_are_a_clear_error_with_exit_code_2(tmp_path, capsys) -> None:
    assert main(["--out-dir", str(tmp_path), "--env-steps", "0"]) == 2
    assert "env_steps must be positive" in capsys.readouterr().err
    assert main(["--out-dir", str(tmp_path), "--env-steps", "100", "--medium-step", "200"]) == 2
    assert "medium_step" in capsys.readouterr().err
    assert main(["--out-dir", str(tmp_path), "--task", "no_such_task", "--env-steps", "100", "--eval-every", "100"]) == 2
    assert not list(tmp_path.iterdir())  # nothing written on failure

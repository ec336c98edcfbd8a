"""Grid config validation, the shipped configs, and the medium datasets' quality and layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from learner.experiments import config as grid_config
from learner.experiments.cli import main
from learner.experiments.datasets import DatasetSpec, DatasetSpecError, collect, controller_return, ensure_dataset

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"grid": {"algorithms": ["h2o"], "seeds": [0]}, "gaps": [{"name": "moderate"}],
           "datasets": [{"name": "medium"}]}


def test_shipped_configs_load_with_the_documented_sizes() -> None:
    reduced = grid_config.load(REPO / "configs/experiments/wheel_legged_reduced.toml")
    full = grid_config.load(REPO / "configs/experiments/wheel_legged_full.toml")
    cheetah = grid_config.load(REPO / "configs/experiments/halfcheetah_paper.toml")
    assert len(list(reduced.cells())) == 15
    assert len(list(full.cells())) == 180 and len(full.seeds) >= 3
    assert len(list(cheetah.cells())) == 135
    assert {(g.sim_profile, g.real_profile) for g in cheetah.gaps} == {
        ("gravity2", "nominal"), ("friction03", "nominal"), ("jointnoise", "nominal")}
    assert all(g.sim_profile == "nominal" and g.real_profile == g.name for g in full.gaps)


def test_full_60k_grid_gives_every_sim_user_the_robots_latency_and_a_randomised_com() -> None:
    full = grid_config.load(REPO / "configs/experiments/wheel_legged_full60k.toml")
    assert len(list(full.cells())) == 360 and full.updates_for("cql") == 30_000 and full.updates_for("h2o") == 60_000
    sims = {g.name: g.sim_profile for g in full.gaps}
    assert sims == {"mild": "configs/experiments/profiles/nominal_com_dr.toml",
                    "moderate": "configs/experiments/profiles/nominal_latency1_com_dr.toml",
                    "severe": "configs/experiments/profiles/nominal_latency2_com_dr.toml"}
    assert all((REPO / p).exists() for p in sims.values())


def test_gap_and_dataset_filters_keep_the_named_rows(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('[grid]\nalgorithms = ["h2o"]\nseeds = [0]\n[[gaps]]\nname = "mild"\n[[gaps]]\nname = "severe"\n'
                    '[[datasets]]\nname = "medium"\n[[datasets]]\nname = "medium_replay"\nkind = "medium_replay"\n')
    cfg = grid_config.load(toml, {"gaps": ["severe"], "datasets": ["medium_replay"]})
    assert [c.key for c in cfg.cells()] == ["stand_still/severe/medium_replay/h2o/seed0"]
    assert len(list(grid_config.load(toml, {"gaps": None}).cells())) == 4  # no filter: every row
    with pytest.raises(grid_config.GridConfigError, match=r"--gaps names \['modrate'\] not in the config"):
        grid_config.load(toml, {"gaps": ["modrate"]})


def test_gap_real_profile_defaults_to_its_name_and_cells_are_ordered_seed_major() -> None:
    cfg = grid_config.from_dict({**MINIMAL, "grid": {"algorithms": ["h2o", "sac"], "seeds": [0, 1]}})
    assert cfg.gaps[0].real_profile == "moderate"
    assert [c.key for c in cfg.cells()] == ["stand_still/moderate/medium/h2o/seed0", "stand_still/moderate/medium/sac/seed0",
                                            "stand_still/moderate/medium/h2o/seed1", "stand_still/moderate/medium/sac/seed1"]


@pytest.mark.parametrize("change, match", [
    ({"grid": {"algorithms": ["ppo"]}}, "unknown algorithm"),
    ({"grid": {"seeds": []}}, "at least one entry in seeds"),
    ({"grid": {"bogus": 1}}, "unknown \\[grid\\] key"),
    ({"train": {"task": "turn"}}, "not TrainConfig options"),
    ({"extra": {}}, "unknown top-level"),
    ({"datasets": [{"name": "d", "kind": "expert"}]}, "kind 'expert'"),
    ({"datasets": [{"name": "d", "kind": "file"}]}, "needs a path"),
    ({"gaps": [{"name": "g", "latency": 3}]}, "bad gap or dataset entry"),
    ({"grid": {"algorithm_updates": {"cqll": 10}}}, "algorithm_updates names unknown algorithm 'cqll'"),
    ({"grid": {"algorithm_updates": {"h2o": 0}}}, "algorithm_updates.h2o must be a positive integer"),
    ({"grid": {"algorithm_updates": {"h2o": 1.5}}}, "algorithm_updates.h2o must be a positive integer"),
    ({"grid": {"algorithm_settings": {"h2oo": {}}}}, "algorithm_settings names unknown algorithm 'h2oo'"),
    ({"grid": {"algorithm_settings": {"sac": {"penalty_clip": 1.0}}}}, "\\['penalty_clip'\\] are not sac settings"),
])
def test_bad_grid_configs_raise_typed_errors(change: dict, match: str) -> None:
    values = {**MINIMAL, **{k: v for k, v in change.items() if k != "grid"}}
    values["grid"] = {**MINIMAL["grid"], **change.get("grid", {})}
    with pytest.raises((grid_config.GridConfigError, DatasetSpecError), match=match):
        grid_config.from_dict(values)


def test_cli_reports_a_bad_config_with_exit_code_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\nalgorithms = ["ppo"]\n[[gaps]]\nname = "mild"\n[[datasets]]\nname = "m"\n')
    assert main([str(bad), "--dry-run"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.toml")]) == 2


def test_medium_data_is_genuinely_medium_and_d4rl_shaped(tmp_path: Path) -> None:
    """A tuned controller plus noise is nearly expert data on this robot (behaviour cloning alone
    would match it); the "medium" behaviour must score well below the tuned controller."""
    spec = DatasetSpec("medium", "medium", steps=1500, noise=0.3)
    data, meta = collect(spec, "stand_still", "moderate", seed=0)
    tuned = controller_return("stand_still", "moderate", detuned=False, episodes=1)
    assert meta["behaviour_return_mean"] < 0.5 * tuned
    assert meta["transitions"] == 1500 and all(len(v) == 1500 for v in data.values())
    # Every episode ends exactly once, by a fall (terminal) or a cut (timeout), never both.
    ends = data["terminals"] | data["timeouts"]
    assert not (data["terminals"] & data["timeouts"]).any() and ends[-1]
    assert int(ends.sum()) == meta["episodes"]
    starts = np.flatnonzero(ends[:-1]) + 1
    inner = np.setdiff1d(np.arange(1, 1500), starts)
    np.testing.assert_array_equal(data["observations"][inner], data["next_observations"][inner - 1])

    path, meta2 = ensure_dataset(spec, "stand_still", "moderate", tmp_path)
    with h5py.File(path) as f:
        assert {"observations", "actions", "rewards", "next_observations", "terminals", "timeouts"} <= set(f)
        np.testing.assert_array_equal(f["actions"][:], data["actions"])
    assert meta2["tuned_return"] > meta2["behaviour_return_mean"]
    assert ensure_dataset(spec, "stand_still", "moderate", tmp_path)[0] == path  # reused, not recollected


def test_medium_replay_improves_over_the_buffer_and_medium_expert_mixes_in_the_tuned_controller() -> None:
    _, replay = collect(DatasetSpec("r", "medium_replay", steps=3000), "stand_still", "moderate", seed=1)
    _, medium = collect(DatasetSpec("m", "medium", steps=3000), "stand_still", "moderate", seed=1)
    _, mixed = collect(DatasetSpec("e", "medium_expert", steps=3000), "stand_still", "moderate", seed=1)
    assert replay["behaviour_return_mean"] < medium["behaviour_return_mean"] < mixed["behaviour_return_mean"]


def test_missing_file_dataset_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetSpecError, match="does not exist"):
        ensure_dataset(DatasetSpec("m", "file", path=str(tmp_path / "none.hdf5")), "halfcheetah", "nominal", tmp_path)


def test_report_reads_the_sidecar_beside_a_file_dataset(tmp_path: Path) -> None:
    # behaviour_data writes <file>.json with the data's return and its expert's; the table's
    # "data / tuned ctrl" column uses them (there is no tuned controller for HalfCheetah).
    import json

    from learner.experiments.report import _dataset_meta

    data = tmp_path / "halfcheetah-medium-v2.hdf5"
    data.with_suffix(".json").write_text(json.dumps({"behaviour_return_mean": 309.0, "expert_eval_return": 666.0}))
    cfg = grid_config.from_dict({
        "grid": {"tasks": ["halfcheetah"], "algorithms": ["h2o"], "seeds": [0], "out_dir": str(tmp_path / "runs")},
        "gaps": [{"name": "gravity", "sim_profile": "gravity2", "real_profile": "nominal"}],
        "datasets": [{"name": "medium", "kind": "file", "path": str(data)}],
    })
    meta = _dataset_meta(cfg, "halfcheetah", "gravity", "medium")
    assert meta["behaviour_return_mean"] == 309.0 and meta["tuned_return"] == 666.0
    data.with_suffix(".json").unlink()
    assert _dataset_meta(cfg, "halfcheetah", "gravity", "medium") == {}

"""train.py through its real CLI with a tiny budget: the update path runs, outputs exist, resume is exact."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learner.train import TrainConfig, load_config
from protocol import strict_json

ROOT = Path(__file__).resolve().parents[2]
# Pendulum (gymnasium) keeps this test independent of the robot model's tuning; the robot task runs
# in test_learning_smoke.py.
BASE = ["--task", "gym:Pendulum-v1", "--real-profile", "g=12.0", "--collect-steps", "600",
        "--updates-per-epoch", "100", "--sim-steps-per-epoch", "100", "--hidden", "32-32", "--disc-hidden",
        "32-32", "--real-batch", "32", "--sim-batch", "32", "--disc-batch", "32", "--eval-every", "100",
        "--eval-episodes", "1", "--max-episode-steps", "50", "--checkpoint-every", "100", "--threads", "1",
        "--no-progress"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learner.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_help_documents_every_option():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in TrainConfig.__dataclass_fields__:
        flag = "--set" if name == "algo" else "--" + name.replace("_", "-")
        assert flag in out.stdout, flag


def test_config_layers_defaults_toml_cli(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('algorithm = "cql"\ntotal_updates = 77\nseeds = [1, 2]\n[algo]\ncql_weight = 2.0\n')
    cfg = load_config(["--config", str(toml), "--total-updates", "88", "--set", "cql_n_actions=4"])
    assert (cfg.algorithm, cfg.total_updates, cfg.seeds) == ("cql", 88, [1, 2])
    assert cfg.algo == {"cql_weight": 2.0, "cql_n_actions": 4}
    with pytest.raises(ValueError, match="algorithm 'nope'"):
        load_config(["--algorithm", "nope"])
    assert run_cli("--algorithm", "nope").returncode == 2


def test_cli_trains_evaluates_and_resumes_exactly(tmp_path):
    # two seeds: one population, one run folder each; the resume is exact for every member
    straight = run_cli(*BASE, "--seeds", "0", "1", "--total-updates", "300", "--run-dir", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    summaries = json.loads(straight.stdout)
    assert [s["seed"] for s in summaries] == [0, 1] and all(s["population"] == 2 for s in summaries)
    for summary in summaries:
        run_a = Path(summary["run_dir"])
        assert summary["updates"] == 300 and summary["env_steps"] == 300
        for name in ("config.toml", "progress.csv", "checkpoint.pt", "summary.json", "learning_curve.png"):
            assert (run_a / name).stat().st_size > 0, name
        # config.toml is this seed's resolved config, and --config reads it back as such
        again = load_config(["--config", str(run_a / "config.toml")])
        assert again == load_config([*BASE, "--seeds", str(summary["seed"]), "--total-updates", "300",
                                     "--run-dir", str(tmp_path / "a")])
        for path in [*run_a.rglob("*.json"), *run_a.rglob("*.jsonl")]:  # strict JSON: no NaN / Infinity
            for text in [path.read_text()] if path.suffix == ".json" else path.read_text().splitlines():
                strict_json.loads(text)
        rows_a = rows(run_a)
        assert [r["update"] for r in rows_a] == ["0", "100", "200", "300"]
        assert all(float(r["losses/qf1"]) > 0 and r["eval/real_return"] and r["eval/sim_return"] for r in rows_a[1:])
    assert rows(Path(summaries[0]["run_dir"]))[-1] != rows(Path(summaries[1]["run_dir"]))[-1]  # own data, own seed

    first = run_cli(*BASE, "--seeds", "0", "1", "--total-updates", "200", "--run-dir", str(tmp_path / "b"))
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_cli(*BASE, "--seeds", "0", "1", "--total-updates", "300", "--resume", "--run-dir",
                      str(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    drop = {"perf/updates_per_s"}  # wall-clock, differs run to run
    for a, b in zip(summaries, json.loads(resumed.stdout)):
        rows_a, rows_b = rows(Path(a["run_dir"])), rows(Path(b["run_dir"]))
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows_b] == \
               [{k: v for k, v in r.items() if k not in drop} for r in rows_a]


def test_separate_seeds_and_inconsistent_checkpoints(tmp_path):
    from learner.train import InconsistentResumeError, Run

    out = run_cli(*BASE, "--seeds", "0", "1", "--separate-seeds", "--total-updates", "100", "--run-dir",
                  str(tmp_path / "s"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert [(s["seed"], s["population"]) for s in json.loads(out.stdout)] == [(0, 1), (1, 1)]
    # seed 2 has no checkpoint: resuming [0, 1, 2] as one population is refused, with what to do
    cfg = load_config([*BASE, "--seeds", "0", "1", "2", "--total-updates", "200", "--resume", "--run-dir",
                       str(tmp_path / "s")])
    with pytest.raises(InconsistentResumeError, match="separate-seeds"):
        Run(cfg, cfg.seeds).train()


def test_runs_from_a_d4rl_file_and_reports_a_missing_one(tmp_path):
    from sim_models.datasets import save_d4rl

    from learner.rollout import make_env, rollout
    from learner.train import Run

    env = make_env("gym:Pendulum-v1", "g=12.0", seed=0)
    data = rollout(env, lambda obs: np.zeros(1, np.float32), 300, seed=0)
    path = save_d4rl(tmp_path / "real.hdf5", data.as_dict(), {"source": "test"})
    cfg = load_config([*BASE, "--total-updates", "100", "--dataset", str(path), "--run-dir", str(tmp_path / "r")])
    summary = Run(cfg, 0).train()[0]
    assert summary["real_transitions"] == 300 and summary["updates"] == 100
    missing = run_cli(*BASE, "--dataset", str(tmp_path / "nope.hdf5"), "--run-dir", str(tmp_path / "m"))
    assert missing.returncode == 2 and "nope.hdf5" in missing.stderr


def test_trains_from_a_minari_dataset_and_writes_tensorboard(tmp_path, monkeypatch):
    """--dataset minari:<id> reads through sim_models.datasets.load_dataset (the root from
    MINARI_DATASETS_PATH); --tensorboard writes the progress rows as scalars at their update."""
    pytest.importorskip("minari")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from learner.rollout import make_env, rollout
    from learner.train import Run
    from sim_models.minari_io import export_minari

    env = make_env("gym:Pendulum-v1", "g=12.0", seed=0)
    data = rollout(env, lambda obs: np.zeros(1, np.float32), 300, seed=0).as_dict()
    dataset_id, _ = export_minari(data, "tests/pendulum-v0", tmp_path / "minari", metadata={"source": "test"})
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    cfg = load_config([*BASE, "--total-updates", "200", "--dataset", f"minari:{dataset_id}", "--tensorboard",
                       "--run-dir", str(tmp_path / "r")])
    summary = Run(cfg, 0).train()[0]
    assert summary["real_transitions"] == 300 and summary["updates"] == 200
    events = EventAccumulator(str(Path(summary["run_dir"]) / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"losses/policy", "charts/alpha", "eval/real_return", "perf/updates_per_s"} <= set(tags)
    assert [e.step for e in events.Scalars("eval/real_return")] == [0, 100, 200]
    assert [e.step for e in events.Scalars("losses/policy")] == [100, 200]
    assert "update" not in tags


def test_run_folder_names_a_profile_file_by_its_stem():
    """A real profile given as a TOML path must not nest the seed folders under the path's folders."""
    cfg = TrainConfig(task="stand_still:action_history=2", algorithm="h2o",
                      real_profile="configs/experiments/profiles/moderate_markov.toml")
    assert cfg.run_name == "stand_still:action_history2_h2o_moderate_markov"
    assert "/" not in cfg.run_name
    assert TrainConfig(real_profile="moderate").run_name == "stand_still_h2o_moderate"


def test_sim_buffer_holds_every_sim_step_of_a_run_on_a_small_dataset(tmp_path):
    """The reference sizes the sim FIFO at 10x the dataset, which with a small robot dataset is
    overwritten within a run (a policy that balances then forgets falling); it now holds the run's
    sim steps at least, and keeps the reference's size where that is larger."""
    from learner.train import Run, sim_capacity

    small = load_config([*BASE, "--collect-steps", "50", "--total-updates", "1000", "--run-dir", str(tmp_path)])
    assert sim_capacity(small, 50) == 10 * 100  # 10 epochs x 100 sim steps > 10 x 50 rows
    assert sim_capacity(small, 5_000) == 50_000  # the reference's 10x the dataset
    run = Run(small, [0])
    assert run.members[0].sim.capacity == 1000


class _Killed(RuntimeError):
    """Stands for the process dying part-way through a population's checkpoint."""


@pytest.mark.parametrize("cut_at_save", [1, 2])
def test_a_checkpoint_cut_short_between_members_resumes_from_their_common_point(tmp_path, monkeypatch, cut_at_save):
    """A population writes its members' checkpoints one after another; a process killed after seed
    0's new checkpoint but before seed 1's must still resume (from the last point both hold, or
    afresh when the first save was the one cut short) and reach the uninterrupted run's numbers."""
    import learner.train as train

    def config(run_dir: Path) -> TrainConfig:
        return load_config([*BASE, "--seeds", "0", "1", "--total-updates", "300", "--resume", "--run-dir",
                            str(run_dir)])

    straight = train.Run(config(tmp_path / "a"), [0, 1]).train()

    real_write, saves = train.write_atomic, []

    def dying_write(path, data, *args, **kwargs):
        if Path(path).name == "checkpoint.pt":
            saves.append(Path(path).parent.name)
            if len(saves) == 2 * cut_at_save:  # seed 1's checkpoint of save number `cut_at_save`
                raise _Killed(path)
        return real_write(path, data, *args, **kwargs)

    monkeypatch.setattr(train, "write_atomic", dying_write)
    with pytest.raises(_Killed):
        train.Run(config(tmp_path / "b"), [0, 1]).train()
    monkeypatch.setattr(train, "write_atomic", real_write)
    held = sorted((p.parent.name[-5:], p.name) for p in (tmp_path / "b").glob("*/checkpoint*.pt"))
    if cut_at_save == 1:  # only seed 0 holds a checkpoint: the run starts afresh
        assert held == [("seed0", "checkpoint.pt")]
    else:  # seed 0 holds 200 and (set aside) 100; seed 1 holds only 100, set aside before the cut
        assert held == [("seed0", "checkpoint.prev.pt"), ("seed0", "checkpoint.pt"), ("seed1", "checkpoint.prev.pt")]

    resumed = train.Run(config(tmp_path / "b"), [0, 1]).train()
    drop = {"perf/updates_per_s"}
    for a, b in zip(straight, resumed):
        rows_a, rows_b = rows(Path(a["run_dir"])), rows(Path(b["run_dir"]))
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows_b] == \
               [{k: v for k, v in r.items() if k not in drop} for r in rows_a]
    assert not list((tmp_path / "b").glob("*/checkpoint.prev.pt"))  # set-aside copies gone after a full save

"""The grid driver forms population jobs: cells of one task and algorithm at one resume point,
balanced over the workers; finished cells are skipped; progress is read from the cells' CSVs."""

from __future__ import annotations

import json
from pathlib import Path

from learner.experiments import config as grid_config
from learner.experiments.driver import Progress, cell_updates, make_jobs


def grid(tmp_path: Path, **grid_keys) -> grid_config.GridConfig:
    return grid_config.from_dict({
        "grid": {"algorithms": ["h2o", "sac"], "seeds": [0, 1, 2], "out_dir": str(tmp_path), "total_updates": 100,
                 **grid_keys},
        "gaps": [{"name": "moderate"}, {"name": "severe"}],
        "datasets": [{"name": "medium", "kind": "medium", "steps": 100}]})


def fake_datasets(cfg) -> dict:
    return {(t, g.name, d.name): (Path(f"{g.name}_{d.name}.hdf5"), {}) for t in cfg.tasks for g in cfg.gaps
            for d in cfg.datasets}


def test_cells_of_one_task_and_algorithm_share_a_job(tmp_path):
    cfg = grid(tmp_path)
    jobs, done = make_jobs(cfg, fake_datasets(cfg))
    assert not done and len(jobs) == 2
    for job in jobs:
        assert len(job.cells) == 6 and len({c.key.split("/")[3] for c in job.cells}) == 1  # one algorithm
        assert {c.real_profile for c in job.cells} == {"moderate", "severe"}  # gaps mixed in one population
    assert sorted(c.key for j in jobs for c in j.cells) == sorted(c.key for c in cfg.cells())


def test_population_limit_and_workers_split_jobs(tmp_path):
    cfg = grid(tmp_path, population=4)
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    assert sorted(len(j.cells) for j in jobs) == [3, 3, 3, 3]
    cfg = grid(tmp_path, workers=5)
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    assert len(jobs) == 5 and sum(len(j.cells) for j in jobs) == 12
    cfg = grid(tmp_path, population=1)
    assert all(len(j.cells) == 1 for j in make_jobs(cfg, fake_datasets(cfg))[0])


def test_done_cells_are_skipped_and_resume_points_kept_apart(tmp_path):
    cfg = grid(tmp_path)
    cells = {c.key: c.run_dir(tmp_path) for c in cfg.cells()}
    done_key, resumed_key = "stand_still/moderate/medium/h2o/seed0", "stand_still/moderate/medium/h2o/seed1"
    cells[done_key].mkdir(parents=True)
    (cells[done_key] / "summary.json").write_text(json.dumps({"updates": 100}))
    cells[resumed_key].mkdir(parents=True)
    (cells[resumed_key] / "checkpoint.json").write_text(json.dumps({"updates": 40, "epoch": 4}))
    jobs, done = make_jobs(cfg, fake_datasets(cfg))
    assert done == [done_key]
    alone = [j for j in jobs if any(c.key == resumed_key for c in j.cells)]
    assert len(alone) == 1 and [c.key for c in alone[0].cells] == [resumed_key]


def test_progress_reads_updates_inside_cells(tmp_path):
    cfg = grid(tmp_path, algorithms=["sac"], seeds=[0])
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    run_dir = Path(jobs[0].cells[0].run_dir)
    run_dir.mkdir(parents=True)
    assert cell_updates(run_dir) == 0
    progress = Progress(jobs)
    (run_dir / "progress.csv").write_text("update,epoch\n0,0\n10,1\n30,3\n")
    assert cell_updates(run_dir) == 30
    line = progress.line(cells_done=0)
    assert "30 of 200 cell-updates (15.0%)" in line and "0 of 2 cells done" in line and "ETA" in line


def test_eta_weighs_each_update_by_its_algorithms_cost(tmp_path):
    """Cheap BC cells finishing first must not make the ETA promise a fraction of the real time:
    with BC done (0.1 per update) and H2O (1.0) not started, 1/11 of the work is done."""
    cfg = grid(tmp_path, algorithms=["bc", "h2o"], seeds=[0])
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    progress = Progress(jobs)
    assert progress.total_work == 2 * 100 * 0.1 + 2 * 100 * 1.0
    for job in jobs:
        if job.train["algorithm"] == "bc":
            for c in job.cells:
                Path(c.run_dir).mkdir(parents=True)
                (Path(c.run_dir) / "progress.csv").write_text("update,epoch\n100,1\n")
    assert progress.done_work() == 20.0 and progress.done_updates() == 200
    progress.t0 -= 60.0  # that took a minute: the rest (200 of 220 work units) takes ten more
    eta = progress.line(cells_done=2).split("ETA ")[1]
    h, m, sec = (int(x) for x in eta.split(":"))
    assert 9.9 * 60 <= h * 3600 + m * 60 + sec <= 10.1 * 60, eta


def test_an_algorithm_with_its_own_budget_trains_and_finishes_at_it(tmp_path):
    """algorithm_updates gives one algorithm's cells their own budget: its jobs train to it, its
    cells count as done at it, the progress line and the report use it."""
    import json as _json

    from learner.experiments.report import budget_text, collect

    cfg = grid(tmp_path, algorithm_updates={"sac": 40})
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    budgets = {j.train["algorithm"]: j.train["total_updates"] for j in jobs}
    assert budgets == {"h2o": 100, "sac": 40}
    assert "0 of 840 cell-updates" in Progress(jobs).line(cells_done=0)  # 6 x 100 + 6 x 40
    assert budget_text(cfg) == "Budget 100 updates per cell (sac: 40)"
    for cell in cfg.cells():  # every cell stopped at 40 updates: only sac's are finished
        d = cell.run_dir(tmp_path)
        d.mkdir(parents=True)
        (d / "summary.json").write_text(_json.dumps({"updates": 40, "final_real_return": 1.0,
                                                     "final_sim_return": 2.0, "best_real_return": 3.0}))
    jobs, done = make_jobs(cfg, fake_datasets(cfg))
    assert {k.split("/")[3] for k in done} == {"sac"} and len(done) == 6
    assert {j.train["algorithm"] for j in jobs} == {"h2o"}
    assert {c["algorithm"] for c in collect(cfg)} == {"sac"}


def test_an_algorithm_with_its_own_settings_gets_them_over_the_grids(tmp_path):
    """algorithm_settings: one algorithm's cells get its settings over [train] algo (a grid kept on
    one setting when a default changes mid-way); the others get [train] algo alone."""
    cfg = grid(tmp_path, algorithm_settings={"h2o": {"penalty_clip": 1000.0, "tau": 0.02}})
    cfg.train["algo"] = {"tau": 0.01, "policy_lr": 1e-4}
    jobs, _ = make_jobs(cfg, fake_datasets(cfg))
    algo = {j.train["algorithm"]: j.train.get("algo") for j in jobs}
    assert algo == {"h2o": {"tau": 0.02, "policy_lr": 1e-4, "penalty_clip": 1000.0},
                    "sac": {"tau": 0.01, "policy_lr": 1e-4}}


def test_the_command_lines_algo_settings_beat_the_files_per_algorithm_ones(tmp_path):
    """`--train "algo={penalty_clip=inf}"` on a grid whose file pins h2o's penalty_clip: the
    command line wins (an ablation run on the grid's own config must get what it asked for)."""
    import math

    path = tmp_path / "grid.toml"
    path.write_text(f"""
[grid]
algorithms = ["h2o", "sac"]
out_dir = "{tmp_path}"
algorithm_settings = {{ h2o = {{ penalty_clip = 1000.0, tau = 0.02 }} }}
[[gaps]]
name = "moderate"
[[datasets]]
name = "medium"
kind = "medium"
steps = 100
""")
    cfg = grid_config.load(path, {"train": {"algo": {"penalty_clip": math.inf}}})
    assert cfg.algo_overrides("h2o") == {"penalty_clip": math.inf, "tau": 0.02}
    assert grid_config.load(path).algo_overrides("h2o") == {"penalty_clip": 1000.0, "tau": 0.02}

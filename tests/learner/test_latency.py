"""learner.latency: the robot's actuation latency measured from its recorded transitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from learner.latency import LatencyDataError, estimate, estimate_file, main
from sim_models.collect import CollectConfig, collect
from sim_models.datasets import save_d4rl
from sim_models.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
LATENCY2 = str(REPO / "configs/experiments/profiles/nominal_latency2.toml")


def _linear_robot(lag: int, steps: int = 3000, noise: float = 0.5, seed: int = 0) -> tuple:
    """A damped 3-state linear system whose command acts `lag` steps late, driven by a state
    feedback plus exploration noise, in episodes of 200 steps."""
    rng = np.random.default_rng(seed)
    a_mat = np.array([[1.0, 0.02, 0.0], [0.1, 0.97, 0.01], [0.0, 0.05, 0.95]])
    b_mat = np.array([0.0, 0.05, 0.02])
    obs, act, nxt, ends = [], [], [], []
    while len(obs) < steps:
        s, pending = rng.normal(0, 0.1, 3), [0.0] * lag
        for t in range(200):
            a = -0.5 * s[1] + noise * rng.normal()
            pending.append(a)
            s2 = a_mat @ s + b_mat * pending.pop(0) + rng.normal(0, 0.002, 3)
            obs.append(s)
            act.append([a])
            nxt.append(s2)
            ends.append(t == 199)
            s = s2
    return np.array(obs), np.array(act), np.array(nxt), np.array(ends)


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_the_lag_of_a_linear_system_is_found(lag):
    est = estimate(*_linear_robot(lag), max_lag=4)
    assert est.clear and est.steps == lag, est
    assert est.shares[lag] > 0.5 and est.rows == 3000 - 15 * 4


def test_a_little_exploration_noise_on_a_feedback_policy_is_enough():
    """Closed loop: the feedback makes neighbouring lags correlate; each lag is scored on what it
    explains beyond the others, so noise of 0.05 still names the lag (0.02 is too little)."""
    est = estimate(*_linear_robot(2, noise=0.05))
    assert est.clear and est.steps == 2 and max(est.shares[:2] + est.shares[3:]) < 0.01, est
    assert not estimate(*_linear_robot(2, noise=0.02)).clear


def test_actions_without_exploration_noise_are_called_ambiguous():
    est = estimate(*_linear_robot(1, noise=0.0))
    assert not est.clear and "ambiguous" in est.verdict() and "exploration noise" in est.verdict()


def test_episodes_are_split_where_the_rows_do_not_follow_on():
    """Two runs glued together without a terminal flag: the jump between them is a split, so no
    row borrows the other run's actions as its lagged ones."""
    o, a, n, e = _linear_robot(2, steps=2000)
    e[:] = False  # flags lost; only continuity tells the episodes apart
    assert estimate(o, a, n, e).steps == 2


@pytest.mark.parametrize("profile, lag", [("nominal", 0), ("moderate", 1), (LATENCY2, 2)])
def test_the_robots_bus_latency_is_found_in_its_recorded_data(tmp_path, profile, lag):
    """Real MuJoCo data with the action history in the observation (left out by the task id in
    the file), 2,000 transitions of the medium behaviour."""
    data, meta = collect(CollectConfig(task="stand_still:action_history=2", profile=profile, behaviour="medium",
                                       steps=2000))
    assert load_profile(profile).latency_steps == lag
    path = save_d4rl(tmp_path / "d.hdf5", data, meta)
    est = estimate_file(path)
    assert est.state_dims == 4 and est.clear and est.steps == lag, est


def test_cli_writes_a_simulator_profile_and_refuses_an_ambiguous_one(tmp_path, capsys):
    data, meta = collect(CollectConfig(task="stand_still", profile=LATENCY2, behaviour="medium", steps=2000))
    good = save_d4rl(tmp_path / "noisy.hdf5", data, meta)
    out = tmp_path / "sim.toml"
    assert main([str(good), "--write-profile", str(out)]) == 0
    assert "latency 2 control step(s)" in capsys.readouterr().out
    profile = load_profile(out)
    assert profile.latency_steps == 2 and profile.name == "nominal_latency2_measured"
    nominal = load_profile("nominal").to_dict()  # nothing else of the robot is claimed
    assert {k: v for k, v in profile.to_dict().items() if k not in ("name", "latency_steps")} == {
        k: v for k, v in nominal.items() if k not in ("name", "latency_steps")}

    data, meta = collect(CollectConfig(task="stand_still", profile=LATENCY2, behaviour="expert", noise=0.0, steps=2000))
    flat = save_d4rl(tmp_path / "deterministic.hdf5", data, meta)
    assert main([str(flat), "--write-profile", str(tmp_path / "no.toml"), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip())["clear"] is False and "ambiguous" in captured.err
    assert not (tmp_path / "no.toml").exists()


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    o, a, n, e = _linear_robot(1, steps=400)
    with pytest.raises(LatencyDataError, match="shapes do not match"):
        estimate(o, a[:-1], n, e)
    with pytest.raises(LatencyDataError, match="usable rows"):
        estimate(o[:50], a[:50], n[:50], e[:50])
    o_nan = o.copy()
    o_nan[7, 1] = np.nan
    with pytest.raises(LatencyDataError, match="1 rows hold NaN or inf"):
        estimate(o_nan, a, n, e)
    with pytest.raises(LatencyDataError, match="shapes do not match"):
        estimate(o[:, 0], a, n, e)
    with pytest.raises(LatencyDataError, match="state_dims"):
        estimate(o, a, n, e, state_dims=9)
    assert main([str(tmp_path / "missing.hdf5")]) == 2
    assert "missing.hdf5" in capsys.readouterr().err


def test_the_service_watch_flags_a_simulator_without_the_robots_latency(caplog):
    """Streamed rows (the robot's columns, in chunks as they arrive) of a robot with one step of
    latency, against a latency-free simulator: measured, warned once, shown in the status line."""
    import logging

    from learner.latency import LatencyWatch
    from learner.service.status import _problems

    data, _ = collect(CollectConfig(task="stand_still:action_history=2", profile="moderate", steps=3000))
    n = len(data["rewards"])
    cols = {"obs": data["observations"], "act": data["actions"], "next_obs": data["next_observations"],
            "rew": data["rewards"], "terminated": data["terminals"], "truncated": data["timeouts"],
            "flags": np.zeros(n, np.uint8)}
    cols["flags"][1000:1010] = 1  # a stretch outside the task's episodes (a catch): left out
    watch = LatencyWatch(state_dims=4, sim_latency=0, window_rows=2500, every_rows=1000)
    assert watch.check() is None and watch.status() == {"robot_latency_steps": None, "sim_latency_steps": 0}
    with caplog.at_level(logging.WARNING, logger="learner.latency"):
        for start in range(0, n, 250):
            watch.add("robot0/s1", {k: v[start:start + 250] for k, v in cols.items()})
            watch.check()
    assert watch._rows <= 2500 + 250  # the window keeps the latest rows only
    assert watch.status() == {"robot_latency_steps": 1, "sim_latency_steps": 0}
    warnings = [r.getMessage() for r in caplog.records if "actuation latency" in r.getMessage()]
    assert len(warnings) == 1 and "set latency_steps = 1" in warnings[0]
    assert "robot data shows 1 step(s) of latency, the simulator has 0" in _problems(watch.status())
    assert _problems({"robot_latency_steps": 1, "sim_latency_steps": 1}) == ""


def test_train_warns_when_its_simulator_lacks_the_datas_latency(tmp_path, caplog):
    import logging

    from learner.latency import check_simulator

    data, _ = collect(CollectConfig(task="stand_still:action_history=2", profile="moderate", steps=2000))
    with caplog.at_level(logging.WARNING, logger="learner.latency"):
        assert check_simulator(data, "stand_still:action_history=2", "nominal", "d.hdf5").steps == 1
        assert check_simulator(data, "stand_still:action_history=2",
                               str(REPO / "configs/experiments/profiles/nominal_latency1.toml")).steps == 1
        assert check_simulator(data, "gym:HalfCheetah-v4", "nominal") is None  # not ours: no check
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("d.hdf5 shows an actuation latency of 1 control step(s), "
                                                     "the simulator nominal has 0")

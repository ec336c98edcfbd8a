"""The grid's datasets stay bit-identical to the algorithm the committed results were made with.

Why a frozen copy: results/ tables cite returns of agents trained on datasets that
`learner.experiments.datasets.collect` builds from (spec, task, profile, seed); they are collected
once per grid and cached, so a silent change of the behaviour schedule or the random stream would
make a re-run differ from the published table. `_frozen_collect` is the grid's collection as it
was when the behaviours were unified into sim_models.behaviours (main a885241), kept here verbatim
in behaviour and never to be edited: the live code must reproduce it row for row, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from learner.experiments.datasets import DatasetSpec, collect, controller_return
from learner.rollout import make_env
from sim_models.controller import BalanceController

pytestmark = pytest.mark.timeout(120)
KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def _frozen_episode(env, ctrl, noise: float, rng: np.random.Generator, seed: int, max_steps: int) -> dict:
    obs, _ = env.reset(seed=seed)
    ctrl.reset()
    rows: dict[str, list] = {k: [] for k in KEYS}
    ret = 0.0
    for _ in range(max_steps):
        a = np.clip(np.asarray(ctrl.act(obs), np.float32) + noise * rng.standard_normal(env.action_space.shape),
                    -1.0, 1.0).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        ret += float(r)
        for k, v in zip(rows, (obs, a, r, nxt, term, trunc and not term)):
            rows[k].append(v)
        obs = nxt
        if term or trunc:
            break
    if rows["timeouts"] and not rows["terminals"][-1]:
        rows["timeouts"][-1] = True
    return {"rows": rows, "return": ret, "length": len(rows["rewards"])}


def _frozen_collect(kind: str, steps: int, noise: float, task: str, profile: str, seed: int) -> tuple[dict, dict]:
    env = make_env(task, profile, seed=seed)
    rng = np.random.default_rng(seed)
    detuned, tuned = BalanceController(task, detuned=True), BalanceController(task, detuned=False)
    cols: dict[str, list] = {k: [] for k in KEYS}
    returns, lengths, ep, n = [], [], 0, 0
    while n < steps:
        progress = n / steps
        if kind == "medium_replay":
            ctrl = BalanceController(task, detuned=True)
            ctrl.gain = detuned.gain * (0.4 + (1 - 0.4) * progress)
            ep_noise = 0.8 + (noise - 0.8) * progress
        elif kind == "medium_expert" and ep % 2 == 1:
            ctrl, ep_noise = tuned, noise
        else:
            ctrl, ep_noise = detuned, noise
        out = _frozen_episode(env, ctrl, ep_noise, rng, seed * 100_003 + ep, steps - n)
        for k in cols:
            cols[k].extend(out["rows"][k])
        returns.append(out["return"])
        lengths.append(out["length"])
        n += out["length"]
        ep += 1
    data = {k: np.asarray(v, np.float32) for k, v in cols.items()}
    data["terminals"] = data["terminals"].astype(bool)
    data["timeouts"] = data["timeouts"].astype(bool)
    meta = {"task": task, "profile": profile, "kind": kind, "noise": noise, "seed": seed,
            "transitions": int(n), "episodes": ep, "behaviour_return_mean": float(np.mean(returns)),
            "behaviour_length_mean": float(np.mean(lengths))}
    return data, meta


@pytest.mark.parametrize("kind, steps, noise, task, profile, seed", [
    ("medium", 700, 0.3, "stand_still", "moderate", 0),  # several falls, then a budget cut
    ("medium", 500, 0.3, "move_straight", "severe", 3),
    ("medium", 1300, 0.2, "stand_still", "mild", 1),  # a full-length (truncated) episode
    ("medium_replay", 900, 0.3, "stand_still", "moderate", 2),
    ("medium_expert", 1500, 0.3, "stand_still", "moderate", 1),
])
def test_grid_dataset_is_bit_identical_to_the_frozen_algorithm(kind, steps, noise, task, profile, seed) -> None:
    data, meta = collect(DatasetSpec("d", kind, steps=steps, noise=noise), task, profile, seed=seed)
    want, want_meta = _frozen_collect(kind, steps, noise, task, profile, seed)
    for key in KEYS:
        assert data[key].dtype == want[key].dtype, key
        assert data[key].tobytes() == want[key].tobytes(), f"{key} differs"
    assert meta == want_meta
    assert meta["episodes"] > 1 and data["timeouts"][-1] and not data["terminals"][-1]


def test_reference_returns_are_the_frozen_noise_free_controller_episodes() -> None:
    for detuned in (False, True):
        env = make_env("stand_still", "severe", seed=90_000)
        rng = np.random.default_rng(90_000)
        ctrl = BalanceController("stand_still", detuned=detuned)
        want = float(np.mean([_frozen_episode(env, ctrl, 0.0, rng, 90_000 + i, 10**7)["return"] for i in range(2)]))
        assert controller_return("stand_still", "severe", detuned=detuned, episodes=2) == want


def test_collect_cli_gives_the_grid_data_for_the_same_behaviour_and_seed() -> None:
    from sim_models.collect import CollectConfig
    from sim_models.collect import collect as collect_cli

    grid, _ = collect(DatasetSpec("d", "medium_replay", steps=600), "stand_still", "moderate", seed=2)
    cli, meta = collect_cli(CollectConfig(task="stand_still", profile="moderate", behaviour="medium-replay",
                                          steps=600, seed=2))
    assert meta["behaviour"] == "medium_replay" and meta["noise"] == 0.3
    assert DatasetSpec("d", "medium-replay").kind == "medium_replay"  # the grid takes D4RL's spelling too
    for key in KEYS:
        assert cli[key].tobytes() == grid[key].tobytes(), key

"""`run.controller_noise`: the controller's own task episodes carry seeded Gaussian action noise
(rows a learner can learn from, not only the controller's closed-loop path); clean without it.
Real parts: the robot program, lock-step, against the virtual robot over a real pty."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from onboard.safety import Mode
from task_contract.controller import BalanceController

pytestmark = pytest.mark.timeout(120)


def recorded_rows(make_app, noise: float, seed: int = 0) -> dict[str, np.ndarray]:
    def configure(cfg) -> None:
        cfg.run.controller_noise, cfg.run.seed = noise, seed

    app = make_app(lockstep=True, configure=configure)
    batches: list[dict] = []
    app.recorder.sink = lambda b: batches.append({k: v.copy() for k, v in b.items()}) or True
    app.run(threading.Event(), max_ticks=600)
    app.recorder.flush()
    assert app.fsm.mode is Mode.STAND  # the controller drove throughout, standing
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def noise_in(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Recorded action minus the clean controller's action on the recorded observation (the
    controller is replayed with a reset at each episode start, as the loop resets it)."""
    ctrl, out, start = BalanceController("stand_still"), [], True
    for obs, act, term, trunc in zip(rows["obs"], rows["act"], rows["terminated"], rows["truncated"]):
        if start:
            ctrl.reset()
        out.append(act[0] - np.clip(ctrl.act(obs)[0], -1, 1))
        start = bool(term or trunc)
    return np.asarray(out)


def test_controller_episodes_carry_the_configured_noise_and_none_without_it(make_app):
    clean = recorded_rows(make_app, 0.0)
    assert (clean["flags"] == 0).all() and len(clean["act"]) >= 500  # task episodes from a standing start
    assert np.abs(noise_in(clean)).max() < 1e-5
    noisy = recorded_rows(make_app, 0.2)
    diff = noise_in(noisy)
    assert 0.15 < diff.std() < 0.25 and abs(diff.mean()) < 0.05, (diff.std(), diff.mean())
    again = recorded_rows(make_app, 0.2)
    np.testing.assert_array_equal(again["act"], noisy["act"])  # seeded: the same run again
    other = recorded_rows(make_app, 0.2, seed=1)
    assert not np.array_equal(other["act"], noisy["act"])

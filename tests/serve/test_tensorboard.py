"""The service's `tensorboard` option: the learner's own run, a robot streaming into it over
loopback, then its event files read back (tags, steps, values), also across a restart; and the
writer shared with learner.train warns instead of failing when tensorboard is missing."""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
import pytest

from learner.service import wire
from learner.service.client import RobotLinkClient
from learner.service.config import ServeConfig

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

OFFLINE_ROWS, STREAMED_ROWS = 300, 50


def _offline(path):
    from sim_models.datasets import save_d4rl

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((OFFLINE_ROWS, 4)).astype(np.float32)
    return save_d4rl(path, {"observations": obs, "actions": rng.uniform(-1, 1, (OFFLINE_ROWS, 1)).astype(np.float32),
                            "rewards": rng.standard_normal(OFFLINE_ROWS).astype(np.float32),
                            "next_observations": obs + 0.01, "terminals": np.zeros(OFFLINE_ROWS, bool),
                            "timeouts": np.zeros(OFFLINE_ROWS, bool)}, {"task": "stand_still"})


def _run_service(tmp_path, keys, max_updates: int, stream: bool):
    """The service (cql: no sim workers) until its trainer has made `max_updates`; training waits
    for the robot's streamed rows (min_real_rows above the offline rows) when `stream`."""
    from learner.service.app import Service

    cfg = ServeConfig(bind="tcp://127.0.0.1:*", server_secret_key=str(keys["learner_secret"]),
                      authorized_keys_dir=str(keys["authorized"]), run_dir=str(tmp_path / "run"),
                      datasets=[str(tmp_path / "offline.hdf5")], algorithm="cql", hidden="16-16", batch_real=16,
                      batch_sim=16, min_real_rows=OFFLINE_ROWS + 1 if stream else 32, obs_centre_rows=0,
                      export_every_updates=10, max_updates=max_updates, checkpoint_every_s=0.0, fsync=False,
                      status_every_s=0.2, tensorboard=True).validate()
    service = Service(cfg)
    endpoint = service.start()
    client = RobotLinkClient(endpoint, keys["robot1_secret"], keys["learner_public"])
    try:
        assert client.hello(wire.Hello(robot_id="robot1", schema_hash=wire.schema_hash(), obs_dim=4, act_dim=1,
                                       task=cfg.task, software_version="test")).accepted
        if stream:
            batch = wire.empty_transitions("s1", 0, STREAMED_ROWS, 4, 1)
            batch.obs[:] = np.random.default_rng(1).standard_normal((STREAMED_ROWS, 4))
            client.send(batch)
            assert client.recv_until(wire.Ack).acked_seq == STREAMED_ROWS - 1
        deadline = time.monotonic() + 120
        while service.trainer.stats.updates < max_updates or service.trainer.stats.state != "stopped":
            assert time.monotonic() < deadline and not service.failed, service.trainer.stats
            time.sleep(0.05)
        time.sleep(0.5)  # a few status rows with the robot connected and the trainer done
    finally:
        client.close()
        service.shutdown()
    return tmp_path / "run"


def _scalars(run_dir) -> dict[str, list]:
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_service_writes_training_and_service_scalars(tmp_path, keys):
    _offline(tmp_path / "offline.hdf5")
    run = _run_service(tmp_path, keys, max_updates=30, stream=True)
    got = _scalars(run)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # training tags: at step = updates, steps only grow, the last at the trainer's 30 updates
    for tag in ("losses/policy", "charts/alpha", "charts/q_real_mean", "trainer/updates_per_s", "buffer/real_rows",
                "buffer/real_offline_rows"):
        steps = [s for s, _ in got[tag]]
        assert steps == sorted(set(steps)) and steps[-1] == 30 and steps[0] > 0, (tag, steps)
    assert got["buffer/real_rows"][-1] == (30, OFFLINE_ROWS + STREAMED_ROWS)
    assert got["buffer/real_offline_rows"][-1] == (30, OFFLINE_ROWS)
    # service tags: one point per metrics.jsonl row, at the row's index
    for tag in ("service/store_rows", "service/updates", "service/policy_version", "service/rejected",
                "trials/reports"):
        assert [s for s, _ in got[tag]] == list(range(len(metrics))), tag
    assert got["service/store_rows"][-1][1] == STREAMED_ROWS and got["service/updates"][-1][1] == 30
    assert got["service/policy_version"][-1][1] == 3  # exported every 10 updates
    assert got["robot/robot1/stored_rows"][-1][1] == STREAMED_ROWS and got["robot/robot1/rows"][-1][1] == STREAMED_ROWS
    assert "trainer/sim_return" not in got  # NaN (cql runs no sim): no point rather than a NaN spike

    # a restart continues both axes: service rows after the previous run's, updates from the checkpoint
    n_rows = len(metrics)
    run = _run_service(tmp_path, keys, max_updates=40, stream=False)
    got = _scalars(run)
    metrics = (run / "metrics.jsonl").read_text().splitlines()
    assert [s for s, _ in got["service/store_rows"]] == list(range(len(metrics))) and len(metrics) > n_rows
    steps = [s for s, _ in got["losses/policy"]]
    assert steps == sorted(set(steps)) and steps[-1] == 40 and any(s > 30 for s in steps) and 30 in steps


def test_missing_tensorboard_warns_once_and_writes_nothing(tmp_path, monkeypatch, caplog):
    import learner.tb_writer as tb

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    monkeypatch.setattr(tb, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="learner.tb_writer"):
        assert tb.open_writer(tmp_path) is None and tb.open_writer(tmp_path) is None
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "pip install '.[learner]'" in caplog.records[0].getMessage()
    assert not (tmp_path / "tb").exists()

"""Rows outside the task's episodes never reach the learner's real buffer, nor its robot returns.

Real parts: a TRANSITIONS batch through the protocol's encoder and decoder (the `flags` column),
the service's ingest into a durable store, the trainer's real buffer (torch), its returns board.
"""

from __future__ import annotations

import numpy as np

from learner.service.config import ServeConfig
from learner.service.ingest import Ingest, RealFeed
from learner.service.publisher import Publisher
from learner.service.status import RobotReturns
from learner.service.store import RealStore
from learner.service.trainer import Trainer
from protocol.messages import decode, empty_transitions, encode
from task_contract.episodes import RowFlag

# A policy episode of 4 rows that terminates, 2 rows past the termination, 3 caught rows, 2
# recovering rows, a row with the motors off, then a controller episode of 3 rows.
FLAGS = [0, 0, 0, 0, RowFlag.PAST_TERMINATION, RowFlag.PAST_TERMINATION, RowFlag.CAUGHT, RowFlag.CAUGHT,
         RowFlag.CAUGHT, RowFlag.RECOVERING, RowFlag.RECOVERING, RowFlag.MOTORS_OFF, 0, 0, 0]


def _batch():
    n = len(FLAGS)
    msg = empty_transitions("s0", 0, n, 4, 1)
    msg.obs[:] = np.arange(n, dtype=np.float32)[:, None]
    msg.next_obs[:] = msg.obs + 1
    msg.rew[:] = np.where(np.array(FLAGS) == 0, 10.0, -5000.0)  # rows outside pay like runaways
    msg.terminated[3] = True
    msg.truncated[[8, 10, 11, 14]] = True
    msg.flags[:] = FLAGS
    return decode(encode(msg))


def test_flagged_rows_are_stored_but_never_trained_on(tmp_path):
    store = RealStore(tmp_path / "store")
    store.open()
    feed = RealFeed()
    returns = RobotReturns()

    def sink(robot, stream, cols):
        feed.put(cols)
        returns.add(robot, stream, cols)

    ingest = Ingest(store, 4, 1, sink=sink)
    ingest.ingest("robot0", _batch())
    store.sync()
    ingest.commit()  # the service hands rows on once the store has them durably
    assert sum(b.n for b in store.iter_batches()) == len(FLAGS)  # the store keeps every row
    cfg = ServeConfig(run_dir=str(tmp_path / "run"), algorithm="cql", hidden="8-8", real_capacity=100,
                      checkpoint_every_s=0.0).validate()
    trainer = Trainer(cfg, Publisher(), feed, [])
    trainer._drain_real()
    kept = [i for i, f in enumerate(FLAGS) if f == 0]
    assert len(trainer.real) == len(kept)
    batch = trainer.real.sample(256)
    assert set(batch.obs[:, 0].tolist()) == {float(i) for i in kept}
    assert set(batch.rew.tolist()) == {10.0}
    # Returns: the policy episode (4 rows, terminated) and the controller episode (3 rows).
    assert [(e["return"], e["length"], e["terminated"]) for e in returns.episodes] == [(40.0, 4, True), (30.0, 3, False)]
    store.close()


def test_the_observation_is_centred_on_every_streamed_row_and_training_waits_for_them(tmp_path):
    """The centre is the robot's operating point: the mean of its first obs_centre_rows streamed
    rows whoever drove them (caught and recovering rows included), not the real buffer's
    task-episode rows; until that many have streamed, training waits and says why."""
    feed = RealFeed()
    cfg = ServeConfig(run_dir=str(tmp_path / "run"), algorithm="cql", hidden="8-8", real_capacity=100,
                      min_real_rows=1, checkpoint_every_s=0.0, obs_centre_rows=2 * len(FLAGS) - 3).validate()
    trainer = Trainer(cfg, Publisher(), feed, [])
    def cols():  # the caught, recovering, ... rows lie far from the task-episode rows
        m = _batch()
        obs = m.obs + 100.0 * (np.array(FLAGS) != 0)[:, None].astype(np.float32)
        return {"obs": obs, "act": m.act, "rew": m.rew, "next_obs": m.next_obs, "terminated": m.terminated,
                "flags": m.flags}

    feed.put(cols())
    trainer._drain_real()
    assert "centre the observation (15/27" in trainer._ready()
    feed.put(cols())
    trainer._drain_real()
    assert trainer._ready() == ""
    once = np.arange(len(FLAGS)) + 100.0 * (np.array(FLAGS) != 0)
    rows = np.concatenate([once, once[:len(FLAGS) - 3]])
    trainer._normalise_obs(trainer.real.stats())
    assert trainer.algo.obs_normalised
    np.testing.assert_allclose(trainer.algo.policy.obs_mean[0, 0].numpy(), np.full(4, rows.mean()), rtol=1e-6)
    np.testing.assert_allclose(trainer.algo.critic.obs_std[0, 0].numpy(), [0.5, 0.5, 0.05, 0.5])
    # the task-episode rows alone (the real buffer) would have centred it elsewhere
    assert abs(trainer.real.stats().obs_mean[0].item() - rows.mean()) > 30.0
    assert not trainer._wants_obs_centre()  # set once: a resumed or running learner keeps its own

"""Buffers: fixed real part + FIFO streamed part, exact real-state statistics, bad input, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from learner.buffers import BufferError, TransitionBuffer


def rows(n: int, start: float, obs_dim: int = 2, act_dim: int = 1) -> dict:
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(obs_dim, 1)
    return {"observations": obs, "actions": np.zeros((n, act_dim)), "rewards": obs[:, 0],
            "next_observations": obs + 1, "terminals": np.zeros(n)}


def add(buf, d):
    return buf.add(d["observations"], d["actions"], d["rewards"], d["next_observations"], d["terminals"])


def test_fixed_part_is_never_evicted_and_fifo_part_wraps():
    buf = TransitionBuffer(2, 1, capacity=7)
    assert buf.load_fixed(rows(3, 0.0)) == 3
    add(buf, rows(3, 100.0))
    add(buf, rows(3, 200.0))  # 4 FIFO slots: 100,101,102,200 then 201,202 overwrite 100,101
    obs = buf.arrays()["observations"][:, 0]
    assert len(buf) == 7 and buf.n_fixed == 3
    assert sorted(obs.tolist()) == [0, 1, 2, 102, 200, 201, 202]


def test_a_wrapped_fifo_resumed_into_a_larger_buffer_keeps_its_rows_in_order():
    """A checkpoint of a full, wrapped FIFO loaded into a larger capacity (the sim buffer's capacity
    rule changed between two sittings): new rows append after the newest, none is overwritten and
    no empty slot counts as stored."""
    small = TransitionBuffer(2, 1, capacity=7)
    small.load_fixed(rows(3, 0.0))
    add(small, rows(3, 100.0))
    add(small, rows(3, 200.0))  # FIFO slots now 201, 202, 102, 200 with the cursor on 102
    big = TransitionBuffer(2, 1, capacity=10)
    big.load_state_dict(small.state_dict())
    add(big, rows(2, 300.0))
    obs = big.arrays()["observations"][:, 0]
    assert len(big) == 9 and obs.tolist() == [0, 1, 2, 102, 200, 201, 202, 300, 301]
    add(big, rows(2, 400.0))  # full again: the oldest FIFO row (102) goes first
    assert sorted(big.arrays()["observations"][:, 0].tolist()) == [0, 1, 2, 200, 201, 202, 300, 301, 400, 401]
    same = TransitionBuffer(2, 1, capacity=7)  # the same capacity: the exact state, cursor and all
    same.load_state_dict(small.state_dict())
    add(same, rows(1, 500.0))
    assert sorted(same.arrays()["observations"][:, 0].tolist()) == [0, 1, 2, 200, 201, 202, 500]


def test_real_state_statistics_are_exact_over_stored_rows():
    buf = TransitionBuffer(2, 1, capacity=6)
    buf.load_fixed(rows(2, 0.0))
    add(buf, rows(10, 10.0))  # only the newest 4 fit: 16..19
    mean, std = buf.obs_mean_std()
    stored = np.array([0, 1, 16, 17, 18, 19], np.float64)
    assert np.allclose(mean.numpy(), stored.mean(), atol=1e-4)
    assert np.allclose(std.numpy(), stored.std(), atol=1e-4)


def test_state_change_statistics_are_exact_over_stored_rows():
    buf = TransitionBuffer(2, 1, capacity=6)
    d = rows(8, 0.0)
    d["next_observations"] = d["observations"] + np.arange(8, dtype=np.float32)[:, None] * [1.0, -2.0]
    buf.load_fixed({k: v[:2] for k, v in d.items()})
    add(buf, {k: v[2:] for k, v in d.items()})  # 6 rows offered, 4 fit: changes 4..7 evict 2..3
    stats = buf.stats()
    kept = np.array([0, 1, 4, 5, 6, 7], np.float64)
    assert np.allclose(stats.delta_mean.numpy(), [kept.mean(), -2 * kept.mean()], atol=1e-4)
    assert np.allclose(stats.delta_std.numpy(), [kept.std(), 2 * kept.std()], atol=1e-4)
    assert torch.equal(stats.obs_std, buf.obs_mean_std()[1])


def test_sample_returns_views_of_one_gather_with_consistent_rows():
    buf = TransitionBuffer(2, 1, capacity=50, seed=0)
    buf.load_fixed(rows(40, 0.0))
    b = buf.sample(32)
    assert b.obs.shape == (32, 2) and b.act.shape == (32, 1) and b.rew.shape == (32,) and b.done.shape == (32,)
    assert b.obs.dtype == torch.float32
    assert torch.equal(b.next_obs, b.obs + 1) and torch.equal(b.rew, b.obs[:, 0])
    assert b.obs.untyped_storage().data_ptr() == b.next_obs.untyped_storage().data_ptr()  # views, one block


def test_same_seed_same_samples():
    a, b = TransitionBuffer(2, 1, 50, seed=3), TransitionBuffer(2, 1, 50, seed=3)
    for buf in (a, b):
        buf.load_fixed(rows(40, 0.0))
    assert torch.equal(a.sample(16).obs, b.sample(16).obs)


def test_bad_input_is_refused_with_a_typed_error_and_counted():
    buf = TransitionBuffer(2, 1, capacity=10)
    with pytest.raises(BufferError, match="non-finite"):
        buf.add([[np.nan, 0]], [[0]], [0], [[0, 0]], [0])
    with pytest.raises(BufferError, match="width"):
        buf.add([[0, 0, 0]], [[0]], [0], [[0, 0]], [0])
    with pytest.raises(BufferError, match="empty"):
        buf.sample(4)
    with pytest.raises(BufferError, match="bad offline dataset"):
        buf.load_fixed({"observations": np.zeros((3, 2))})
    assert buf.rejected_batches == 3 and len(buf) == 0


def test_state_dict_round_trip():
    a = TransitionBuffer(2, 1, 20, seed=1)
    a.load_fixed(rows(5, 0.0))
    add(a, rows(4, 50.0))
    b = TransitionBuffer(2, 1, 20, seed=7)
    b.load_state_dict(a.state_dict())
    assert len(b) == 9 and b.n_fixed == 5
    assert torch.equal(a.sample(8).obs, b.sample(8).obs)
    assert torch.allclose(a.obs_mean_std()[1], b.obs_mean_std()[1])


def test_concurrent_append_and_sample():
    buf = TransitionBuffer(2, 1, capacity=500, seed=0)
    buf.load_fixed(rows(10, 0.0))
    errors: list[Exception] = []

    def writer():
        try:
            for i in range(200):
                add(buf, rows(5, 1000.0 + 5 * i))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(300):
        b = buf.sample(16)
        assert torch.equal(b.next_obs, b.obs + 1)  # never a half-written row
    t.join(timeout=30)
    assert not errors and len(buf) == 500

"""The learner's sim workers as Ray actors: the same chunks as local worker processes (same spec,
seed and weights), episodes continuing across chunks, and a lost actor replaced. Ray runs a
one-node cluster on 127.0.0.1 only, for this test."""

from __future__ import annotations

import os

import numpy as np
import pytest

from learner.service.simworkers import RaySimWorkers, SimWorkers, WorkerSpec

ray = pytest.importorskip("ray", reason="ray is not installed (the cluster extra; CI installs it)")

pytestmark = pytest.mark.timeout(240)

SPEC = WorkerSpec(task="stand_still", profile="nominal", obs_dim=4, act_dim=1, hidden="16-16", seed=3)


@pytest.fixture
def local_ray(monkeypatch, tmp_path):
    """A fresh one-node Ray on loopback (a one-machine cluster keeps 127.0.0.1: docs/cluster.md)."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             object_store_memory=100 * 1024 * 1024, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def weights() -> dict:
    import torch

    from learner.networks import TanhGaussianPolicy, parse_hidden

    torch.manual_seed(0)
    return TanhGaussianPolicy(SPEC.obs_dim, SPEC.act_dim, parse_hidden(SPEC.hidden)).state_dict()


def chunks(pool, w: dict, rounds: int) -> list[dict]:
    """`rounds` rounds of one chunk per worker, in worker order within a round."""
    out = []
    for _ in range(rounds):
        pool.submit(w)
        got: list = []
        for _ in range(600):
            got += pool.poll(0.5)
            if len(got) == 2:
                break
        assert len(got) == 2, "the workers did not answer"
        out.append(sorted(got, key=lambda c: float(c[0]["observations"][0].sum())))
    return out


def test_ray_actors_collect_what_local_workers_collect(local_ray):
    w = weights()
    local = SimWorkers(SPEC, 2, 300)
    try:
        expected = chunks(local, w, 2)
    finally:
        local.close()
    remote = RaySimWorkers(SPEC, 2, 300, "auto")
    try:
        got = chunks(remote, w, 2)
        for a_round, b_round in zip(expected, got):
            for (a, a_ret), (b, b_ret) in zip(a_round, b_round):
                for k in a:
                    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
                assert a_ret == b_ret
        # episodes continue across chunks: the second chunk starts where the first ended
        first, second = got[0], got[1]
        ends = {tuple(c["next_observations"][-1]) for c, _ in first if not (c["terminals"][-1] or c["timeouts"][-1])}
        starts = {tuple(c["observations"][0]) for c, _ in second}
        assert ends and ends <= starts
        assert remote.steps_collected == 4 * 300

        # an actor that dies is replaced; the pool goes on collecting
        ray.kill(remote._actors[0])
        remote.submit(w)
        got_after: list = []
        for _ in range(600):
            got_after += remote.poll(0.5)
            if remote.replaced and len(got_after) >= 1 and not remote._pending:
                break
        assert remote.replaced == 1
        remote.submit(w)
        more: list = []
        for _ in range(600):
            more += remote.poll(0.5)
            if not remote._pending:
                break
        assert len(got_after) + len(more) >= 2 and all(np.isfinite(c["rewards"]).all() for c, _ in more)
    finally:
        remote.close()
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"

"""ONNX export: contract (names, shapes, metadata), parity with torch, onnxruntime run, atomic files."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from learner.algorithms import make
from learner.export import PARITY_ATOL, ExportParityError, PolicyMetadata, export_policy

REQUIRED_PROPS = ("h2o.version", "h2o.parent", "h2o.task", "h2o.algorithm", "h2o.obs_dim", "h2o.act_dim",
                  "h2o.action_scale", "h2o.control_hz", "h2o.schema_version", "h2o.created_unix")


def trained_policy(obs_dim=4, act_dim=2):
    algo = make("sac", obs_dim, act_dim, {"hidden": "32-32", "seed": 5})
    policy = algo.policy_for_export()
    with torch.no_grad():  # a policy with non-trivial outputs and a baked-in normalisation
        policy.head.weight.normal_(0, 0.3)
        policy.set_obs_normalisation(torch.arange(obs_dim, dtype=torch.float32), torch.full((obs_dim,), 2.0))
    return policy


def test_export_matches_contract_and_torch(tmp_path):
    policy = trained_policy()
    meta = PolicyMetadata(version=7, task="stand_still", algorithm="h2o", parent="6", action_scale=3.0,
                          control_hz=200.0, created_unix=1_700_000_000)
    out = export_policy(policy, meta, tmp_path / "policy_v7.onnx")
    data = (tmp_path / "policy_v7.onnx").read_bytes()
    assert data == out.onnx_bytes and out.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "policy_v7.onnx.sha256").read_text().split()[0] == out.sha256
    assert out.max_abs_diff <= PARITY_ATOL

    model = onnx.load_from_string(data)
    props = {p.key: p.value for p in model.metadata_props}
    assert set(REQUIRED_PROPS) <= set(props)
    assert props["h2o.version"] == "7" and props["h2o.obs_dim"] == "4" and props["h2o.act_dim"] == "2"
    assert props["h2o.task"] == "stand_still" and float(props["h2o.action_scale"]) == 3.0
    assert {n.op_type for n in model.graph.node} <= {"Sub", "Div", "MatMul", "Add", "Relu", "Split", "Mul",
                                                      "Clip", "Tanh"}

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["obs"]
    assert [o.name for o in sess.get_outputs()] == ["action", "mean", "log_std"]
    for batch in (1, 9):  # dynamic batch
        obs = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32) * 3
        action, mean, log_std = sess.run(None, {"obs": obs})
        with torch.no_grad():
            t_mean, t_log_std = policy.distribution_params(torch.from_numpy(obs))
        assert action.shape == (batch, 2) and np.all(np.abs(action) <= 1)
        np.testing.assert_allclose(action, np.tanh(t_mean.numpy()), atol=1e-5)
        np.testing.assert_allclose(mean, t_mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(log_std, t_log_std.numpy(), atol=1e-5)


def test_export_without_path_returns_bytes_only(tmp_path):
    out = export_policy(trained_policy(3, 1), PolicyMetadata(version=1, task="t", algorithm="sac"))
    assert out.path is None and len(out.onnx_bytes) > 0 and len(out.sha256) == 64
    assert int(out.metadata["h2o.created_unix"]) > 1_600_000_000


def test_diverged_policy_fails_the_parity_check_and_writes_nothing(tmp_path):
    policy = trained_policy()
    with torch.no_grad():
        policy.head.weight[0, 0] = float("nan")  # a diverged policy: NaN outputs never ship
    with pytest.raises(ExportParityError, match="parity"):
        export_policy(policy, PolicyMetadata(version=1, task="t", algorithm="h2o"), tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()


def test_onboard_loader_accepts_the_export():
    """The robot side's own checks (onboard/policy.py: hash, metadata, I/O schema, finite in-bound
    outputs) accept what export_policy writes: the contract in docs/interfaces.md holds end to end."""
    from onboard.policy import PolicyCandidate, PolicySpec, ValidationConfig, build_policy

    from protocol.messages import SCHEMA_VERSION

    out = export_policy(trained_policy(4, 1), PolicyMetadata(version=4, task="stand_still", algorithm="h2o"))
    spec = PolicySpec(task="stand_still", obs_dim=4, act_dim=1, control_hz=200.0, schema_version=str(SCHEMA_VERSION))
    recent = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    policy = build_policy(PolicyCandidate(version=4, sha256=out.sha256, onnx_bytes=out.onnx_bytes), spec,
                          ValidationConfig(inference_budget_ms=1000.0), recent)  # no timing asserted here
    action, logp = policy.act(recent[0])
    assert action.shape == (1,) and np.isfinite(logp)

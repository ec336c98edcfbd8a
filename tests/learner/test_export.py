"""ONNX export: contract (names, shapes, metadata), parity with torch, onnxruntime run, atomic files."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from learner.algorithms import make
from learner.export import PARITY_ATOL, ExportParityError, PolicyMetadata, export_policy
from protocol.version import project_version

REPO = Path(__file__).resolve().parents[2]
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

REQUIRED_PROPS = ("h2o.version", "h2o.parent", "h2o.task", "h2o.algorithm", "h2o.obs_dim", "h2o.act_dim",
                  "h2o.action_scale", "h2o.control_hz", "h2o.schema_version", "h2o.project_version",
                  "h2o.created_unix")


def trained_policy(obs_dim=4, act_dim=2):
    algo = make("sac", obs_dim, act_dim, {"hidden": "32-32", "seed": 5})
    policy = algo.policy_for_export()
    with torch.no_grad():  # a policy with non-trivial outputs and a baked-in normalisation
        policy.head.weight.normal_(0, 0.3)
        policy.set_obs_normalisation(torch.arange(obs_dim, dtype=torch.float32), torch.full((obs_dim,), 2.0))
    return policy


def test_export_matches_contract_and_torch(tmp_path):
    policy = trained_policy(4, 2)
    meta = PolicyMetadata(version=7, task="gym:Pendulum-like", algorithm="h2o", parent="6", action_scale=3.0,
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
    assert props["h2o.task"] == "gym:Pendulum-like" and float(props["h2o.action_scale"]) == 3.0
    # ONNX's own version fields, read by tools that ignore metadata_props (and by onnxruntime)
    assert (model.producer_name, model.producer_version, model.model_version) == ("h2o-learner", project_version(), 7)
    assert props["h2o.project_version"] == project_version() == PROJECT_VERSION
    assert {n.op_type for n in model.graph.node} <= {"Sub", "Div", "MatMul", "Add", "Relu", "Split", "Mul",
                                                      "Clip", "Tanh"}

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    meta_rt = sess.get_modelmeta()
    assert (meta_rt.producer_name, meta_rt.version, meta_rt.custom_metadata_map["h2o.version"]) == ("h2o-learner", 7, "7")
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


def test_a_contract_task_policy_carries_its_layout_and_every_actuator_scale():
    import json

    from task_contract.layout import ACTUATORS_KEY, OBS_LAYOUT_KEY, TASK_ID_KEY

    meta = PolicyMetadata(version=2, task="locomotion:action_history=2,obs_history=1", algorithm="sac",
                          action_scale=5.0)
    out = export_policy(trained_policy(19 * 2 + 6 * 2, 6), meta)
    props = out.metadata
    assert props["h2o.task"] == "locomotion" and props[TASK_ID_KEY] == "locomotion:action_history=2,obs_history=1"
    layout = json.loads(props[OBS_LAYOUT_KEY])
    assert (layout["obs_history"], layout["action_history"], layout["dim"]) == (1, 2, 50)
    assert layout["fields"][:2] == ["pitch", "roll"] and len(layout["fields"]) == 19
    actuators = json.loads(props[ACTUATORS_KEY])
    assert [(a["actuator"], a["mode"], a["scale"], a["unit"]) for a in actuators] == [
        ("left_hip", "position", 0.5, "rad"), ("left_knee", "position", 0.5, "rad"),
        ("left_wheel", "torque", 5.0, "N*m"), ("right_hip", "position", 0.5, "rad"),
        ("right_knee", "position", 0.5, "rad"), ("right_wheel", "torque", 5.0, "N*m")]
    assert actuators[0]["kp"] == 150.0 and actuators[0]["kd"] == 3.0
    paper = json.loads(export_policy(trained_policy(4, 1), PolicyMetadata(1, "stand_still", "sac")).metadata[ACTUATORS_KEY])
    assert [a["action"] for a in paper] == [None, None, 0, None, None, 0]  # legs locked, both wheels from a0


def test_a_policy_whose_width_is_not_its_task_layout_is_not_exported():
    from learner.export import ExportLayoutError

    with pytest.raises(ExportLayoutError, match="stand_still:action_history=2"):
        export_policy(trained_policy(4, 1), PolicyMetadata(1, "stand_still:action_history=2", "sac"))

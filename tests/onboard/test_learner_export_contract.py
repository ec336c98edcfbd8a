"""A policy exported by learner/export.py passes the robot's checks and agrees with torch.

The robot side never imports torch; this test does (it checks the two sides of the ONNX contract
against each other): same deterministic action, same tanh-corrected log-prob.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from learner.export import PolicyMetadata, export_policy  # noqa: E402
from learner.networks import TanhGaussianPolicy  # noqa: E402
from onboard.policy import PolicyCandidate, PolicySpec, ValidationConfig, build_policy  # noqa: E402


def test_exported_policy_validates_and_matches_torch():
    torch.manual_seed(0)
    net = TanhGaussianPolicy(4, 1, hidden=(64, 64))
    exp = export_policy(net, PolicyMetadata(version=9, task="stand_still", algorithm="h2o"))
    spec = PolicySpec(task="stand_still", obs_dim=4, act_dim=1, control_hz=200.0, schema_version=exp.metadata["h2o.schema_version"])
    policy = build_policy(PolicyCandidate(9, exp.sha256, exp.onnx_bytes), spec, ValidationConfig(inference_budget_ms=50), None)
    obs = np.random.default_rng(1).normal(0, 0.3, (8, 4)).astype(np.float32)
    with torch.no_grad():
        a_t, logp_t = net(torch.from_numpy(obs), deterministic=True)
    for i in range(len(obs)):
        a, logp = policy.act(obs[i])
        assert a[0] == pytest.approx(float(a_t[i, 0]), abs=1e-5)
        assert logp == pytest.approx(float(logp_t[i]), abs=1e-4)

"""Issue 17 item 8: policies that misbehave away from the probe observations. Validation probes a
box around the recent observations; a policy that still fails while driving (non-finite output,
stalls) is quarantined for good and the loop falls back to the previous good one; log-probs are
clipped so an extreme log_std never makes a batch unencodable."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.policy import (
    LOGP_CLIP,
    PolicyCandidate,
    PolicyLoader,
    PolicyRejected,
    PolicySpec,
    ValidationConfig,
    build_policy,
)
from onboard.safety import Mode
from protocol.messages import empty_transitions, encode

pytestmark = pytest.mark.timeout(90)

SPEC = PolicySpec(task="stand_still", obs_dim=4, act_dim=1, control_hz=200.0)
CFG = ValidationConfig(inference_budget_ms=50.0)
BALANCE_GAIN = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0


def cand(data: bytes, version: int) -> PolicyCandidate:
    return PolicyCandidate(version=version, sha256=sha256_hex(data), onnx_bytes=data)


def balance(version: int, **kw) -> bytes:
    return mlp_policy_bytes(4, 1, version=version, hidden=0, linear_gain=BALANCE_GAIN, **kw)


def test_nan_half_a_radian_away_is_rejected_at_validation():
    loader = PolicyLoader(SPEC, CFG, recent_obs=lambda: np.zeros((64, 4), np.float32))
    with pytest.raises(PolicyRejected) as exc:  # the old probes (noise 0.1) passed it
        loader.validate_now(cand(balance(2, nan_beyond=0.5), 2))
    assert exc.value.reason == "non_finite"


def test_runtime_nan_quarantines_the_version_and_falls_back(make_app):
    app = make_app()
    for v, kw in ((1, {}), (2, {"nan_beyond": 5.0})):  # v2 passes validation near 0
        data = balance(v, **kw)
        app.loop.activate_policy(app.loader.validate_now(cand(data, v)))
    app.run(threading.Event(), max_ticks=20)
    assert app.loop.policy_version == 2 and app.fsm.mode is Mode.POLICY
    app.loop.policy.act(np.full(4, 6.0, np.float32))  # an observation beyond the probes
    app.run(threading.Event(), max_ticks=5)
    assert app.loop.policy_version == 1  # the previous good policy drives again
    assert 2 in app.loader.quarantined and app.loader.last_result[:2] == (2, False)
    with pytest.raises(PolicyRejected) as exc:  # the same version is never activated again
        app.loader.validate_now(cand(balance(2, nan_beyond=5.0), 2))
    assert exc.value.reason == "quarantined"
    app.loader.validate_now(cand(balance(3), 3))  # a newer version is validated as usual


def test_stalling_policy_gets_a_fault():
    policy = build_policy(cand(balance(4), 4), SPEC, ValidationConfig(inference_budget_ms=50.0,
                                                                      stall_ms=0.0), None)
    obs = np.zeros(4, np.float32)
    policy.act(obs)
    assert policy.fault == ""  # one slow call is load, not the policy
    policy.act(obs)
    assert policy.fault.startswith("stalled")


def test_extreme_log_std_gives_a_clipped_logp_and_an_encodable_batch():
    policy = build_policy(cand(balance(5, log_std=100.0), 5), SPEC, CFG, None)
    rng = np.random.default_rng(0)
    logps = [policy.act(rng.standard_normal(4).astype(np.float32), rng)[1] for _ in range(20)]
    assert all(np.isfinite(lp) and abs(lp) <= LOGP_CLIP for lp in logps)
    batch = empty_transitions("s", 0, 20, 4, 1)
    batch.logp[:] = logps
    encode(batch)  # the old code: inf -> "not encodable", the whole batch dropped

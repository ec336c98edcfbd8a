"""Networks: policy head and log-prob, batched twin critics equal per-critic MLPs, discriminator bounds."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution
from torch.nn import functional as F

from learner.networks import (LOG_STD_MAX, LOG_STD_MIN, Discriminator, TanhGaussianPolicy, TwinQ,
                              parse_hidden)


def test_parse_hidden():
    assert parse_hidden("256-256") == (256, 256) and parse_hidden([32]) == (32,)
    for bad in ("", "a-b", "0-3", "-5"):
        with pytest.raises(ValueError):
            parse_hidden(bad)


def test_policy_init_and_log_std_parametrisation():
    torch.manual_seed(0)
    p = TanhGaussianPolicy(5, 3, (32, 32))
    assert p.log_std_scale.item() == 1.0 and p.log_std_offset.item() == -1.0
    assert p.head.weight.abs().max() <= 1e-2 * math.sqrt(6 / (32 + 3)) and p.head.bias.abs().max() == 0
    mean, log_std = p.distribution_params(torch.randn(4, 5))
    assert torch.allclose(log_std, torch.full_like(log_std, -1.0), atol=0.05)  # raw ~ 0 at init
    with torch.no_grad():
        p.log_std_offset.fill_(50.0)
    assert torch.all(p.distribution_params(torch.randn(4, 5))[1] == LOG_STD_MAX)
    with torch.no_grad():
        p.log_std_offset.fill_(-50.0)
    assert torch.all(p.distribution_params(torch.randn(4, 5))[1] == LOG_STD_MIN)


def test_policy_log_prob_matches_torch_tanh_normal():
    torch.manual_seed(1)
    p = TanhGaussianPolicy(4, 2, (16,))
    with torch.no_grad():
        p.head.weight.normal_(0, 0.5)  # a non-trivial mean and std
    obs = torch.randn(64, 4)
    gen = torch.Generator().manual_seed(3)
    a, logp = p(obs, generator=gen)
    mean, log_std = p.distribution_params(obs)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    pre = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    assert torch.allclose(logp, (Normal(mean, log_std.exp()).log_prob(pre) - ref.transforms[0].log_abs_det_jacobian(pre, a)).sum(-1), atol=1e-3)
    det, _ = p(obs, deterministic=True)
    assert torch.allclose(det, torch.tanh(mean))


def test_policy_normalises_observations_inside():
    torch.manual_seed(2)
    p = TanhGaussianPolicy(3, 1, (8,))
    obs = torch.randn(5, 3)
    out = p.distribution_params(obs)[0]
    p.set_obs_normalisation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0]))
    assert torch.allclose(p.distribution_params(obs * 2 + torch.tensor([1.0, 2.0, 3.0]))[0], out, atol=1e-6)


def _separate_mlps(q: TwinQ, obs: torch.Tensor, act: torch.Tensor, layer_norm: bool) -> list[torch.Tensor]:
    """Each critic of `q` evaluated on its own, layer by layer (torch's LayerNorm where asked)."""
    outs = []
    for i in range(q.n_critics):
        h = torch.cat([obs, act], 1)
        for j, layer in enumerate(q.layers):
            h = h @ layer.weight[i] + layer.bias[i, 0]
            if j < len(q.layers) - 1:
                h = F.relu(torch.nn.LayerNorm(h.shape[-1], elementwise_affine=False)(h) if layer_norm else h)
        outs.append(h.squeeze(-1))
    return outs


@pytest.mark.parametrize("layer_norm", [False, True])
def test_twin_q_equals_separate_mlps(layer_norm):
    torch.manual_seed(3)
    q = TwinQ(4, 2, (16, 8), n_critics=2, layer_norm=layer_norm)
    obs, act = torch.randn(10, 4) * 5.0, torch.randn(10, 2)
    with torch.no_grad():
        q.layers[-1].weight.normal_()  # undo the tiny init so the check is not trivially ~0
    out = q(obs, act)
    assert out.shape == (2, 10)
    for i, ref in enumerate(_separate_mlps(q, obs, act, layer_norm)):
        assert torch.allclose(out[i], ref, atol=1e-5)


def test_twin_q_layer_norm_changes_the_output():
    torch.manual_seed(4)
    q = TwinQ(4, 2, (16, 8), n_critics=2, layer_norm=True)
    obs, act = torch.randn(10, 4) * 5.0, torch.randn(10, 2)
    with torch.no_grad():
        q.layers[-1].weight.normal_()
    plain = TwinQ(4, 2, (16, 8), n_critics=2)
    plain.load_state_dict(q.state_dict())
    assert not torch.allclose(plain(obs, act), q(obs, act), atol=1e-3)


def test_twin_q_detach_params_routes_gradient_to_action_only():
    q = TwinQ(3, 2, (8,))
    act = torch.randn(4, 2, requires_grad=True)
    q(torch.randn(4, 3), act, detach_params=True).sum().backward()
    assert act.grad is not None and all(p.grad is None for p in q.parameters())


def test_discriminator_logits_bounded():
    d = Discriminator(4, (8,))
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(100)
    out = d(torch.randn(50, 2) * 100, torch.randn(50, 2) * 100)
    assert out.shape == (50, 2) and out.abs().max() <= 2.0

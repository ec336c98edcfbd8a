"""H2O's terms on tiny hand-computed cases (the reference update, t6-thu/H2O Sim2realSAC)."""

from __future__ import annotations

import math

import pytest
import torch
from learner_testkit import ACT_DIM, OBS_DIM, TINY, one, set_constant_logits, set_constant_q
from torch.nn import functional as F

from learner.algorithms import make
from learner.algorithms.h2o import LOG_U_FLOOR, U_MAX, log_omega_from_u
from learner.buffers import RealStats


def tiny_h2o(**kw):
    return make("h2o", OBS_DIM, ACT_DIM, {"hidden": TINY, "disc_hidden": TINY, **kw})


def stats(obs_std: float, delta_std: float = 1.0) -> RealStats:
    """Real-data statistics with zero means and the given stds on every dimension."""
    zero = torch.zeros(OBS_DIM)
    return RealStats(zero, torch.full((OBS_DIM,), obs_std), zero, torch.full((OBS_DIM,), delta_std))


def test_omega_is_u_over_sum_u():
    omega = log_omega_from_u(torch.tensor([1.0, 2.0, 3.0, 4.0])).exp()
    assert torch.allclose(omega, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=1e-7)


def test_omega_all_u_at_floor_is_uniform_and_finite():
    # u <= 1e-45 everywhere (negative log-ratios, exact zeros, float32 denormals): reference would
    # give 0/0 under flush-to-zero; here omega = 1/N.
    for u in (torch.tensor([-5.0, -1.0, 0.0, 1e-50]), torch.zeros(4), torch.full((4,), 1e-45)):
        log_omega = log_omega_from_u(u)
        assert torch.isfinite(log_omega).all()
        assert torch.allclose(log_omega.exp(), torch.full((4,), 0.25))


def test_omega_with_some_u_at_floor():
    log_omega = log_omega_from_u(torch.tensor([0.0, 2.0]))
    assert torch.isfinite(log_omega).all()
    assert log_omega[0].item() == pytest.approx(LOG_U_FLOOR - math.log(2.0), abs=1e-4)
    assert log_omega[1].item() == pytest.approx(0.0, abs=1e-6)


def test_gap_weight_from_constant_classifier():
    algo = tiny_h2o()
    sim = one(8, 0)
    algo.set_real_stats(stats(1.0))
    # logits (real, sim) = (0, 1) everywhere: log P_sim/P_real(s'|s,a) = 1 -> u = 1, omega = 1/8
    set_constant_logits(algo.classifiers.d_sas, (0.0, 1.0))
    log_omega, u = algo.gap_weight(sim)
    assert torch.allclose(u, torch.ones(1, 8), atol=1e-6)
    assert torch.allclose(log_omega.exp(), torch.full((1, 8), 1 / 8), atol=1e-6)
    # logits (1, 0): log-ratio -1 -> every u at the floor -> omega uniform, finite
    set_constant_logits(algo.classifiers.d_sas, (1.0, 0.0))
    log_omega, u = algo.gap_weight(sim)
    assert torch.allclose(u, -torch.ones(1, 8), atol=1e-6)
    assert torch.allclose(log_omega.exp(), torch.full((1, 8), 1 / 8), atol=1e-6)
    assert U_MAX == 10.0  # the reference clamp (unreachable with 2*tanh logits: |log-ratio| <= 4)


def test_gap_weight_perturbs_next_state_with_real_state_std():
    algo = tiny_h2o(n_next_state_samples=4)
    sim = one(16, 0)
    algo.set_real_stats(stats(0.0))  # sigma 0: all k samples identical
    _, u0 = algo.gap_weight(sim)
    expected = -algo.classifiers.log_dynamics_ratio(sim.obs, sim.act, sim.next_obs)
    assert torch.allclose(u0, expected, atol=1e-6)
    algo.set_real_stats(stats(1.0))
    _, u1 = algo.gap_weight(sim)
    assert not torch.allclose(u1, expected, atol=1e-4)


def test_normalized_inputs_standardise_states_and_state_changes():
    algo = tiny_h2o(disc_inputs="normalized")
    sim = one(8, 0)
    mean, std = torch.linspace(-1, 1, OBS_DIM), torch.linspace(0.5, 2, OBS_DIM)
    d_mean, d_std = torch.full((OBS_DIM,), 0.01), torch.full((OBS_DIM,), 0.004)
    algo.set_real_stats(RealStats(mean, std, d_mean, d_std))
    x = algo.classifiers.features(sim.obs, sim.act, sim.next_obs)
    assert torch.allclose(x[..., :OBS_DIM], (sim.obs - mean) / std, atol=1e-5)
    assert torch.equal(x[..., OBS_DIM:OBS_DIM + ACT_DIM], sim.act)
    assert torch.allclose(x[..., OBS_DIM + ACT_DIM:], (sim.next_obs - sim.obs - d_mean) / d_std, atol=1e-3)
    # raw inputs are the reference's (s, a, s')
    raw = tiny_h2o().classifiers.features(sim.obs, sim.act, sim.next_obs)
    assert torch.equal(raw, torch.cat([sim.obs, sim.act, sim.next_obs], -1))


def test_normalized_inputs_perturb_next_state_by_the_state_change_std():
    algo = tiny_h2o(disc_inputs="normalized", n_next_state_samples=4)
    sim = one(16, 0)
    algo.set_real_stats(stats(obs_std=1.0, delta_std=0.0))  # state std does not matter here
    _, u0 = algo.gap_weight(sim)
    expected = -algo.classifiers.log_dynamics_ratio(sim.obs, sim.act, sim.next_obs)
    assert torch.allclose(u0, expected, atol=1e-6)


def test_unknown_classifier_inputs_are_refused():
    with pytest.raises(ValueError, match="disc_inputs"):
        tiny_h2o(disc_inputs="whitened")


def test_importance_weight_is_clipped_ratio():
    algo = tiny_h2o()
    sim = one(8, 0)
    set_constant_logits(algo.classifiers.d_sas, (0.0, 1.0))
    assert torch.allclose(algo.importance_weight(sim), torch.full((1, 8), math.exp(-1.0)), atol=1e-6)
    set_constant_logits(algo.classifiers.d_sas, (1.0, 0.0))  # ratio e > 1: never up-weighted
    assert torch.allclose(algo.importance_weight(sim), torch.ones(1, 8))
    set_constant_logits(algo.classifiers.d_sas, (-1.999, 1.999))  # the smallest ratio 2*tanh allows
    w = algo.importance_weight(sim)
    assert torch.allclose(w, torch.full((1, 8), math.exp(-3.998)), rtol=1e-4) and (w >= 1e-5).all()


def test_log_dynamics_ratio_equals_reference_probability_form():
    algo = tiny_h2o()
    b = one(32, 5)
    d_sa, d_sas = algo.classifiers.d_sa, algo.classifiers.d_sas
    with torch.no_grad():
        sa = d_sa(b.obs, b.act)
        p_sa = F.softmax(sa, -1)
        p_sas = F.softmax(d_sas(b.obs, b.act, b.next_obs) + sa, -1)
        ref = torch.log(p_sas[..., 0] * p_sa[..., 1] / (p_sas[..., 1] * p_sa[..., 0]))
    assert torch.allclose(algo.classifiers.log_dynamics_ratio(b.obs, b.act, b.next_obs), ref, atol=1e-5)


def test_penalty_value_hand_computed():
    algo = tiny_h2o(beta=0.01)
    q_real = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])  # [P=1, critics, rows]
    q_sim = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    log_omega = torch.log(torch.tensor([[0.5, 0.5]]))
    pen, clipped = algo.penalty(q_real, q_sim, log_omega)
    pen = pen[0]
    assert clipped.tolist() == [0.0]
    # critic 1: log(0.5 e^0 + 0.5 e^ln3) - mean(1,2,3) = log 2 - 2 ; critic 2: log 1 - 0 = 0
    assert pen[0].item() == pytest.approx(0.01 * (math.log(2.0) - 2.0), abs=1e-7)
    assert pen[1].item() == pytest.approx(0.0, abs=1e-7)
    big, clipped = algo.penalty(q_real, torch.full((1, 2, 2), 1e5), log_omega)
    assert torch.allclose(big, torch.full((1, 2), 0.01 * 1000.0))  # difference clipped to +-1000
    assert clipped.tolist() == [1.0]  # both critics' terms bound: no penalty gradient


def test_penalty_clip_is_an_option_and_a_bound_clip_stops_the_gradient():
    """penalty_clip (departure 9): the reference's 1000 binds at the robot's raw reward scale, and
    where it binds the critics get no penalty gradient; inf lifts it."""
    log_omega = torch.log(torch.tensor([[0.5, 0.5]]))
    for clip, grad_expected in ((1000.0, False), (math.inf, True)):
        algo = tiny_h2o(beta=0.01, penalty_clip=clip)
        q_real = torch.zeros((1, 2, 3))
        q_sim = torch.full((1, 2, 2), 1500.0, requires_grad=True)  # 1,500 above the real rows
        pen, clipped = algo.penalty(q_real, q_sim, log_omega)
        pen.sum().backward()
        assert bool(q_sim.grad.abs().sum() > 0) is grad_expected
        assert clipped.tolist() == [0.0 if grad_expected else 1.0]
        if grad_expected:
            assert torch.allclose(pen, torch.full((1, 2), 0.01 * 1500.0))


def test_td_target_no_entropy_backup():
    algo = tiny_h2o(gamma=0.9, reward_scale=2.0, reward_bias=1.0)
    set_constant_q(algo.critic_target, (3.0, 5.0))
    b = one(6, 0)
    y = algo.td_target(b)
    expected = 2.0 * b.rew + 1.0 + 0.9 * (1.0 - b.done) * 3.0  # min over the twin targets
    assert torch.allclose(y, expected, atol=1e-5)
    assert y.grad_fn is None


def test_td_target_bounded_by_the_largest_return():
    """reward_max: a target above (scale * r_max + bias) / (1 - gamma) is clamped to it, one below
    it is untouched (rows with done keep r' alone)."""
    algo = tiny_h2o(gamma=0.9, reward_scale=2.0, reward_bias=1.0, reward_max=4.0)  # bound 90
    b = one(64, 0)
    b.rew.fill_(4.0)
    set_constant_q(algo.critic_target, (200.0, 300.0))
    y = algo.td_target(b)
    assert torch.allclose(y, torch.where(b.done > 0, torch.full_like(y, 9.0), torch.full_like(y, 90.0)))
    set_constant_q(algo.critic_target, (50.0, 60.0))
    assert torch.allclose(algo.td_target(b), 9.0 + 0.9 * (1.0 - b.done) * 50.0, atol=1e-5)


def test_auto_alpha_loss_and_direction():
    algo = tiny_h2o(alpha_lr=0.1)
    obs = one(64, 0).obs
    torch.manual_seed(0)
    gen_state = algo.gen.get_state()
    _, alpha_loss, stats = algo.actor_and_alpha_losses(obs)
    log_pi = stats["charts/log_pi"].item()
    # log_alpha = 0 at init: loss value is 0, gradient -(mean log pi + H), H = -act_dim
    assert alpha_loss.item() == pytest.approx(0.0, abs=1e-7)
    algo.gen.set_state(gen_state)
    p_loss, a_loss, _ = algo.actor_and_alpha_losses(obs)
    algo.alpha_opt.zero_grad()
    a_loss.backward()
    assert algo.log_alpha.grad.item() == pytest.approx(-(log_pi - ACT_DIM), rel=1e-5)
    before = algo.log_alpha.item()
    algo.alpha_opt.step()
    step = algo.log_alpha.item() - before
    # first Adam step has magnitude lr, against the gradient's sign
    assert step == pytest.approx(-0.1 * math.copysign(1.0, algo.log_alpha.grad.item()), rel=1e-3)


def test_darc_reward_correction():
    # hard backup, so that a zero target critic leaves exactly r + dr (the soft one adds -alpha log pi)
    algo = make("darc", OBS_DIM, ACT_DIM, {"hidden": TINY, "disc_hidden": TINY, "backup_entropy": False})
    b = one(8, 0)
    set_constant_logits(algo.classifiers.d_sas, (1.0, -0.5))
    assert torch.allclose(algo.reward_correction(b), torch.full((1, 8), 1.5), atol=1e-6)
    # and it enters the target as r + dr
    set_constant_q(algo.critic_target, (0.0, 0.0))
    assert torch.allclose(algo.td_target(b, extra_reward=algo.reward_correction(b)), b.rew + 1.5, atol=1e-5)


def test_h2o_plus_expectile_value_loss_and_blended_target():
    algo = make("h2o_plus", OBS_DIM, ACT_DIM, {"hidden": TINY, "disc_hidden": TINY, "expectile": 0.9,
                                               "blend_lambda": 1.0, "gamma": 0.5})
    set_constant_q(algo.critic_target, (2.0, 4.0))
    with torch.no_grad():
        algo.value.layers[-1].weight.zero_()
        algo.value.layers[-1].bias.fill_(3.0)
    b = one(8, 0)
    # diff = min Q' - V = 2 - 3 < 0 -> weight 1 - 0.9 = 0.1 -> loss 0.1 * 1
    assert algo.value_loss(b).item() == pytest.approx(0.1, abs=1e-6)
    # lambda = 1: y = r + gamma (1 - d) V(s')
    assert torch.allclose(algo.blended_target(b), b.rew + 0.5 * (1 - b.done) * 3.0, atol=1e-5)

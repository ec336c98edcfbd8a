"""Algorithm contracts: registry, update keys, gradient routing, determinism, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
from learner_testkit import ACT_DIM, OBS_DIM, TINY, one

from learner.algorithms.base import lift

from learner.algorithms import REGISTRY, UnknownAlgorithmError, make

TINY_CFG = {"hidden": TINY}


def tiny(name: str, **kw):
    cfg = dict(TINY_CFG, **kw)
    if "disc_hidden" in REGISTRY[name].config_cls.__dataclass_fields__:
        cfg.setdefault("disc_hidden", TINY)
    return make(name, OBS_DIM, ACT_DIM, cfg)


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_unknown_algorithm_lists_choices():
    with pytest.raises(UnknownAlgorithmError, match="choices: bc, cql, darc, darc_plus, h2o, h2o_plus, sac"):
        make("td3", OBS_DIM, ACT_DIM)


def test_unknown_config_field_is_rejected():
    with pytest.raises(ValueError, match="unknown H2OConfig field"):
        make("h2o", OBS_DIM, ACT_DIM, {"betaa": 0.1})


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_algorithm_updates_its_networks(name, batches):
    real, sim, d_real, d_sim = batches
    algo = tiny(name)
    critics = [getattr(algo, "critic", None), getattr(algo, "critic_target", None)]
    before = [params(m) for m in [algo.policy, *critics] if m is not None]
    stats = algo.update(real if "real" in algo.critic_sources else None,
                        sim if "sim" in algo.critic_sources else None, disc_real=d_real, disc_sim=d_sim)
    assert algo.step == 1
    assert all(math.isfinite(v) for v in stats.values())
    assert "losses/policy" in stats
    if critics[0] is not None:
        assert {"losses/qf1", "losses/qf2", "losses/alpha", "charts/alpha"} <= set(stats)
    assert all(changed(b, m) for b, m in zip(before, [m for m in [algo.policy, *critics] if m is not None]))
    a = algo.act(real.obs[0].numpy(), deterministic=True)
    assert a.shape == (ACT_DIM,) and (abs(a) <= 1).all()


def test_h2o_logs_every_term(batches):
    stats = tiny("h2o").update(*batches)
    for key in ("losses/d_sa", "losses/d_sas", "charts/d_sa_accuracy", "charts/d_sas_accuracy",
                "losses/qf1_real_bellman", "losses/qf1_sim_bellman", "losses/qf1_penalty", "losses/qf2_penalty",
                "charts/q_real_mean", "charts/q_sim_mean", "charts/is_weight_min", "charts/is_weight_mean",
                "charts/is_weight_max", "charts/omega_min", "charts/omega_max", "charts/u_mean"):
        assert key in stats
    assert 1e-5 <= stats["charts/is_weight_min"] <= stats["charts/is_weight_max"] <= 1.0


def test_d_sa_receives_both_discriminator_losses(batches):
    algo = tiny("h2o")
    real, sim = batches[0], batches[1]
    _, stats = algo.classifiers.losses(lift(real), lift(sim), algo.noise)
    grads = torch.autograd.grad(stats["losses/d_sas"], list(algo.classifiers.d_sa.parameters()), allow_unused=True)
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_policy_loss_does_not_reach_the_critics(batches):
    algo = tiny("h2o")
    policy_loss, _, _ = algo.actor_and_alpha_losses(lift(batches[0]).obs)
    policy_loss.sum().backward()
    assert all(p.grad is None for p in algo.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in algo.policy.parameters())


def test_targets_get_no_gradients(batches):
    algo = tiny("h2o")
    algo.update(*batches)
    assert all(not p.requires_grad and p.grad is None for p in algo.critic_target.parameters())
    # the Polyak step moved them by exactly tau toward the online critic (from the hard copy)
    fresh = tiny("h2o")
    for t, t0, q in zip(algo.critic_target.parameters(), fresh.critic_target.parameters(), algo.critic.parameters()):
        assert torch.allclose(t, t0 + algo.cfg.tau * (q - t0), atol=1e-6)


def test_same_seed_same_result_different_seed_differs(batches):
    a, b, c = tiny("h2o", seed=3), tiny("h2o", seed=3), tiny("h2o", seed=4)
    for _ in range(3):
        sa, sb, sc = a.update(*batches), b.update(*batches), c.update(*batches)
    assert sa == sb and sa != sc
    assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), b.policy.parameters()))


def test_state_dict_round_trip_restores_in_place(batches):
    a = tiny("h2o", seed=1)
    for _ in range(2):
        a.update(*batches)
    sd = a.state_dict()
    b = tiny("h2o", seed=9)
    ids = [id(p) for p in b.critic.parameters()]
    opt_ids = [id(p) for g in b.critic_opt.param_groups for p in g["params"]]
    b.load_state_dict(sd)
    assert ids == [id(p) for p in b.critic.parameters()] == opt_ids  # optimisers still see the same params
    assert b.step == a.step == 2 and b.log_alpha.item() == a.log_alpha.item()
    assert a.update(*batches) == b.update(*batches)  # identical continuation (nets, targets, Adam, noise)
    with pytest.raises(ValueError, match="checkpoint is for 'h2o'"):
        tiny("sac").load_state_dict(sd)


def test_classifiers_stay_near_chance_on_identical_data():
    algo = tiny("h2o", disc_lr=1e-3)
    for i in range(150):
        real, sim = one(64, 2 * i), one(64, 2 * i + 1)
        stats = algo.classifiers.update(real, sim, algo.noise)
    held_out = one(256, 10_000)
    w = algo.importance_weight(held_out)
    assert 0.3 < stats["charts/d_sas_accuracy"].item() < 0.7
    assert w.mean().item() > 0.5  # no confident "sim" verdict on data drawn like the real data


def test_classifiers_separate_shifted_dynamics():
    algo = tiny("h2o", disc_lr=1e-3)
    for i in range(150):
        real, sim = one(64, 2 * i), one(64, 2 * i + 1, shift=0.5)
        algo.classifiers.update(real, sim, algo.noise)
    w_real = algo.importance_weight(one(256, 20_000)).mean()
    w_sim = algo.importance_weight(one(256, 20_001, shift=0.5)).mean()
    assert w_sim < w_real  # sim transitions look less "real"


def test_policy_for_export_is_a_cpu_copy():
    algo = tiny("h2o")
    p = algo.policy_for_export()
    assert p is not algo.policy and next(p.parameters()).device.type == "cpu" and not p.training


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_missing_batch_is_a_clear_error(name, batches):
    from learner.algorithms.base import MissingBatchError

    algo = tiny(name)
    with pytest.raises(MissingBatchError, match=name):
        algo.update(None if "real" in algo.critic_sources else batches[0],
                    None if "sim" in algo.critic_sources else batches[1])
    assert algo.step == 0


def test_averaged_policy_is_the_running_average_and_what_is_deployed(batches):
    """policy_ema: avg <- avg + rate * (online - avg) after every update; the average acts
    deterministically and is exported, the online policy explores; checkpoints keep it."""
    import numpy as np

    rate = 0.25
    a, plain = tiny("h2o", seed=2, policy_ema=rate), tiny("h2o", seed=2)
    expected = params(a.policy)
    for _ in range(3):
        assert a.update(*batches) == plain.update(*batches)  # the average does not touch learning
        expected = [e + rate * (p.detach() - e) for e, p in zip(expected, a.policy.parameters())]
    assert all(torch.allclose(e, p) for e, p in zip(expected, a.policy_avg.parameters()))
    assert changed(expected, a.policy)  # online and average differ after a few updates

    obs = np.random.default_rng(0).standard_normal((1, 4, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        avg_act = a.policy_avg(torch.as_tensor(obs), None)[0].numpy()
        online_act = a.policy(torch.as_tensor(obs), None)[0].numpy()
    assert np.allclose(a.act_population(obs, deterministic=True), avg_act)
    assert np.allclose(a.act_population(obs, deterministic=True, online=True), online_act)
    assert not np.allclose(avg_act, online_act)
    exported = a.policy_for_export()
    assert all(torch.equal(x, y) for x, y in zip(exported.parameters(), a.policy_avg.member(0).parameters()))

    b = tiny("h2o", seed=5, policy_ema=rate)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(a.policy_avg.parameters(), b.policy_avg.parameters()))
    c = tiny("h2o", seed=5, policy_ema=rate)
    c.load_state_dict(plain.state_dict())  # a checkpoint from before the average: it starts at the policy
    assert all(torch.equal(x, y) for x, y in zip(c.policy.parameters(), c.policy_avg.parameters()))
    with pytest.raises(ValueError, match="policy_ema"):
        tiny("sac", policy_ema=1.5)

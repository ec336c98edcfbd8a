"""The baselines' contracts from issue 13: backup choice, equal critic rows, config copies,
the reference's classifier loss, the logged u, and behaviour cloning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learner_testkit import ACT_DIM, OBS_DIM, TINY, one, set_constant_logits, synthetic_batch
from torch.nn import functional as F

from learner.algorithms import REGISTRY, make
from learner.algorithms.base import lift, sample_update_batches
from learner.algorithms.darc import DARCConfig
from learner.buffers import TransitionBuffer


def tiny(name: str, **kw):
    cfg = {"hidden": TINY, **kw}
    if "disc_hidden" in {f for f in REGISTRY[name].config_cls.__dataclass_fields__}:
        cfg.setdefault("disc_hidden", TINY)
    return make(name, OBS_DIM, ACT_DIM, cfg)


@pytest.mark.parametrize("name, soft", [("sac", True), ("darc", True), ("darc_plus", True), ("h2o", False),
                                        ("cql", False)])
def test_backup_defaults(name, soft):
    assert tiny(name).cfg.backup_entropy is soft


def test_soft_backup_subtracts_alpha_log_pi(batches):
    sim = lift(batches[1])
    soft, hard = tiny("sac"), tiny("sac", backup_entropy=False)
    state = soft.gen.get_state()
    y_soft = soft.td_target(sim)
    hard.gen.set_state(state)
    y_hard = hard.td_target(sim)
    soft.gen.set_state(state)
    _, next_logp = soft.sample_policy(sim.next_obs)
    expected = y_hard - soft.cfg.gamma * (1 - sim.done) * soft.log_alpha.exp()[:, None] * next_logp
    assert torch.allclose(y_soft, expected, atol=1e-5)


def _buffer(seed: int, shift: float = 0.0) -> TransitionBuffer:
    b = synthetic_batch(500, seed, shift)
    buf = TransitionBuffer(OBS_DIM, ACT_DIM, 1000, seed=seed)
    buf.add(b.obs, b.act, b.rew, b.next_obs, b.done)
    return buf


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_critic_gets_the_same_number_of_rows(name):
    real, sim = _buffer(1), _buffer(2, 0.5)
    kw = sample_update_batches(tiny(name), real.sample, sim.sample, 128, 128, 256)
    critic_rows = sum(len(b) for k, b in kw.items() if k in ("real_batch", "sim_batch") and b is not None)
    assert critic_rows == 256
    if name == "darc":
        assert kw["real_batch"] is None and len(kw["sim_batch"]) == 256 and len(kw["disc_real"]) == 256
    tiny(name).update(**kw)  # the batches are what update() accepts


def test_darc_plus_does_not_change_the_callers_config():
    c = DARCConfig(hidden=TINY, disc_hidden=TINY)
    plus = make("darc_plus", OBS_DIM, ACT_DIM, c)
    darc = make("darc", OBS_DIM, ACT_DIM, c)
    assert plus.cfg.train_on_real and not c.train_on_real and not darc.cfg.train_on_real
    assert darc.critic_sources == ("sim",) and plus.critic_sources == ("real", "sim")


def test_classifier_loss_is_the_sum_of_two_means():
    algo = tiny("h2o", disc_noise_std=0.0)
    real, sim = one(48, 1), one(80, 2, shift=0.5)  # unequal halves on purpose
    loss, stats = algo.classifiers.losses(real, sim, algo.noise)
    clf = algo.classifiers

    def ce(b, label):
        sa = clf.d_sa(b.obs, b.act)[0]
        sas = clf.d_sas(b.obs, b.act, b.next_obs)[0] + sa
        y = torch.full((b.rows,), label, dtype=torch.long)
        return F.cross_entropy(sa, y), F.cross_entropy(sas, y)

    (sa_r, sas_r), (sa_s, sas_s) = ce(real, 0), ce(sim, 1)
    assert stats["losses/d_sa"].item() == pytest.approx((sa_r + sa_s).item(), rel=1e-5)
    assert stats["losses/d_sas"].item() == pytest.approx((sas_r + sas_s).item(), rel=1e-5)
    assert loss.item() == pytest.approx((sa_r + sa_s + sas_r + sas_s).item(), rel=1e-5)


def test_u_mean_is_logged_after_the_floor(batches):
    algo = tiny("h2o")
    # D_sas says every sim transition is more likely real: log P_sim/P_real = -1 -> u = -1 before the floor
    set_constant_logits(algo.classifiers.d_sas, (1.0, 0.0))
    stats = algo.update(*batches)
    assert 0.0 <= stats["charts/u_mean"] <= 1e-44
    assert stats["charts/u_at_floor_fraction"] == 1.0


def test_bc_imitates_the_data_policy():
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.5, 0.5, (OBS_DIM, ACT_DIM))
    obs = rng.standard_normal((2000, OBS_DIM)).astype(np.float32)
    act = np.tanh(obs @ w).astype(np.float32)
    buf = TransitionBuffer(OBS_DIM, ACT_DIM, 2001, seed=0)
    buf.load_fixed({"observations": obs, "actions": act, "rewards": np.zeros(2000), "next_observations": obs,
                    "terminals": np.zeros(2000)})
    bc = tiny("bc", policy_lr=3e-3)
    assert bc.uses_real and not bc.uses_sim and not bc.uses_classifiers
    first = bc.update(**sample_update_batches(bc, buf.sample, buf.sample, 128, 128, 0))["losses/bc_mse"]
    for _ in range(300):
        last = bc.update(**sample_update_batches(bc, buf.sample, buf.sample, 128, 128, 0))["losses/bc_mse"]
    assert last < 0.1 * first
    test_obs = rng.standard_normal((200, OBS_DIM)).astype(np.float32)
    err = np.abs(bc.act(test_obs, deterministic=True) - np.tanh(test_obs @ w)).mean()
    assert err < 0.05
    exported = bc.policy_for_export()
    a, _ = exported(torch.as_tensor(test_obs), deterministic=True)
    assert np.allclose(a.detach().numpy(), bc.act(test_obs, deterministic=True), atol=1e-6)

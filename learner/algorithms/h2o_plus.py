"""H2O+: H2O without the omega penalty, with an IQL-style value on real data in a blended target.

Niu et al., "H2O+: An Improved Framework for Hybrid Offline-and-Online RL with Dynamics Gaps",
ICRA 2025, https://arxiv.org/abs/2309.12716 (as summarised in /work/shared/reference/h2o_algorithm.md):
    V(s): expectile regression of min_i Q_i'(s, a) on the REAL batch (expectile 0.5; 0.9 on the robot)
    y = lambda * (r + gamma (1-d) V(s'))  +  (1 - lambda) * (r + gamma (1-d) (min Q'(s', a') - alpha log pi(a'|s')))
    critic loss = real Bellman + w-weighted sim Bellman (H2O's importance weight kept), no penalty.
Departures: the blended target is used for real and sim rows alike; V is a 256-256 MLP trained
with Adam 3e-4 in the same backward pass as the actor and critics (disjoint parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig, cat_batches, make_adam, seeded_init
from learner.algorithms.classifiers import attach_classifiers
from learner.buffers import Batch
from learner.networks import mlp, parse_hidden


@dataclass
class H2OPlusConfig(SACCoreConfig):
    expectile: float = 0.5  # IQL expectile of the real-data value (0.9 on the robot)
    blend_lambda: float = 0.5  # weight of the V-based target (0.1 on the robot)
    value_lr: float = 3e-4
    disc_hidden: str = "256-256"
    disc_lr: float = 3e-4
    disc_noise_std: float = 0.1


class H2OPlus(OffPolicyAlgorithm):
    name = "h2o_plus"
    config_cls = H2OPlusConfig
    uses_real = True
    uses_sim = True
    uses_classifiers = True
    critic_sources = ("real", "sim")

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu"):
        super().__init__(obs_dim, act_dim, cfg, device)
        self.classifiers = attach_classifiers(self)
        with seeded_init(self.cfg.seed + 2):
            self.value = mlp(obs_dim, parse_hidden(self.cfg.hidden), 1).to(self.device)
        self.value_opt = make_adam(self.value.parameters(), self.cfg.value_lr)
        self._modules["value"] = self.value
        self._optims["value_opt"] = self.value_opt

    def blended_target(self, batch: Batch) -> torch.Tensor:
        """lambda * (r + gamma (1-d) V(s')) + (1-lambda) * soft SAC target (entropy included)."""
        with torch.no_grad():
            next_act, next_logp = self.policy(batch.next_obs, generator=self.gen)
            soft_next = self.critic_target(batch.next_obs, next_act).min(0).values - self.log_alpha.exp() * next_logp
            v_next = self.value(batch.next_obs).squeeze(-1)
            rew = self.cfg.reward_scale * batch.rew + self.cfg.reward_bias
            lam, disc = self.cfg.blend_lambda, self.cfg.gamma * (1.0 - batch.done)
            return lam * (rew + disc * v_next) + (1.0 - lam) * (rew + disc * soft_next)

    def value_loss(self, real: Batch) -> torch.Tensor:
        """Expectile regression of V(s) toward min_i Q_i'(s, a_data) on real data."""
        with torch.no_grad():
            q_data = self.critic_target(real.obs, real.act).min(0).values
        diff = q_data - self.value(real.obs).squeeze(-1)
        weight = torch.abs(self.cfg.expectile - (diff < 0).float())
        return (weight * diff * diff).mean()

    def update(self, real_batch: Batch, sim_batch: Batch, disc_real: Batch | None = None,
               disc_sim: Batch | None = None) -> dict[str, float]:
        self.check_batches(real_batch, sim_batch, disc_real, disc_sim)
        stats = self.classifiers.update(real_batch if disc_real is None else disc_real,
                                        sim_batch if disc_sim is None else disc_sim, self.gen)
        w = self.classifiers.log_dynamics_ratio(sim_batch.obs, sim_batch.act, sim_batch.next_obs).exp().clamp(1e-5, 1.0)
        both = cat_batches(real_batch, sim_batch)
        n_real = len(real_batch)
        y = self.blended_target(both)
        q = self.critic(both.obs, both.act)
        real_bellman = ((q[:, :n_real] - y[:n_real]) ** 2).mean(1)
        sim_bellman = (w * (q[:, n_real:] - y[n_real:]) ** 2).mean(1)
        v_loss = self.value_loss(real_batch)
        policy_loss, alpha_loss, actor_stats = self.actor_and_alpha_losses(both.obs)
        self.value_opt.zero_grad(set_to_none=True)
        self.optimise((real_bellman + sim_bellman).sum() + v_loss, policy_loss, alpha_loss)
        self.value_opt.step()
        for i in range(q.shape[0]):
            stats[f"losses/qf{i + 1}"] = real_bellman[i] + sim_bellman[i]
            stats[f"losses/qf{i + 1}_real_bellman"] = real_bellman[i]
            stats[f"losses/qf{i + 1}_sim_bellman"] = sim_bellman[i]
        stats.update(actor_stats)
        stats.update({"losses/value": v_loss, "charts/q_real_mean": q[:, :n_real].detach().mean(),
                      "charts/q_sim_mean": q[:, n_real:].detach().mean(), "charts/target_q_mean": y.mean(),
                      "charts/is_weight_min": w.min(), "charts/is_weight_mean": w.mean(),
                      "charts/is_weight_max": w.max()})
        return self.to_floats(stats)

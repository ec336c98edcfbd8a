"""H2O+: H2O without the omega penalty, with an IQL-style value on real data in a blended target.

Niu et al., "H2O+: An Improved Framework for Hybrid Offline-and-Online RL with Dynamics Gaps",
ICRA 2025, https://arxiv.org/abs/2309.12716, in short:
    V(s): expectile regression of min_i Q_i'(s, a) on the REAL batch (expectile 0.5; 0.9 on the robot)
    y = lambda * (r + gamma (1-d) V(s'))  +  (1 - lambda) * (r + gamma (1-d) (min Q'(s', a') - alpha log pi(a'|s')))
    critic loss = real Bellman + w-weighted sim Bellman (H2O's importance weight kept), no penalty.
Departures: the blended target is used for real and sim rows alike; V is a 256-256 MLP trained
with Adam 3e-4 in the same backward pass as the actor and critics (disjoint parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig, cat_batches, make_adam
from learner.algorithms.classifiers import ClassifierConfig, attach_classifiers
from learner.buffers import Batch
from learner.networks import PopulationMLP, mlp, parse_hidden


@dataclass
class H2OPlusConfig(ClassifierConfig, SACCoreConfig):
    expectile: float = 0.5  # IQL expectile of the real-data value (0.9 on the robot)
    blend_lambda: float = 0.5  # weight of the V-based target (0.1 on the robot)
    value_lr: float = 3e-4


class H2OPlus(OffPolicyAlgorithm):
    name = "h2o_plus"
    config_cls = H2OPlusConfig
    uses_real = True
    uses_sim = True
    uses_classifiers = True
    critic_sources = ("real", "sim")
    backup_note = "soft (the SAC half of its blended target)"

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu", *, members=None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        self.classifiers = attach_classifiers(self)
        hidden = parse_hidden(self.cfg.hidden)
        self.value = PopulationMLP.from_members(self.per_member(lambda: mlp(obs_dim, hidden, 1), seed_offset=2)
                                                ).to(self.device)
        self.value_opt = make_adam(self.value.parameters(), self.cfg.value_lr)
        self._modules["value"] = self.value
        self._optims["value_opt"] = self.value_opt

    def blended_target(self, batch: Batch) -> torch.Tensor:
        """lambda * (r + gamma (1-d) V(s')) + (1-lambda) * soft SAC target (entropy included), [P, B]."""
        with torch.no_grad():
            next_act, next_logp = self.sample_policy(batch.next_obs)
            soft_next = (self.critic_target(batch.next_obs, next_act).amin(1)
                         - self.log_alpha.exp()[:, None] * next_logp)
            v_next = self.value_of(batch.next_obs)
            rew = self.cfg.reward_scale * batch.rew + self.cfg.reward_bias
            lam, disc = self.cfg.blend_lambda, self.cfg.gamma * (1.0 - batch.done)
            return lam * (rew + disc * v_next) + (1.0 - lam) * (rew + disc * soft_next)

    def value_of(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), [P, B], on the observation normalised as the critics read it."""
        return self.value((obs - self.critic.obs_mean) / self.critic.obs_std).squeeze(-1)

    def value_loss(self, real: Batch) -> torch.Tensor:
        """Expectile regression of V(s) toward min_i Q_i'(s, a_data) on real data, per member [P]."""
        with torch.no_grad():
            q_data = self.critic_target(real.obs, real.act).amin(1)
        diff = q_data - self.value_of(real.obs)
        weight = torch.abs(self.cfg.expectile - (diff < 0).float())
        return (weight * diff * diff).mean(1)

    def _update(self, real: Batch, sim: Batch, disc_real: Batch | None, disc_sim: Batch | None) -> dict:
        stats = self.classifiers.update(real if disc_real is None else disc_real,
                                        sim if disc_sim is None else disc_sim, self.noise)
        w = self.classifiers.log_dynamics_ratio(sim.obs, sim.act, sim.next_obs).exp().clamp(1e-5, 1.0)
        both = cat_batches(real, sim)
        n_real = real.rows
        y = self.blended_target(both)
        q = self.critic(both.obs, both.act)  # [P, n_critics, B]
        real_bellman = (q[..., :n_real] - y[:, None, :n_real]).square().mean(-1)
        sim_bellman = (w[:, None] * (q[..., n_real:] - y[:, None, n_real:]).square()).mean(-1)
        v_loss = self.value_loss(real)
        policy_loss, alpha_loss, actor_stats = self.actor_and_alpha_losses(both.obs)
        self.optimise((real_bellman + sim_bellman).sum(1) + v_loss, policy_loss, alpha_loss,
                      extra_opts=(self.value_opt,))
        self.critic_stats(stats, {"": real_bellman + sim_bellman, "_real_bellman": real_bellman,
                                  "_sim_bellman": sim_bellman})
        stats.update(actor_stats)
        stats.update({"losses/value": v_loss, "charts/q_real_mean": q[..., :n_real].detach().mean((1, 2)),
                      "charts/q_sim_mean": q[..., n_real:].detach().mean((1, 2)), "charts/target_q_mean": y.mean(1),
                      "charts/is_weight_min": w.amin(1), "charts/is_weight_mean": w.mean(1),
                      "charts/is_weight_max": w.amax(1)})
        return stats

"""CQL(H) on the real (offline) data only: the paper's offline baseline.

Kumar et al., "Conservative Q-Learning for Offline RL", NeurIPS 2020, https://arxiv.org/abs/2006.04779
(SimpleSAC conservative_sac.py settings, as used by the H2O authors): penalty
    alpha' * ( T logsumexp_a Q(s,a)/T  -  Q(s, a_data) ),
the logsumexp estimated by importance sampling with n uniform actions, n policy actions at s and
n policy actions at s' (their log-densities subtracted). Fixed alpha' (no Lagrange variant).
Backup: hard (no entropy term in the target, backup_entropy=False), as the reference CQL runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig
from learner.buffers import Batch


@dataclass
class CQLConfig(SACCoreConfig):
    cql_weight: float = 5.0  # alpha' (reference cql_min_q_weight for CQL)
    cql_n_actions: int = 10  # sampled actions per state for each of the three proposals
    cql_temperature: float = 1.0


class CQL(OffPolicyAlgorithm):
    name = "cql"
    config_cls = CQLConfig
    uses_real = True
    critic_sources = ("real",)

    def update(self, real_batch: Batch, sim_batch: Batch | None = None, **_) -> dict[str, float]:
        self.check_batches(real_batch, sim_batch)
        b = real_batch
        y = self.td_target(b)
        q_data = self.critic(b.obs, b.act)
        bellman = ((q_data - y) ** 2).mean(1)
        penalty = self.conservative_penalty(b, q_data)
        policy_loss, alpha_loss, stats = self.actor_and_alpha_losses(b.obs)
        self.optimise((bellman + penalty).sum(), policy_loss, alpha_loss)
        for i in range(q_data.shape[0]):
            stats[f"losses/qf{i + 1}"] = bellman[i] + penalty[i]
            stats[f"losses/qf{i + 1}_bellman"] = bellman[i]
            stats[f"losses/qf{i + 1}_cql_penalty"] = penalty[i]
        stats["charts/q_real_mean"] = q_data.detach().mean()
        stats["charts/target_q_mean"] = y.mean()
        return self.to_floats(stats)

    def conservative_penalty(self, b: Batch, q_data: torch.Tensor) -> torch.Tensor:
        """Per critic: cql_weight * (T logsumexp over 3n proposals - mean Q(s, a_data))."""
        n, bs, t = self.cfg.cql_n_actions, len(b), self.cfg.cql_temperature
        obs_rep = b.obs.unsqueeze(0).expand(n, -1, -1).reshape(n * bs, -1)
        next_rep = b.next_obs.unsqueeze(0).expand(n, -1, -1).reshape(n * bs, -1)
        with torch.no_grad():
            rand_act = torch.rand((n * bs, self.act_dim), generator=self.gen, device=self.device) * 2 - 1
            pi_act, pi_logp = self.policy(torch.cat([obs_rep, next_rep]), generator=self.gen)
        log_uniform = self.act_dim * math.log(0.5)
        obs3 = torch.cat([obs_rep, obs_rep, obs_rep])
        q3 = self.critic(obs3, torch.cat([rand_act, pi_act]))  # [n_critics, 3*n*bs]
        log_dens = torch.cat([torch.full((n * bs,), log_uniform, device=self.device), pi_logp])
        cat_q = (q3 - log_dens).reshape(q3.shape[0], 3 * n, bs)
        lse = t * torch.logsumexp(cat_q / t, dim=1)  # [n_critics, bs]
        return self.cfg.cql_weight * (lse.mean(1) - q_data.mean(1))

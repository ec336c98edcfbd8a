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

    def _update(self, real: Batch, sim: Batch | None = None, disc_real=None, disc_sim=None) -> dict:
        y = self.td_target(real)  # [P, B]
        q_data = self.critic(real.obs, real.act)  # [P, n_critics, B]
        bellman = (q_data - y[:, None]).square().mean(-1)  # [P, n_critics]
        penalty = self.conservative_penalty(real, q_data)
        policy_loss, alpha_loss, stats = self.actor_and_alpha_losses(real.obs)
        self.optimise((bellman + penalty).sum(1), policy_loss, alpha_loss)
        self.critic_stats(stats, {"": bellman + penalty, "_bellman": bellman, "_cql_penalty": penalty})
        stats["charts/q_real_mean"] = q_data.detach().mean((1, 2))
        stats["charts/target_q_mean"] = y.mean(1)
        return stats

    def conservative_penalty(self, b: Batch, q_data: torch.Tensor) -> torch.Tensor:
        """Per member and critic [P, n_critics]: cql_weight * (T logsumexp over 3n proposals - mean Q(s, a_data))."""
        n, bs, t, p = self.cfg.cql_n_actions, b.rows, self.cfg.cql_temperature, self.population
        obs_rep = b.obs.unsqueeze(1).expand(p, n, bs, -1).reshape(p, n * bs, -1)
        next_rep = b.next_obs.unsqueeze(1).expand(p, n, bs, -1).reshape(p, n * bs, -1)
        with torch.no_grad():
            rand_act = self.noise.uniform((p, n * bs, self.act_dim)) * 2 - 1
            pi_act, pi_logp = self.sample_policy(torch.cat([obs_rep, next_rep], 1))
        log_uniform = self.act_dim * math.log(0.5)
        obs3 = torch.cat([obs_rep, obs_rep, obs_rep], 1)
        q3 = self.critic(obs3, torch.cat([rand_act, pi_act], 1))  # [P, n_critics, 3*n*bs]
        log_dens = torch.cat([torch.full((p, n * bs), log_uniform, device=self.device), pi_logp], 1)
        cat_q = (q3 - log_dens[:, None]).reshape(p, q3.shape[1], 3 * n, bs)
        lse = t * torch.logsumexp(cat_q / t, dim=2)  # [P, n_critics, bs]
        return self.cfg.cql_weight * (lse.mean(-1) - q_data.mean(-1))

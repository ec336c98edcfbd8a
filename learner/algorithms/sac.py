"""SAC on simulator data only (the paper's "SAC" baseline: trusts the simulator fully).

Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018, https://arxiv.org/abs/1812.05905,
with the H2O code's settings (twin Q, auto-alpha, target entropy -act_dim). Backup: the standard
SOFT backup (backup_entropy=True: y = r + gamma (1-d) (min Q'(s',a') - alpha log pi(a'|s'))),
which is SimpleSAC's default and Haarnoja et al.'s; `--set backup_entropy=false` gives the hard one.
"""

from __future__ import annotations

from dataclasses import dataclass

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig
from learner.buffers import Batch


@dataclass
class SACConfig(SACCoreConfig):
    backup_entropy: bool = True  # soft backup (SimpleSAC default, Haarnoja et al.)


class SAC(OffPolicyAlgorithm):
    name = "sac"
    config_cls = SACConfig
    uses_sim = True
    critic_sources = ("sim",)

    def _update(self, real: Batch | None, sim: Batch, disc_real=None, disc_sim=None) -> dict:
        y = self.td_target(sim)  # [P, B]
        q = self.critic(sim.obs, sim.act)  # [P, n_critics, B]
        bellman = (q - y[:, None]).square().mean(-1)  # [P, n_critics]
        policy_loss, alpha_loss, stats = self.actor_and_alpha_losses(sim.obs)
        self.optimise(bellman.sum(1), policy_loss, alpha_loss)
        self.critic_stats(stats, {"": bellman})
        stats["charts/q_sim_mean"] = q.detach().mean((1, 2))
        stats["charts/target_q_mean"] = y.mean(1)
        return stats

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

    def update(self, real_batch: Batch | None, sim_batch: Batch, **_) -> dict[str, float]:
        self.check_batches(real_batch, sim_batch)
        y = self.td_target(sim_batch)
        q = self.critic(sim_batch.obs, sim_batch.act)
        bellman = ((q - y) ** 2).mean(1)
        policy_loss, alpha_loss, stats = self.actor_and_alpha_losses(sim_batch.obs)
        self.optimise(bellman.sum(), policy_loss, alpha_loss)
        for i in range(q.shape[0]):
            stats[f"losses/qf{i + 1}"] = bellman[i]
        stats["charts/q_sim_mean"] = q.detach().mean()
        stats["charts/target_q_mean"] = y.mean()
        return self.to_floats(stats)

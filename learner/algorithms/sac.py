"""SAC on simulator data only (the paper's "SAC" baseline: trusts the simulator fully).

Reference: Haarnoja et al. 2018 with the H2O code's settings (twin Q, auto-alpha, no entropy in
the target: backup_entropy=False, like the SimpleSAC defaults the H2O paper used).
"""

from __future__ import annotations

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig
from learner.buffers import Batch


class SAC(OffPolicyAlgorithm):
    name = "sac"
    config_cls = SACCoreConfig
    uses_sim = True

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

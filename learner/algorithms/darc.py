"""DARC and DARC+: reward correction from the same real/sim classifiers as H2O.

Eysenbach et al., "Off-Dynamics RL: Training for Transfer with Domain Classifiers", ICLR 2021,
https://arxiv.org/abs/2006.13916. As the H2O authors ran it as a baseline: Q trained on sim data
with r + clamp(dr, -10, 10), dr = log P_real(s'|s,a) - log P_sim(s'|s,a) from classifiers fitted
on the offline real data vs the sim buffer. DARC+ ("darc_plus") also fits the Q on the real data.
Backup: the standard soft backup (backup_entropy=True), as SAC here; the critic gets as many rows
per update as every other method's (all from sim for DARC, real + sim for DARC+).
Departures: classifiers share H2O's architecture (the DARC paper used 32 hidden units); dr uses
the exact cancellation D_sas[0] - D_sas[1] (learner/algorithms/classifiers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig, cat_batches
from learner.algorithms.classifiers import ClassifierConfig, attach_classifiers
from learner.buffers import Batch

DR_CLIP = 10.0  # H2O authors' DARC baseline: clamp(dr, -10, 10)


@dataclass
class DARCConfig(ClassifierConfig, SACCoreConfig):
    backup_entropy: bool = True  # soft backup, as SAC (the method is SAC + a reward correction)
    disc_noise_std: float = 1.0  # DARC paper: input noise std 1.0
    dr_warmup_updates: int = 0  # updates before dr is added (DARC paper: 1e5)
    train_on_real: bool = False  # True = DARC+


class DARC(OffPolicyAlgorithm):
    name = "darc"
    config_cls = DARCConfig
    uses_real = True  # the classifiers need real data even when the Q does not
    uses_sim = True
    uses_classifiers = True

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu", *, members=None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        self.classifiers = attach_classifiers(self)

    @property
    def critic_sources(self) -> tuple[str, ...]:
        return ("real", "sim") if self.cfg.train_on_real else ("sim",)

    def reward_correction(self, sim: Batch) -> torch.Tensor:
        """dr = clamp(log P_real(s'|s,a) - log P_sim(s'|s,a), -10, 10), no grad, [P, B]."""
        return self.classifiers.log_dynamics_ratio(sim.obs, sim.act, sim.next_obs).clamp(-DR_CLIP, DR_CLIP)

    def _update(self, real: Batch | None, sim: Batch, disc_real: Batch | None, disc_sim: Batch | None) -> dict:
        stats = self.classifiers.update(real if disc_real is None else disc_real,
                                        sim if disc_sim is None else disc_sim, self.noise)
        dr = self.reward_correction(sim)
        if self.step < self.cfg.dr_warmup_updates:
            dr = torch.zeros_like(dr)
        y_sim = self.td_target(sim, extra_reward=dr)
        if self.cfg.train_on_real:
            both = cat_batches(real, sim)
            y = torch.cat([self.td_target(real), y_sim], 1)
            q = self.critic(both.obs, both.act)
            actor_obs = both.obs
        else:
            y, q, actor_obs = y_sim, self.critic(sim.obs, sim.act), sim.obs
        bellman = (q - y[:, None]).square().mean(-1)  # [P, n_critics]
        policy_loss, alpha_loss, actor_stats = self.actor_and_alpha_losses(actor_obs)
        self.optimise(bellman.sum(1), policy_loss, alpha_loss)
        self.critic_stats(stats, {"": bellman})
        stats.update(actor_stats)
        stats.update({"charts/darc_dr_mean": dr.mean(1), "charts/darc_dr_min": dr.amin(1),
                      "charts/darc_dr_max": dr.amax(1), "charts/q_mean": q.detach().mean((1, 2)),
                      "charts/target_q_mean": y.mean(1)})
        return stats


class DARCPlus(DARC):
    """DARC that also trains its critics (and actor) on the real data."""

    name = "darc_plus"

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu", *, members=None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        for c in self.cfgs:  # this instance's copies (config_from), never the caller's objects
            c.train_on_real = True

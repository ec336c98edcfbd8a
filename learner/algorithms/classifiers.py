"""Real-vs-sim dynamics classifiers D_sa(s,a) and D_sas(s,a,s'), shared by H2O and DARC.

As in the H2O reference code (its networks and update step 1): class 0 = real, 1 = sim;
p(.|s,a) = softmax(D_sa), p(.|s,a,s') = softmax(D_sas + D_sa); both trained with cross-entropy on
inputs with Gaussian noise; D_sa receives the gradients of both losses.

The dynamics log-ratio the algorithms need,
    log P_real(s'|s,a) / P_sim(s'|s,a)
      = log p(real|s,a,s') - log p(sim|s,a,s') - log p(real|s,a) + log p(sim|s,a)
      = (D_sas[0] + D_sa[0]) - (D_sas[1] + D_sa[1]) - (D_sa[0] - D_sa[1])
      = D_sas[0] - D_sas[1]                      (bounded to [-4, 4] by the 2*tanh logits),
does not depend on D_sa at all, so inference evaluates D_sas only, straight from the logits
(no softmax round trip; tests/learner check it equals the probability form).

Inputs (`disc_inputs`):
- "raw" (the reference): (s, a) and (s, a, s'), with N(0, disc_noise_std^2) added to each.
- "normalized" (a departure, for robots): (z(s), a) and (z(s), a, z_delta(s' - s)), where z
  standardises each dimension by the real data's mean and std (learner/buffers.py RealStats), and
  the noise is added to those. Why: the noise std 0.1 was set for HalfCheetah, whose states change
  by O(1) per step; the wheel-legged robot's states change by 0.002-0.13 per 20 ms step, so noise
  0.1 on s and s' hides the change the dynamics gap lives in, and the "dynamics" ratio learns the
  state distribution instead (d_sas accuracy within 1% of d_sa's in the H2O runs of
  docs/results.md). Standardised state changes make the noise the same share of the signal on
  every dimension of every robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from learner.algorithms.base import make_adam
from learner.buffers import Batch, RealStats
from learner.networks import Discriminator, PopulationDiscriminator, parse_hidden


DISC_INPUTS = ("raw", "normalized")


@dataclass
class ClassifierConfig:
    """Settings of the real-vs-sim classifiers (H2O, H2O+, DARC, DARC+ configs inherit them)."""

    disc_hidden: str = "256-256"  # D_sa, D_sas hidden sizes
    disc_lr: float = 3e-4
    disc_noise_std: float = 0.1  # Gaussian noise on every classifier input during training
    disc_inputs: str = "raw"  # "raw" (reference) or "normalized" (standardised s and s' - s)


class DynamicsClassifiers:
    """The population's D_sa, D_sas (leading member dimension) and their (one) Adam optimiser."""

    def __init__(self, d_sa: PopulationDiscriminator, d_sas: PopulationDiscriminator, obs_dim: int, act_dim: int,
                 lr: float, noise_std: float, inputs: str = "raw"):
        if inputs not in DISC_INPUTS:
            raise ValueError(f"disc_inputs must be one of {DISC_INPUTS}, got {inputs!r}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.noise_std = noise_std
        self.inputs = inputs
        self.d_sa, self.d_sas = d_sa, d_sas
        # One Adam over both networks = the reference's two Adams (Adam is per-parameter).
        self.opt = make_adam([*self.d_sa.parameters(), *self.d_sas.parameters()], lr)
        # Standardisation of the "normalized" inputs, [P, 1, obs_dim]; identity until set_real_stats.
        p, dev = d_sa.net.layers[0].weight.shape[0], d_sa.net.layers[0].weight.device
        self.obs_mean = torch.zeros(p, 1, obs_dim, device=dev)
        self.obs_scale = torch.ones(p, 1, obs_dim, device=dev)
        self.delta_mean = torch.zeros(p, 1, obs_dim, device=dev)
        self.delta_scale = torch.ones(p, 1, obs_dim, device=dev)

    def set_real_stats(self, stats: RealStats) -> None:
        """Standardise the "normalized" inputs by the real data's statistics ([obs] or [P, obs])."""
        p = self.obs_mean.shape[0]

        def shaped(x: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=self.obs_mean.device).expand(
                p, self.obs_dim).reshape(p, 1, self.obs_dim).clone()

        self.obs_mean, self.delta_mean = shaped(stats.obs_mean), shaped(stats.delta_mean)
        self.obs_scale = shaped(stats.obs_std).clamp(min=1e-6)
        self.delta_scale = shaped(stats.delta_std).clamp(min=1e-6)

    def features(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The D_sas input [P, N, 2*obs+act] from rows [P, N, .]; D_sa sees its first obs+act columns."""
        if self.inputs == "raw":
            return torch.cat([obs, act, next_obs], -1)
        return torch.cat([(obs - self.obs_mean) / self.obs_scale, act,
                          (next_obs - obs - self.delta_mean) / self.delta_scale], -1)

    def losses(self, real: Batch, sim: Batch, noise) -> tuple[torch.Tensor, dict]:
        """L_sa + L_sas per member [P] on noisy (s, a, s') rows of real (label 0) and sim (label 1).

        Each L is the reference's: mean cross-entropy over the real rows PLUS mean cross-entropy
        over the sim rows (two means summed, not one mean over all rows: twice as large with equal
        halves, which matters for Adam's eps regime). With two classes, the cross-entropy of label
        0 is softplus(l1 - l0) and of label 1 is softplus(l0 - l1).
        """
        n_real = real.rows
        x = torch.cat([self.features(real.obs, real.act, real.next_obs),
                       self.features(sim.obs, sim.act, sim.next_obs)], 1)
        x = x + self.noise_std * noise.normal(x.shape)
        sa_logits = self.d_sa(x[..., : self.obs_dim + self.act_dim])
        sas_logits = self.d_sas(x) + sa_logits  # D_sa gets L_sas's gradient too (reference)
        loss_sa, acc_sa = two_class_losses(sa_logits, n_real)
        loss_sas, acc_sas = two_class_losses(sas_logits, n_real)
        stats = {
            "losses/d_sa": loss_sa,
            "losses/d_sas": loss_sas,
            "charts/d_sa_accuracy": acc_sa,
            "charts/d_sas_accuracy": acc_sas,
        }
        return loss_sa + loss_sas, stats

    def update(self, real: Batch, sim: Batch, noise) -> dict:
        loss, stats = self.losses(real, sim, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members' losses summed: each member's gradient is its own
        self.opt.step()
        return stats

    @torch.no_grad()
    def log_dynamics_ratio(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """log P_real(s'|s,a) - log P_sim(s'|s,a) = D_sas[0] - D_sas[1]; inputs [P, ..., dim] -> [P, ...]."""
        lead = obs.shape[:-1]
        p, dim = obs.shape[0], obs.shape[-1]
        x = self.features(obs.reshape(p, -1, dim), act.reshape(p, -1, act.shape[-1]), next_obs.reshape(p, -1, dim))
        logits = self.d_sas(x)
        return (logits[..., 0] - logits[..., 1]).reshape(lead)

    def modules(self) -> dict:
        return {"d_sa": self.d_sa, "d_sas": self.d_sas}


def two_class_losses(logits: torch.Tensor, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member: (CE mean over the first n_real rows (label real) + CE mean over the rest (label
    sim), accuracy); logits [P, N, 2]."""
    margin = logits[..., 1] - logits[..., 0]  # > 0: "sim"
    loss = F.softplus(margin[:, :n_real]).mean(1) + F.softplus(-margin[:, n_real:]).mean(1)
    correct = torch.cat([margin[:, :n_real] <= 0, margin[:, n_real:] > 0], 1)
    return loss, correct.float().mean(1).detach()


def attach_classifiers(algo) -> DynamicsClassifiers:
    """Build the classifiers from algo.cfg.disc_* (each member seeded apart from its actor-critic)
    and register them with the algorithm's checkpointed modules and optimisers."""
    cfg, o, a = algo.cfg, algo.obs_dim, algo.act_dim
    hidden = parse_hidden(cfg.disc_hidden)
    pairs = algo.per_member(lambda: (Discriminator(o + a, hidden), Discriminator(2 * o + a, hidden)), seed_offset=1)
    d_sa = PopulationDiscriminator([p[0] for p in pairs]).to(algo.device)
    d_sas = PopulationDiscriminator([p[1] for p in pairs]).to(algo.device)
    clf = DynamicsClassifiers(d_sa, d_sas, o, a, cfg.disc_lr, cfg.disc_noise_std, cfg.disc_inputs)
    algo._modules.update(clf.modules())
    algo._optims["disc_opt"] = clf.opt
    return clf

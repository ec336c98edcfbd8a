"""H2O: dynamics-aware hybrid offline-and-online RL.

Paper: Niu et al., "When to Trust Your Simulator: Dynamics-Aware Hybrid Offline-and-Online
Reinforcement Learning", NeurIPS 2022, https://arxiv.org/abs/2206.13464
Reference code: github.com/t6-thu/H2O, SimpleSAC/sim2real_sac.py, class Sim2realSAC (its behaviour
is re-stated in docs/learner.md, "The H2O update"; no code copied).

Symbols (code = metric keys = docs/learner.md):
    D_sa, D_sas   real(0)/sim(1) classifiers        w       importance weight P_real/P_sim(s'|s,a)
    y             TD target (hard backup: no entropy term, the reference's setting; backup_entropy)
    u             dynamics-gap estimate per sim (s,a)
    omega         u / sum_batch(u)                   beta    penalty weight (cql_min_q_weight)
    alpha         SAC temperature                    sigma   std of the real states (s' noise)

Departures from the reference (each deliberate):
 1. sigma for the s' perturbation is the per-dimension std of the REAL states (the buffer's real
    part), not of the zero-padded whole buffer (reference: `s_prime_std` over the padded buffer,
    ~0.3x too small). If the trainer never calls set_real_stats, the real batch's std is used.
 2. omega is computed in log space in float64: log omega = log u - logsumexp(log u). The floor
    u >= 1e-45 is a float32 denormal (reference clamp(min=1e-45)); with flush-to-zero it becomes 0
    and omega = 0/0. In float64 the floor is a normal number, so all-at-floor gives omega = 1/N
    and sum(u) = 0 cannot occur.
 3. Discriminator inference runs under no_grad (reference builds and discards autograd graphs).
 4. D_sa is not evaluated for the gap/IS terms: it cancels exactly from log P_real/P_sim(s'|s,a)
    (see learner/algorithms/classifiers.py); the reference evaluates it 10x per (s,a).
 5. Q(sim batch, buffer actions) is computed once and used for both the sim Bellman error and the
    penalty; the twin critics are one batched module; real and sim rows go through the networks
    together.
 6. Actor, temperature and critic losses are back-propagated once (disjoint parameters), then the
    optimisers step in the reference order alpha, pi, Q. Same gradients as the reference.
 7. float32 throughout (reference float64 arrays); per-instance seeded noise generator (one for a
    whole population: learner/algorithms/base.py).
 8. Optional (`disc_inputs = "normalized"`): the classifiers see standardised states and state
    changes (learner/algorithms/classifiers.py), and the s' perturbation for u uses the std of the
    real state changes instead of the states: a state-sized perturbation is ~100x the one-step
    change on the robot and would put every s'_k far outside both classifiers' data.
 9. `penalty_clip`: the clip on the penalty's difference term (here the reference's 1000; the
    robot tasks' default lifts it, learner/task_defaults.py). Where it binds the penalty has no
    gradient, i.e. H2O's regulariser is off. At the robot's raw reward scale (Q up to
    ~1,200-3,000) it binds for whole epochs late in training (charts/penalty_clipped_fraction);
    docs/learner.md, "The penalty clip".
10. The sim buffer (learner/train.py, sim_capacity) is the reference's 10x the dataset but never
    smaller than the run's sim steps: the reference's D4RL-sized FIFO never wraps within a run, and
    a small robot dataset's would (docs/learner.md, "Buffers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, SACCoreConfig, cat_batches
from learner.algorithms.classifiers import ClassifierConfig, attach_classifiers
from learner.buffers import Batch, RealStats

IS_WEIGHT_MIN = 1e-5  # importance weight clip: sim samples are never up-weighted (reference)
IS_WEIGHT_MAX = 1.0
U_FLOOR = 1e-45  # reference clamp(min=1e-45) on u (a float32 denormal; handled in float64 here)
LOG_U_FLOOR = math.log(U_FLOOR)
U_MAX = 10.0  # reference clamp(max=10) on u


@dataclass
class H2OConfig(ClassifierConfig, SACCoreConfig):
    """H2O hyper-parameters on top of the SAC core and the classifiers (reference defaults)."""

    beta: float = 0.01  # penalty weight (reference cql_min_q_weight)
    penalty_temperature: float = 1.0  # temperature of the omega-weighted logsumexp
    n_next_state_samples: int = 10  # perturbed s' per sim (s,a) for u (reference sampling_n_next_states)
    s_prime_std_ratio: float = 1.0  # s'_k = s' + N(0, (ratio * sigma)^2)
    # the penalty's difference term is clipped to +-penalty_clip (reference: 1000; inf = no clip,
    # departure 9): where it binds, the penalty's gradient is zero
    penalty_clip: float = 1000.0


class H2O(OffPolicyAlgorithm):
    name = "h2o"
    config_cls = H2OConfig
    uses_real = True
    uses_sim = True
    uses_classifiers = True
    critic_sources = ("real", "sim")

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu", *, members=None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        self.classifiers = attach_classifiers(self)
        self.real_state_std: torch.Tensor | None = None  # [P, obs_dim]

    def set_real_stats(self, stats: RealStats) -> None:
        """sigma for the s' perturbation (departure 1): per-dimension std of the real states, or
        with "normalized" classifier inputs of the real state CHANGES (departure 8); [obs_dim]
        (every member) or [P, obs_dim] (one row per member's real data)."""
        super().set_real_stats(stats)
        std = stats.obs_std if self.cfg.disc_inputs == "raw" else stats.delta_std
        std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.real_state_std = std.expand(self.population, self.obs_dim).clone()

    # ---- the update, in paper order (every tensor has the members first: [P, ...]) ---------------
    def _update(self, real: Batch, sim: Batch, disc_real: Batch | None, disc_sim: Batch | None) -> dict:
        """One H2O step. disc_real/disc_sim: fresh batches for the classifiers (reference: 256 each);
        the Q batches are reused when they are not given."""
        stats = self.classifiers.update(real if disc_real is None else disc_real,  # 1
                                        sim if disc_sim is None else disc_sim, self.noise)
        w = self.importance_weight(sim)  # 2: [P, B_sim]
        both = cat_batches(real, sim)
        n_real = real.rows
        y = self.td_target(both)  # 3 (real and sim rows in one pass)
        log_omega, u = self.gap_weight(sim, real)  # 4
        q = self.critic(both.obs, both.act)  # [P, n_critics, B]; Q(sim) computed once
        q_real, q_sim = q[..., :n_real], q[..., n_real:]
        real_bellman = (q_real - y[:, None, :n_real]).square().mean(-1)  # [P, n_critics]
        sim_bellman = (w[:, None] * (q_sim - y[:, None, n_real:]).square()).mean(-1)
        penalty, clipped = self.penalty(q_real, q_sim, log_omega)  # 5
        per_critic = real_bellman + sim_bellman + penalty
        policy_loss, alpha_loss, actor_stats = self.actor_and_alpha_losses(both.obs)  # 6
        self.optimise(per_critic.sum(1), policy_loss, alpha_loss)  # 7: alpha, pi, Q steps + Polyak
        self.critic_stats(stats, {"": per_critic, "_real_bellman": real_bellman, "_sim_bellman": sim_bellman,
                                  "_penalty": penalty})
        omega = log_omega.exp()
        u_floored = u.clamp(min=U_FLOOR)  # u as omega uses it (after the floor)
        stats.update(actor_stats)
        stats.update({
            "charts/q_real_mean": q_real.detach().mean((1, 2)),
            "charts/q_sim_mean": q_sim.detach().mean((1, 2)),
            "charts/target_q_mean": y.mean(1),
            "charts/is_weight_min": w.amin(1),
            "charts/is_weight_mean": w.mean(1),
            "charts/is_weight_max": w.amax(1),
            "charts/u_mean": u_floored.mean(1),
            "charts/u_at_floor_fraction": (u <= U_FLOOR).float().mean(1),
            "charts/omega_min": omega.amin(1),
            "charts/omega_max": omega.amax(1),
            "charts/omega_effective_n": 1.0 / omega.square().sum(1),
            "charts/penalty_clipped_fraction": clipped,
        })
        return stats

    # ---- named terms --------------------------------------------------------------------------
    def importance_weight(self, sim: Batch) -> torch.Tensor:
        """w = clip(P_real(s'|s,a) / P_sim(s'|s,a), 1e-5, 1) on the sim batch (no grad), [P, B]."""
        log_ratio = self.classifiers.log_dynamics_ratio(sim.obs, sim.act, sim.next_obs)
        return log_ratio.exp().clamp(IS_WEIGHT_MIN, IS_WEIGHT_MAX)

    @torch.no_grad()
    def gap_weight(self, sim: Batch, real: Batch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log omega, u) for the sim batch, each [P, B].

        u(s,a) = clamp(mean_k log P_sim/P_real(s'_k|s,a), 1e-45, 10), s'_k = s' + N(0, sigma^2),
        k = 1..n_next_state_samples; omega = u / sum_batch(u), in log space (departure 2).
        """
        n, b, p = self.cfg.n_next_state_samples, sim.rows, self.population
        sigma = self.real_state_std if self.real_state_std is not None else real.obs.std(1)  # [P, obs]
        noise = self.noise.normal((p, n, b, self.obs_dim))
        next_k = torch.addcmul(sim.next_obs.unsqueeze(1), (self.cfg.s_prime_std_ratio * sigma)[:, None, None], noise)
        log_sim_over_real = -self.classifiers.log_dynamics_ratio(
            sim.obs.unsqueeze(1).expand(p, n, b, -1), sim.act.unsqueeze(1).expand(p, n, b, -1), next_k)
        u = log_sim_over_real.mean(1).clamp(max=U_MAX)
        return log_omega_from_u(u), u

    def penalty(self, q_real: torch.Tensor, q_sim: torch.Tensor,
                log_omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta * clip(T logsumexp_sim(Q_i/T + log omega) - mean_real Q_i, +-penalty_clip)
        [P, n_critics], the fraction of critics whose term the clip bound [P])."""
        temp, clip = self.cfg.penalty_temperature, self.cfg.penalty_clip
        soft_max_sim = temp * torch.logsumexp(q_sim / temp + log_omega[:, None], dim=-1)
        diff = soft_max_sim - q_real.mean(-1)
        return self.cfg.beta * diff.clamp(-clip, clip), (diff.detach().abs() >= clip).float().mean(-1)


def log_omega_from_u(u: torch.Tensor) -> torch.Tensor:
    """log(u / sum u) over the last (row) dimension, u floored at 1e-45, computed in float64 (no
    denormals, no 0/0)."""
    log_u = u.double().clamp(min=U_FLOOR).log()
    return (log_u - torch.logsumexp(log_u, -1, keepdim=True)).to(u.dtype)

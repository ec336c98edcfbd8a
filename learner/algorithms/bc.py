"""Behaviour cloning on the real (offline) data: the floor any offline-data method should clear.

CORL's any_percent_bc.py (Tarasov et al., "CORL: Research-oriented Deep Offline RL Library",
NeurIPS 2023 D&B, https://arxiv.org/abs/2210.07105): a deterministic actor regressed onto the
data's actions with a mean squared error,
    L = mean_{rows, action dims} (tanh(mu(s)) - a_data)^2.

Why MSE on tanh(mean) and not maximum likelihood under the tanh-Gaussian:
- evaluation and the robot use the deterministic action tanh(mu(s)), which is exactly what the
  MSE fits; the likelihood fits mu and sigma jointly and its mode need not be the data's mean;
- behaviour data are clipped to [-1, 1] (the controller saturates), where atanh(a) is infinite:
  the likelihood needs an epsilon clip whose value then sets the loss scale.
The policy is the same TanhGaussianPolicy as every other method (so it exports the same way); its
log-std head is not trained (BC never samples: `act(deterministic=False)` adds the initial std).
No critic, no temperature, no sim data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import OffPolicyAlgorithm, config_from, make_adam, seeded_init
from learner.buffers import Batch
from learner.networks import TanhGaussianPolicy, parse_hidden


@dataclass
class BCConfig:
    """BC hyper-parameters (CORL any_percent_bc defaults where they apply)."""

    hidden: str = "256-256"  # policy hidden sizes
    policy_lr: float = 3e-4  # Adam
    seed: int = 0  # network init and the noise generator of act()


class BC(OffPolicyAlgorithm):
    name = "bc"
    config_cls = BCConfig
    uses_real = True
    critic_sources = ("real",)  # the rows BC regresses on (it has no critic)

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu"):
        # Not the SAC core's __init__: BC has the policy only.
        self.cfg = config_from(self.config_cls, cfg)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.cfg.seed)
        with seeded_init(self.cfg.seed):
            self.policy = TanhGaussianPolicy(obs_dim, act_dim, parse_hidden(self.cfg.hidden)).to(self.device)
        self.policy_opt = make_adam(self.policy.parameters(), self.cfg.policy_lr)
        self.step = 0
        self._modules = {"policy": self.policy}
        self._optims = {"policy_opt": self.policy_opt}
        self.log_alpha = torch.zeros((), device=self.device)  # checkpoint format of the SAC core

    def update(self, real_batch: Batch, sim_batch: Batch | None = None, **_) -> dict[str, float]:
        self.check_batches(real_batch, sim_batch)
        mean, _log_std = self.policy.distribution_params(real_batch.obs)
        loss = ((torch.tanh(mean) - real_batch.act) ** 2).mean()
        self.policy_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.policy_opt.step()
        self.step += 1
        return self.to_floats({"losses/policy": loss, "losses/bc_mse": loss.detach()})

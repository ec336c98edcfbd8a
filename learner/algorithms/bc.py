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

from learner.algorithms.base import Learner, make_adam
from learner.buffers import Batch


@dataclass
class BCConfig:
    """BC hyper-parameters (CORL any_percent_bc defaults where they apply)."""

    hidden: str = "256-256"  # policy hidden sizes
    policy_lr: float = 3e-4  # Adam
    seed: int = 0  # network init and the noise generator of act()


class BC(Learner):
    name = "bc"
    config_cls = BCConfig
    uses_real = True
    critic_sources = ("real",)  # the rows BC regresses on (it has no critic)
    backup_note = "- (no critic)"

    def __init__(self, obs_dim: int, act_dim: int, cfg=None, device="cpu", *, members=None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        self.policy = self.build_policy()
        self.policy_opt = make_adam(self.policy.parameters(), self.cfg.policy_lr)
        self._modules["policy"] = self.policy
        self._optims["policy_opt"] = self.policy_opt

    def _update(self, real: Batch, sim: Batch | None = None, disc_real=None, disc_sim=None) -> dict:
        mean, _log_std = self.policy.distribution_params(real.obs)
        loss = (torch.tanh(mean) - real.act).square().mean((1, 2))  # per member [P]
        self.policy_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.policy_opt.step()
        self.step += 1
        return {"losses/policy": loss, "losses/bc_mse": loss.detach()}

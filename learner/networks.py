"""Networks shared by H2O and its baselines: tanh-Gaussian policy, batched twin Q, discriminators.

Why one module: every algorithm in learner/algorithms builds from these, so a fix to the policy
head or the critic lands in all of them (STYLE 2.1: "single file is right for the algorithm core,
wrong for plumbing").

Reference defaults (t6-thu/H2O, SimpleSAC/model.py, see /work/shared/reference/h2o_algorithm.md):
log_std = m * raw + c with trainable scalars m=1, c=-1, clamped to [LOG_STD_MIN, LOG_STD_MAX];
last layers xavier_uniform(gain 1e-2), bias 0; discriminator output = 2 * tanh(fc3).

Speed: the twin critics are ONE module with stacked weights [n_critics, in, out]; one batched
matmul chain (torch.baddbmm) evaluates both, instead of two separate MLPs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN = -20.0  # reference clamp on the policy's log-std
LOG_STD_MAX = 2.0
LOG_STD_SCALE_INIT = 1.0  # m in log_std = m * raw + c (trainable)
LOG_STD_OFFSET_INIT = -1.0  # c in log_std = m * raw + c (trainable)
LAST_LAYER_GAIN = 1e-2  # xavier_uniform gain of the policy's and critics' output layers
DISC_LOGIT_SCALE = 2.0  # discriminator logits = 2 * tanh(fc3): |logit| <= 2
LOG_2 = math.log(2.0)


def parse_hidden(arch: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """'256-256' -> (256, 256); tuples pass through. Raises ValueError on bad input."""
    if isinstance(arch, str):
        try:
            sizes = tuple(int(x) for x in arch.split("-"))
        except ValueError as exc:
            raise ValueError(f"hidden sizes must look like '256-256', got {arch!r}") from exc
    else:
        sizes = tuple(int(x) for x in arch)
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"hidden sizes must be positive integers, got {arch!r}")
    return sizes


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Plain ReLU MLP with torch's default Linear init."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU(inplace=True)]
        last = h
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(x)^2), computed stably as 2*(log 2 - x - softplus(-2x))."""
    return 2.0 * (LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))


class TanhGaussianPolicy(nn.Module):
    """pi(a|s): a = tanh(mean + std * eps); log-prob summed over action dims with the tanh term.

    `obs_mean`/`obs_std` buffers normalise the input inside the module (identity by default), so
    the exported ONNX graph takes the raw observation (docs/interfaces.md).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1]) if len(hidden) > 1 else nn.Linear(obs_dim, hidden[0])
        # one output layer for mean and raw log-std (one matmul); each half initialised as the
        # reference's separate layers: xavier_uniform(gain 1e-2) with fan_out = act_dim.
        self.head = nn.Linear(hidden[-1], 2 * act_dim)
        bound = LAST_LAYER_GAIN * math.sqrt(6.0 / (hidden[-1] + act_dim))
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)
            self.head.bias.zero_()
        self.log_std_scale = nn.Parameter(torch.tensor(LOG_STD_SCALE_INIT))
        self.log_std_offset = nn.Parameter(torch.tensor(LOG_STD_OFFSET_INIT))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_obs_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Bake an observation normalisation into the policy (travels into the ONNX graph)."""
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6))

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-tanh Gaussian."""
        h = torch.relu_(self.trunk((obs - self.obs_mean) / self.obs_std))
        mean, raw = self.head(h).chunk(2, dim=-1)
        log_std = (self.log_std_scale * raw + self.log_std_offset).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample (or tanh(mean)) and its log-prob, shape [B, act_dim], [B].

        `generator` makes the exploration noise reproducible per algorithm instance.
        """
        mean, log_std = self.distribution_params(obs)
        if deterministic:
            pre = mean
            eps_sq = torch.zeros_like(mean)
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            pre = mean + log_std.exp() * eps
            eps_sq = eps * eps
        # Normal log-density written out (cheaper than torch.distributions in the hot loop).
        log_prob = -0.5 * eps_sq - log_std - 0.5 * math.log(2.0 * math.pi)
        log_prob = (log_prob - tanh_log_det_jacobian(pre)).sum(-1)
        return torch.tanh(pre), log_prob


class StackedLinear(nn.Module):
    """n independent Linear layers evaluated with one batched matmul: [n,B,in] -> [n,B,out]."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        if x.dim() == 2:  # same input for every member: one [B,in] @ [n,in,out] broadcast
            return torch.matmul(x, w) + b
        return torch.baddbmm(b, x, w)


class TwinQ(nn.Module):
    """n_critics Q(s,a) MLPs in one module; forward returns [n_critics, B].

    `detach_params=True` evaluates with detached weights: the actor loss then sends gradients to
    the action only, and no weight gradients are computed for the critics (saves a backward).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256), n_critics: int = 2):
        super().__init__()
        self.n_critics = n_critics
        dims = (obs_dim + act_dim, *hidden, 1)
        self.layers = nn.ModuleList(StackedLinear(n_critics, a, b) for a, b in zip(dims[:-1], dims[1:]))
        last = self.layers[-1]
        bound = LAST_LAYER_GAIN * math.sqrt(6.0 / (hidden[-1] + 1))
        with torch.no_grad():
            last.weight.uniform_(-bound, bound)
            last.bias.zero_()

    def forward(self, obs: torch.Tensor, act: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1)
        for layer in self.layers[:-1]:
            x = layer(x, detach_params).relu_()
        return self.layers[-1](x, detach_params).squeeze(-1)


class Discriminator(nn.Module):
    """Real-vs-sim classifier: MLP -> 2 logits bounded by 2*tanh. Class 0 = real, 1 = sim."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return DISC_LOGIT_SCALE * torch.tanh(self.net(x))

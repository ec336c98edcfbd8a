"""Networks shared by H2O and its baselines: tanh-Gaussian policy, batched twin Q, discriminators.

Why one module: every algorithm in learner/algorithms builds from these, so a fix to the policy
head or the critic lands in all of them (STYLE 2.1: "single file is right for the algorithm core,
wrong for plumbing").

Reference defaults (t6-thu/H2O, SimpleSAC/model.py):
log_std = m * raw + c with trainable scalars m=1, c=-1, clamped to [LOG_STD_MIN, LOG_STD_MAX];
last layers xavier_uniform(gain 1e-2), bias 0; discriminator output = 2 * tanh(fc3).

Speed: the twin critics are ONE module with stacked weights [n_critics, in, out]; one batched
matmul chain (torch.baddbmm) evaluates both, instead of two separate MLPs.

Observation normalisation: the policy and the critics read (obs - obs_mean) / obs_std (buffers,
identity by default; the policy's travels into the ONNX graph). `Learner.set_obs_normalisation`
sets them (learner/task_defaults.py says from what, and why it matters on the robot's tasks).

Population training (docs/learner.md): P independent learners train as one computation. The
Population* modules hold P members' weights stacked on a leading dimension and evaluate all of
them with the same batched matmul chain: inputs [P, B, in] -> [P, B, out]. They are built FROM
per-member modules (TanhGaussianPolicy, TwinQ, mlp), each initialised with its member's seed, and
give a member back as a plain module (`PopulationPolicy.member(k)` -> TanhGaussianPolicy for
export). Stacked weights + baddbmm beat torch.func.stack_module_state + vmap here: a 64-64 MLP
forward+backward for P=6 took 1.4 ms stacked vs 2.6 ms with vmap (2-core CPU).
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
    """Independent Linear layers with weights [*lead, in, out], evaluated by one batched matmul.

    lead = (n,) for a member's n critics, (P,) for a population, (P, n) for a population's critics;
    x [prod(lead), B, in] -> [prod(lead), B, out] (a 2-D x is shared by every layer).
    `init=False` leaves the weights uninitialised (and draws nothing from torch's RNG) for modules
    whose weights are copied in from members.
    """

    def __init__(self, lead: int | tuple[int, ...], in_dim: int, out_dim: int, init: bool = True):
        super().__init__()
        lead = (lead,) if isinstance(lead, int) else tuple(lead)
        self.weight = nn.Parameter(torch.empty(*lead, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(*lead, 1, out_dim))
        if init:
            bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
            with torch.no_grad():
                self.weight.uniform_(-bound, bound)
                self.bias.uniform_(-bound, bound)
        else:
            with torch.no_grad():
                self.weight.zero_()
                self.bias.zero_()

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        if w.dim() > 3:
            w, b = w.flatten(0, -3), b.flatten(0, -3)
        if x.dim() == 2:  # same input for every member: one [B,in] @ [n,in,out] broadcast
            return torch.matmul(x, w) + b
        # bmm then an in-place bias add: baddbmm first copies the broadcast bias into its output
        # (a strided copy as large as the output): a measurable share of a small population
        # update (docs/benchmarks.md, "Population training")
        return torch.bmm(x, w).add_(b)


class TwinQ(nn.Module):
    """n_critics Q(s,a) MLPs in one module; forward returns [n_critics, B].

    `detach_params=True` evaluates with detached weights: the actor loss then sends gradients to
    the action only, and no weight gradients are computed for the critics (saves a backward).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256), n_critics: int = 2,
                 layer_norm: bool = False):
        super().__init__()
        self.n_critics, self.layer_norm = n_critics, layer_norm
        dims = (obs_dim + act_dim, *hidden, 1)
        self.layers = nn.ModuleList(StackedLinear(n_critics, a, b) for a, b in zip(dims[:-1], dims[1:]))
        last = self.layers[-1]
        bound = LAST_LAYER_GAIN * math.sqrt(6.0 / (hidden[-1] + 1))
        with torch.no_grad():
            last.weight.uniform_(-bound, bound)
            last.bias.zero_()
        # the observation normalisation the policy has (identity by default; Learner.set_obs_normalisation)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def forward(self, obs: torch.Tensor, act: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, act], dim=-1)
        return _critic_chain(self.layers, x, detach_params, self.layer_norm).squeeze(-1)


def _critic_chain(layers: nn.ModuleList, x: torch.Tensor, detach_params: bool, layer_norm: bool) -> torch.Tensor:
    """Linear -> [LayerNorm] -> ReLU for each hidden layer, then the output layer.

    LayerNorm (critic_layer_norm) normalises each hidden pre-activation over its units, without a
    learnable gain or bias: it bounds how far Q can extrapolate to actions and states the data
    never had (Ball et al. 2023, RLPD), and having no parameters keeps a population's members
    independent for free. The reference H2O/SAC critics have none (default off).
    """
    for layer in layers[:-1]:
        x = layer(x, detach_params)
        if layer_norm:
            x = F.layer_norm(x, x.shape[-1:])
        x = x.relu_()
    return layers[-1](x, detach_params)


class Discriminator(nn.Module):
    """Real-vs-sim classifier: MLP -> 2 logits bounded by 2*tanh. Class 0 = real, 1 = sim."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return DISC_LOGIT_SCALE * torch.tanh(self.net(x))


# ---- population modules --------------------------------------------------------------------------
def _linears(module: nn.Module) -> list[nn.Linear]:
    """The nn.Linear layers of a member module in forward order (registration order here)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


class PopulationMLP(nn.Module):
    """P (or P x n) independent ReLU MLPs with stacked weights: x [prod(lead), B, in] -> [.., B, out]."""

    def __init__(self, lead: int | tuple[int, ...], in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(StackedLinear(lead, a, b, init=False) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = layer(x, detach_params).relu_()
        return self.layers[-1](x, detach_params)

    @classmethod
    def from_members(cls, members: list[nn.Module]) -> "PopulationMLP":
        """Stack P member MLPs (any module whose nn.Linear layers form the chain, e.g. `mlp(...)`)."""
        layers = _linears(members[0])
        net = cls(len(members), layers[0].in_features, tuple(l.out_features for l in layers[:-1]),
                  layers[-1].out_features)
        with torch.no_grad():
            for k, m in enumerate(members):
                for stacked, lin in zip(net.layers, _linears(m)):
                    stacked.weight[k].copy_(lin.weight.t())
                    stacked.bias[k, 0].copy_(lin.bias)
        return net

    @torch.no_grad()
    def copy_member_into(self, k: int, member: nn.Module) -> nn.Module:
        """Write member k's weights into `member` (same architecture, nn.Linear layers); returns it."""
        for stacked, lin in zip(self.layers, _linears(member)):
            lin.weight.copy_(stacked.weight[k].t())
            lin.bias.copy_(stacked.bias[k, 0])
        return member


class PopulationPolicy(nn.Module):
    """P tanh-Gaussian policies: obs [P, B, obs_dim] -> actions [P, B, act_dim], log-probs [P, B].

    The math is TanhGaussianPolicy's, member by member; the noise eps [P, B, act_dim] is passed in
    (the algorithm's noise source draws it for all members at once; None = deterministic tanh(mean)).
    """

    def __init__(self, members: list[TanhGaussianPolicy]):
        super().__init__()
        p0 = members[0]
        self.population, self.obs_dim, self.act_dim = len(members), p0.obs_dim, p0.act_dim
        self.hidden = tuple(l.out_features for l in _linears(p0)[:-1])
        self.net = PopulationMLP.from_members(members)
        self.log_std_scale = nn.Parameter(torch.stack([m.log_std_scale.detach() for m in members]).view(-1, 1, 1))
        self.log_std_offset = nn.Parameter(torch.stack([m.log_std_offset.detach() for m in members]).view(-1, 1, 1))
        self.register_buffer("obs_mean", torch.stack([m.obs_mean for m in members]).unsqueeze(1))
        self.register_buffer("obs_std", torch.stack([m.obs_std for m in members]).unsqueeze(1))

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-tanh Gaussians, each [P, B, act_dim]."""
        mean, raw = self.net((obs - self.obs_mean) / self.obs_std).chunk(2, dim=-1)
        log_std = torch.addcmul(self.log_std_offset, self.log_std_scale, raw).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def forward(self, obs: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample tanh(mean + std * eps) (or tanh(mean) when eps is None) and its log-prob."""
        mean, log_std = self.distribution_params(obs)
        if eps is None:
            pre = mean
            log_prob = -log_std
        else:
            pre = torch.addcmul(mean, log_std.exp(), eps)
            log_prob = torch.addcmul(log_std, eps, eps, value=0.5).neg_()
        # Normal log-density written out, minus log|d tanh/d pre| (summed over action dims)
        log_prob = (log_prob - tanh_log_det_jacobian(pre)).sum(-1) - 0.5 * math.log(2.0 * math.pi) * self.act_dim
        return torch.tanh(pre), log_prob

    def member(self, k: int) -> TanhGaussianPolicy:
        """Member k as a plain TanhGaussianPolicy (a copy, on this module's device)."""
        with torch.random.fork_rng(devices=[]):  # building it must not move the caller's RNG
            p = TanhGaussianPolicy(self.obs_dim, self.act_dim, self.hidden).to(self.obs_mean.device)
        self.net.copy_member_into(k, p)
        with torch.no_grad():
            p.log_std_scale.copy_(self.log_std_scale[k, 0, 0])
            p.log_std_offset.copy_(self.log_std_offset[k, 0, 0])
            p.obs_mean.copy_(self.obs_mean[k, 0])
            p.obs_std.copy_(self.obs_std[k, 0])
        return p


class PopulationQ(nn.Module):
    """P members' n_critics Q functions: (obs, act) [P, B, .] -> Q [P, n_critics, B].

    Weights [P, n_critics, in, out], one baddbmm per layer for all P * n_critics critics.
    `detach_params=True`: the actor loss sends gradients to the action only (no weight gradients).
    """

    def __init__(self, members: list[TwinQ]):
        super().__init__()
        q0 = members[0]
        self.population, self.n_critics, self.layer_norm = len(members), q0.n_critics, q0.layer_norm
        lead = (self.population, self.n_critics)
        self.layers = nn.ModuleList(StackedLinear(lead, l.weight.shape[1], l.weight.shape[2], init=False)
                                    for l in q0.layers)
        with torch.no_grad():
            for k, q in enumerate(members):
                for stacked, layer in zip(self.layers, q.layers):
                    stacked.weight[k].copy_(layer.weight)
                    stacked.bias[k].copy_(layer.bias)
        self.register_buffer("obs_mean", torch.stack([q.obs_mean for q in members]).unsqueeze(1))
        self.register_buffer("obs_std", torch.stack([q.obs_std for q in members]).unsqueeze(1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        p, b = obs.shape[0], obs.shape[1]
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, act], dim=-1)
        x = x.unsqueeze(1).expand(p, self.n_critics, b, x.shape[-1]).reshape(p * self.n_critics, b, -1)
        return _critic_chain(self.layers, x, detach_params, self.layer_norm).view(p, self.n_critics, b)


class PopulationDiscriminator(nn.Module):
    """P real-vs-sim classifiers: parts [P, B, .] (concatenated) -> logits [P, B, 2], bounded by 2*tanh."""

    def __init__(self, members: list[Discriminator]):
        super().__init__()
        self.net = PopulationMLP.from_members([d.net for d in members])

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return DISC_LOGIT_SCALE * torch.tanh(self.net(x))


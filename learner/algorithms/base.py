"""The SAC core every algorithm here shares: networks, optimisers, targets, actor/temperature, Polyak.

Why a base class: H2O, SAC, CQL and DARC differ only in their critic loss (and H2O/DARC in the
classifiers). The soft actor, temperature, target backup, Polyak step and checkpointing are the
same plumbing and live here once (STYLE 2.1).

Common interface (docs/learner.md):
    algo.update(real_batch, sim_batch) -> dict[str, float]   (either may be None if unused)
    algo.uses_real, algo.uses_sim, algo.uses_classifiers
    algo.act(obs, deterministic) -> np.ndarray in [-1, 1]
    algo.state_dict() / algo.load_state_dict(sd)             (restores in place)
    algo.policy_for_export() -> TanhGaussianPolicy on CPU

Speed: the actor, temperature and critic losses are summed and back-propagated ONCE (their
parameter sets are disjoint: the actor evaluates the critics with detached weights, targets are
computed under no_grad), then each optimiser (Adam, foreach) steps. Statistics are collected as
tensors and converted to floats once per update.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from learner.buffers import Batch
from learner.networks import TanhGaussianPolicy, TwinQ, parse_hidden


@dataclass
class SACCoreConfig:
    """Hyper-parameters shared by every algorithm (reference defaults)."""

    # networks
    hidden: str = "256-256"  # policy and critic hidden sizes, '-'-separated
    n_critics: int = 2  # twin Q (min over the critics)
    # Bellman update
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # Polyak rate of the target critics, every update
    reward_scale: float = 1.0  # r' = reward_scale * r + reward_bias
    reward_bias: float = 0.0
    # Soft backup: subtract alpha * log pi(a'|s') from the target's next value (Haarnoja et al.;
    # SimpleSAC's default). False = the "hard" backup H2O's and CQL's reference runs use. Each
    # algorithm's config sets its own default; docs/learner.md has the table.
    backup_entropy: bool = False
    # optimisers (Adam)
    policy_lr: float = 3e-4
    q_lr: float = 3e-4
    alpha_lr: float = 3e-4
    # temperature
    auto_alpha: bool = True  # learn alpha towards target_entropy
    alpha_init: float = 1.0  # reference: log_alpha = 0
    target_entropy: float | None = None  # None -> -act_dim (reference)
    seed: int = 0  # seeds the networks' init and this instance's noise generator


class MissingBatchError(ValueError):
    """update() called without a batch the algorithm needs (e.g. H2O without real data)."""


def config_from(cls: type, cfg: Any) -> Any:
    """cfg may be None, an instance of cls, or a mapping of overrides; unknown keys raise."""
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return dataclasses.replace(cfg)  # a copy: an algorithm may adjust its config (DARC+)
    if isinstance(cfg, Mapping):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid: {sorted(names)}")
        return cls(**cfg)
    if hasattr(cfg, "__dataclass_fields__"):  # another algorithm's config: keep the shared fields
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in asdict(cfg).items() if k in names})
    raise TypeError(f"config must be None, a mapping or a {cls.__name__}, got {type(cfg).__name__}")


@contextlib.contextmanager
def seeded_init(seed: int):
    """Seed network initialisation without touching the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one step for the whole group; CPU support since torch 2.4),
    falling back to foreach on builds without it."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def cat_batches(a: Batch, b: Batch) -> Batch:
    """Rows of a then rows of b (one pass through each network instead of two)."""
    return Batch(*(torch.cat([x, y], 0) for x, y in zip((a.obs, a.act, a.rew, a.next_obs, a.done),
                                                        (b.obs, b.act, b.rew, b.next_obs, b.done))))


def sample_update_batches(algo: "OffPolicyAlgorithm", sample_real: Callable[[int], Batch],
                          sample_sim: Callable[[int], Batch], real_rows: int, sim_rows: int,
                          disc_rows: int) -> dict[str, Batch | None]:
    """The keyword batches of one `algo.update`, for train.py and the service's trainer alike.

    Every method's critic gets real_rows + sim_rows rows per update: split real/sim when it trains
    on both sources, all from its one source otherwise (DARC's critic trains on sim only although
    its classifiers need real data, so it gets all of them from sim). Classifier algorithms also
    get fresh disc_rows-row batches of each source.
    """
    total = real_rows + sim_rows
    src = algo.critic_sources
    kw: dict[str, Batch | None] = {"real_batch": None, "sim_batch": None}
    if "real" in src and "sim" in src:
        kw["real_batch"], kw["sim_batch"] = sample_real(real_rows), sample_sim(sim_rows)
    elif "sim" in src:
        kw["sim_batch"] = sample_sim(total)
    else:
        kw["real_batch"] = sample_real(total)
    if algo.uses_classifiers:
        kw["disc_real"], kw["disc_sim"] = sample_real(disc_rows), sample_sim(disc_rows)
    return kw


class OffPolicyAlgorithm:
    """SAC core. Subclasses implement `update` with their own critic loss."""

    name = "base"
    config_cls: type = SACCoreConfig
    uses_real = False  # needs the real buffer (critic, actor or classifiers)
    uses_sim = False  # needs the sim buffer
    uses_classifiers = False  # trainer then also passes fresh classifier batches
    critic_sources: tuple[str, ...] = ()  # the buffers the critic's Bellman rows come from

    def __init__(self, obs_dim: int, act_dim: int, cfg: Any = None, device: str | torch.device = "cpu"):
        self.cfg = config_from(self.config_cls, cfg)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.cfg.seed)
        hidden = parse_hidden(self.cfg.hidden)
        with seeded_init(self.cfg.seed):
            self.policy = TanhGaussianPolicy(obs_dim, act_dim, hidden).to(self.device)
            self.critic = TwinQ(obs_dim, act_dim, hidden, self.cfg.n_critics).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)  # hard copy at init
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(self.cfg.alpha_init)), device=self.device))
        self.target_entropy = float(-act_dim if self.cfg.target_entropy is None else self.cfg.target_entropy)
        self.policy_opt = make_adam(self.policy.parameters(), self.cfg.policy_lr)
        self.critic_opt = make_adam(self.critic.parameters(), self.cfg.q_lr)
        self.alpha_opt = make_adam([self.log_alpha], self.cfg.alpha_lr)
        self.step = 0
        self._modules: dict[str, nn.Module] = {
            "policy": self.policy,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }
        self._optims: dict[str, torch.optim.Optimizer] = {
            "policy_opt": self.policy_opt,
            "critic_opt": self.critic_opt,
            "alpha_opt": self.alpha_opt,
        }

    # ---- shared loss pieces ----------------------------------------------------------------------
    def td_target(self, batch: Batch, extra_reward: torch.Tensor | None = None) -> torch.Tensor:
        """y = r' + gamma * (1 - done) * min_i Q_i'(s', a'~pi(s')) [- alpha log pi if backup_entropy]."""
        with torch.no_grad():
            next_act, next_logp = self.policy(batch.next_obs, generator=self.gen)
            next_q = self.critic_target(batch.next_obs, next_act).min(0).values
            if self.cfg.backup_entropy:
                next_q = next_q - self.log_alpha.exp() * next_logp
            rew = self.cfg.reward_scale * batch.rew + self.cfg.reward_bias
            if extra_reward is not None:
                rew = rew + extra_reward
            return rew + self.cfg.gamma * (1.0 - batch.done) * next_q

    def actor_and_alpha_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """L_pi = mean(alpha log pi - min_i Q_i(s, a_new)); L_alpha = -mean(log_alpha (log pi + H)).

        The critics are evaluated with detached weights, so L_pi moves the policy only.
        """
        new_act, log_pi = self.policy(obs, generator=self.gen)
        alpha = self.log_alpha.exp().detach()
        q_new = self.critic(obs, new_act, detach_params=True).min(0).values
        policy_loss = (alpha * log_pi - q_new).mean()
        if self.cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
        else:
            alpha_loss = torch.zeros((), device=self.device)
        stats = {"losses/policy": policy_loss, "losses/alpha": alpha_loss, "charts/alpha": alpha,
                 "charts/log_pi": log_pi.mean()}
        return policy_loss, alpha_loss, stats

    def optimise(self, critic_loss: torch.Tensor, policy_loss: torch.Tensor, alpha_loss: torch.Tensor) -> None:
        """One backward through the summed losses, then step alpha, pi, Q (reference order), Polyak."""
        for opt in (self.alpha_opt, self.policy_opt, self.critic_opt):
            opt.zero_grad(set_to_none=True)
        (critic_loss + policy_loss + alpha_loss).backward()
        if self.cfg.auto_alpha:
            self.alpha_opt.step()
        self.policy_opt.step()
        self.critic_opt.step()
        self.polyak()
        self.step += 1

    @torch.no_grad()
    def polyak(self) -> None:
        """target <- target + tau * (online - target)."""
        for t, p in zip(self.critic_target.parameters(), self.critic.parameters()):
            t.lerp_(p, self.cfg.tau)

    @staticmethod
    def to_floats(stats: dict[str, torch.Tensor]) -> dict[str, float]:
        """Convert all statistics with one stack + tolist (one device sync on CUDA)."""
        vals = torch.stack([v.detach().float().reshape(()) for v in stats.values()]).tolist()
        return dict(zip(stats.keys(), vals))

    def check_batches(self, real_batch: Batch | None, sim_batch: Batch | None, disc_real: Batch | None = None,
                      disc_sim: Batch | None = None) -> None:
        """Raise MissingBatchError naming what is missing (instead of an AttributeError deep inside)."""
        for source, batch, disc in (("real", real_batch, disc_real), ("sim", sim_batch, disc_sim)):
            if source in self.critic_sources and batch is None:
                raise MissingBatchError(f"{self.name} needs a {source} batch (critic_sources="
                                        f"{self.critic_sources}), got None")
            if self.uses_classifiers and batch is None and disc is None:
                raise MissingBatchError(f"{self.name}'s classifiers need a {source} batch (disc_{source} "
                                        f"or {source}_batch), got None")

    # ---- interface -----------------------------------------------------------------------------
    def update(self, real_batch: Batch | None, sim_batch: Batch | None, **kw) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) in [-1, 1] for one obs [obs_dim] or a batch [B, obs_dim]."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.dim() == 1
        a, _ = self.policy(x.reshape(1, -1) if single else x, deterministic=deterministic, generator=self.gen)
        a = a.cpu().numpy()
        return a[0] if single else a

    def policy_for_export(self) -> TanhGaussianPolicy:
        """A CPU copy of the policy only (what goes to the robot), in eval mode."""
        return copy.deepcopy(self.policy).cpu().eval()

    def state_dict(self) -> dict:
        """A snapshot (deep copy): torch's state_dicts hold references to the live tensors, and an
        optimiser's load_state_dict keeps them, so two instances would share Adam moments."""
        sd: dict[str, Any] = {name: copy.deepcopy(m.state_dict()) for name, m in self._modules.items()}
        sd.update({name: copy.deepcopy(o.state_dict()) for name, o in self._optims.items()})
        sd["log_alpha"] = self.log_alpha.detach().clone()
        sd["step"] = self.step
        sd["gen"] = self.gen.get_state()
        sd["algorithm"] = self.name
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Restore in place: parameter objects (and the optimisers' references to them) are kept."""
        if sd.get("algorithm", self.name) != self.name:
            raise ValueError(f"checkpoint is for {sd.get('algorithm')!r}, not {self.name!r}")
        for name, m in self._modules.items():
            m.load_state_dict(sd[name])
        for name, o in self._optims.items():
            o.load_state_dict(copy.deepcopy(sd[name]))  # never share moments with the source
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"])
        self.step = int(sd["step"])
        self.gen.set_state(sd["gen"])

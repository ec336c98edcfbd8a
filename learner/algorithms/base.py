"""The plumbing every algorithm here shares, and the SAC core (critics, actor/temperature, Polyak).

Why a base class: H2O, SAC, CQL and DARC differ only in their critic loss (and H2O/DARC in the
classifiers). The soft actor, temperature, target backup, Polyak step, checkpointing and the
population bookkeeping are the same plumbing and live here once (STYLE 2.1).

Population training: an algorithm instance holds P independent learners ("members"). Every
network, target network, classifier, log_alpha and optimiser state carries a leading population
dimension P; batches are [P, B, dim]; each member's loss is a mean over its own rows and the
losses are summed over members before the one backward, so every member's gradient is its own
(no cross terms), and Adam on stacked parameters is elementwise, so it steps each member exactly
as it would alone. A single learner is the P = 1 case of the same code: `update` lifts [B, dim]
batches to [1, B, dim] and returns member 0's statistics.

Common interface (docs/learner.md):
    make(name, obs_dim, act_dim, cfg) / make_population(name, obs_dim, act_dim, [cfg_0, ...])
    algo.update(real_batch, sim_batch, disc_real=, disc_sim=) -> dict[str, float]      (P = 1)
    algo.update_population(...)  [P, B, dim] batches -> dict[str, list[float]] (one per member)
    algo.uses_real, algo.uses_sim, algo.uses_classifiers, algo.critic_sources
    algo.act(obs, deterministic) -> np.ndarray in [-1, 1]      (P = 1; act_population for [P, N, .])
    algo.state_dict() / algo.load_state_dict(sd)               (restores in place)
    algo.member_state_dict(k), stack_member_states([...])      (one member's checkpoint, and back)
    algo.policy_for_export(member=0) -> TanhGaussianPolicy on CPU
    algo.noise                                                  (the injectable noise source)

Speed: the actor, temperature and critic losses are summed and back-propagated ONCE (their
parameter sets are disjoint: the actor evaluates the critics with detached weights, targets are
computed under no_grad), then each optimiser (fused Adam) steps; the Polyak step is one foreach
call. Statistics are collected as [P] tensors and converted to floats once per update.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from learner.buffers import Batch, RealStats
from learner.networks import PopulationPolicy, PopulationQ, TanhGaussianPolicy, TwinQ, parse_hidden


@dataclass
class SACCoreConfig:
    """Hyper-parameters shared by every algorithm (reference defaults)."""

    # networks
    hidden: str = "256-256"  # policy and critic hidden sizes, '-'-separated
    n_critics: int = 2  # twin Q (min over the critics)
    # LayerNorm (no gain/bias) after each hidden layer of the critics, before the ReLU (RLPD).
    # Not in the paper's reference; off by default (docs/learner.md, docs/results.md).
    critic_layer_norm: bool = False
    # Bellman update
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # Polyak rate of the target critics, every update
    reward_scale: float = 1.0  # r' = reward_scale * r + reward_bias
    reward_bias: float = 0.0
    # Soft backup: subtract alpha * log pi(a'|s') from the target's next value (Haarnoja et al.;
    # SimpleSAC's default). False = the "hard" backup H2O's and CQL's reference runs use. Each
    # algorithm's config sets its own default; docs/learner.md has the table.
    backup_entropy: bool = False
    # The task's largest per-step reward (raw units; None = no bound). When set, every TD target is
    # clamped to at most (reward_scale * reward_max + reward_bias) / (1 - gamma): no discounted
    # return can exceed it, so a larger target is pure overestimation, and bootstrapping would
    # feed it back. Not in the paper's reference (docs/learner.md, "Bounded targets").
    reward_max: float | None = None
    # Polyak rate of a running average of the policy's weights, every update (0 = off). When set,
    # the average is the policy that is evaluated and exported (what the robot drives); the losses
    # and the sim rollouts use the online policy. Not in the paper's reference (docs/learner.md,
    # "Averaged policy").
    policy_ema: float = 0.0
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
    """Rows of a then rows of b, per member (one pass through each network instead of two)."""
    return Batch(*(torch.cat([x, y], 1) for x, y in zip((a.obs, a.act, a.rew, a.next_obs, a.done),
                                                        (b.obs, b.act, b.rew, b.next_obs, b.done))))


def lift(batch: Batch | None) -> Batch | None:
    """A single learner's [B, dim] batch as a population of one, [1, B, dim] (views, no copy)."""
    if batch is None or batch.rew.dim() == 2:
        return batch
    return Batch(batch.obs[None], batch.act[None], batch.rew[None], batch.next_obs[None], batch.done[None])


def sample_update_batches(algo: "Learner", sample_real: Callable[[int], Batch],
                          sample_sim: Callable[[int], Batch], real_rows: int, sim_rows: int,
                          disc_rows: int) -> dict[str, Batch | None]:
    """The keyword batches of one `algo.update` (or `update_population`, given population
    samplers), for train.py and the service's trainer alike.

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


class Noise:
    """The population's noise source: ONE generator, every draw shaped [P, ...] at once.

    Injectable (`algo.noise = ...`): anything with normal(shape), uniform(shape), get_state() and
    set_state() works, e.g. a recorder/replayer that gives a single learner exactly the noise
    member k of a population drew (tests/learner/test_population.py). With P = 1 the draws are
    the same numbers a per-learner generator of the same seed gives.
    """

    def __init__(self, seed: int, device: torch.device):
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, device=self.device)

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.gen, device=self.device)

    def get_state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)


# state-dict entries that are not per-member tensors (copied whole into each member's state)
_SHARED_KEYS = ("step", "gen", "algorithm", "population", "obs_normalised")
_NORM_BUFFERS = {"obs_mean", "obs_std"}


def _slice_member(obj: Any, k: int) -> Any:
    """Member k of a (nested) state: every tensor with a leading population dim keeps [k:k+1]."""
    if isinstance(obj, torch.Tensor):
        return obj[k:k + 1].clone() if obj.dim() > 0 else obj.clone()
    if isinstance(obj, dict):
        return {key: _slice_member(v, k) for key, v in obj.items()}
    if isinstance(obj, list):
        return [_slice_member(v, k) for v in obj]
    return copy.deepcopy(obj)


def _stack(objs: list[Any]) -> Any:
    """Inverse of _slice_member over members 0..P-1 (0-d tensors and plain values: the first's)."""
    first = objs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(objs, 0) if first.dim() > 0 else first.clone()
    if isinstance(first, dict):
        return {key: _stack([o[key] for o in objs]) for key in first}
    if isinstance(first, list):
        return [_stack([o[i] for o in objs]) for i in range(len(first))]
    return copy.deepcopy(first)


def stack_member_states(states: Sequence[dict]) -> dict:
    """One population state dict from P member state dicts (each from member_state_dict, or a P = 1
    learner's state_dict), e.g. to resume a population from per-seed checkpoints. The shared
    entries (update count, noise state) are taken from the first."""
    out = _stack([{k: v for k, v in s.items() if k not in _SHARED_KEYS} for s in states])
    out.update({k: copy.deepcopy(states[0][k]) for k in _SHARED_KEYS if k in states[0]})
    out["population"] = sum(int(s.get("population", 1)) for s in states)
    return out


class Learner:
    """Population plumbing: configs, noise, the policy, act / export / checkpoint, the update API.

    Subclasses build their networks in __init__ and implement `_update(real, sim, disc_real,
    disc_sim) -> dict[str, Tensor[P]]` on [P, B, dim] batches.
    """

    name = "base"
    config_cls: type = SACCoreConfig
    uses_real = False  # needs the real buffer (critic, actor or classifiers)
    uses_sim = False  # needs the sim buffer
    uses_classifiers = False  # trainer then also passes fresh classifier batches
    critic_sources: tuple[str, ...] = ()  # the buffers the critic's Bellman rows come from
    backup_note = ""  # set when the target does not follow cfg.backup_entropy (reports say which was used)

    def __init__(self, obs_dim: int, act_dim: int, cfg: Any = None, device: str | torch.device = "cpu", *,
                 members: Sequence[Any] | None = None):
        self.cfgs = [config_from(self.config_cls, c) for c in (members if members is not None else [cfg])]
        if not self.cfgs:
            raise ValueError("a population needs at least one member config")
        shared = [{k: v for k, v in asdict(c).items() if k != "seed"} for c in self.cfgs]
        if any(s != shared[0] for s in shared[1:]):
            diff = sorted(k for k in shared[0] if any(s[k] != shared[0][k] for s in shared[1:]))
            raise ValueError(f"population members may differ in their seed only; they differ in {diff}")
        self.cfg = self.cfgs[0]  # the shared hyper-parameters (seed: member 0's)
        self.population = len(self.cfgs)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.noise = Noise(self.cfg.seed, self.device)
        self.step = 0
        self.obs_normalised = False  # set_obs_normalisation was called (kept in checkpoints)
        self._modules: dict[str, nn.Module] = {}
        self._optims: dict[str, torch.optim.Optimizer] = {}

    @property
    def gen(self) -> torch.Generator:
        """The default noise source's generator (state save/restore in tests and checkpoints)."""
        return self.noise.gen

    def per_member(self, build: Callable[[], Any], seed_offset: int = 0) -> list[Any]:
        """build() once per member, each under its own seed (+ offset): member k of a population is
        initialised exactly like a single learner with member k's seed."""
        out = []
        for c in self.cfgs:
            with seeded_init(c.seed + seed_offset):
                out.append(build())
        return out

    def build_policy(self) -> PopulationPolicy:
        hidden = parse_hidden(self.cfg.hidden)
        return PopulationPolicy(self.per_member(lambda: TanhGaussianPolicy(self.obs_dim, self.act_dim, hidden))
                                ).to(self.device)

    def set_obs_normalisation(self, mean: "np.ndarray | torch.Tensor", std: "np.ndarray | torch.Tensor") -> None:
        """Every network reads (obs - mean) / std from now on: the policy (and so its ONNX
        export), the critics and their targets. `mean`, `std`: [obs_dim] for every member or
        [P, obs_dim] per member. Set once, before training (learner/task_defaults.py
        `obs_normalisation`): changing it later moves every network's input under it."""
        def shaped(x) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(x, np.float32), device=self.device)
            return t.reshape(-1, 1, self.obs_dim).expand(self.population, 1, self.obs_dim)

        m, s = shaped(mean), shaped(std).clamp(min=1e-6)
        for name in ("policy", "policy_avg", "critic", "critic_target"):
            net = self._modules.get(name)
            if net is not None:
                net.obs_mean.copy_(m)
                net.obs_std.copy_(s)
        self.obs_normalised = True

    def set_real_stats(self, stats: RealStats) -> None:
        """The real data's per-dimension statistics (learner/buffers.py RealStats, [obs] or
        [P, obs]); trainers call this after loading the real data and as it grows. Algorithms with
        classifiers standardise their inputs by it; the others ignore it."""
        classifiers = getattr(self, "classifiers", None)
        if classifiers is not None:
            classifiers.set_real_stats(stats)

    # ---- update API ------------------------------------------------------------------------------
    def _update(self, real: Batch | None, sim: Batch | None, disc_real: Batch | None,
                disc_sim: Batch | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update_population(self, real_batch: Batch | None = None, sim_batch: Batch | None = None,
                          disc_real: Batch | None = None, disc_sim: Batch | None = None) -> dict[str, list[float]]:
        """One update of every member from [P, B, dim] batches; statistics per member."""
        self.check_batches(real_batch, sim_batch, disc_real, disc_sim)
        return self.to_floats(self._update(real_batch, sim_batch, disc_real, disc_sim))

    def update(self, real_batch: Batch | None = None, sim_batch: Batch | None = None,
               disc_real: Batch | None = None, disc_sim: Batch | None = None) -> dict[str, float]:
        """One update of a single learner (P = 1) from [B, dim] batches."""
        if self.population != 1:
            raise ValueError(f"update() is the single learner's; this population has {self.population} members: "
                             "use update_population with [P, B, dim] batches")
        stats = self.update_population(lift(real_batch), lift(sim_batch), lift(disc_real), lift(disc_sim))
        return {k: v[0] for k, v in stats.items()}

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

    def to_floats(self, stats: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        """Per-member floats of every statistic with one stack + tolist (one device sync on CUDA)."""
        p = self.population
        vals = torch.stack([v.detach().float().expand(p) for v in stats.values()]).tolist()
        return dict(zip(stats.keys(), vals))

    # ---- acting and export -----------------------------------------------------------------------
    @property
    def deployed_policy(self) -> PopulationPolicy:
        """The policy that is evaluated and exported: the weight average when cfg.policy_ema is
        set (OffPolicyAlgorithm), else the online policy."""
        return self._modules.get("policy_avg", self.policy)

    @torch.no_grad()
    def act_population(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False,
                       online: bool = False) -> np.ndarray:
        """Actions [P, N, act_dim] in [-1, 1] for observations [P, N, obs_dim]: one policy call.
        Stochastic actions (exploration) come from the online policy; deterministic ones from the
        deployed policy, or the online one with `online=True`."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        if deterministic:
            return (self.policy if online else self.deployed_policy)(x, None)[0].cpu().numpy()
        return self.policy(x, self.noise.normal((*x.shape[:-1], self.act_dim)))[0].cpu().numpy()

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) in [-1, 1] of a single learner for one obs [obs_dim] or a batch [B, obs_dim]."""
        x = np.asarray(obs, dtype=np.float32)
        a = self.act_population(x.reshape(1, -1, self.obs_dim), deterministic)[0]
        return a[0] if x.ndim == 1 else a

    def policy_for_export(self, member: int = 0) -> TanhGaussianPolicy:
        """A CPU copy of member k's deployed policy only (what goes to the robot), in eval mode."""
        return self.deployed_policy.member(member).cpu().eval()

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A snapshot (deep copy): torch's state_dicts hold references to the live tensors, and an
        optimiser's load_state_dict keeps them, so two instances would share Adam moments."""
        sd: dict[str, Any] = {name: copy.deepcopy(m.state_dict()) for name, m in self._modules.items()}
        sd.update({name: copy.deepcopy(o.state_dict()) for name, o in self._optims.items()})
        sd["step"] = self.step
        sd["obs_normalised"] = self.obs_normalised
        sd["gen"] = self.noise.get_state()
        sd["algorithm"] = self.name
        sd["population"] = self.population
        return sd

    def member_state_dict(self, k: int) -> dict:
        """Member k's state as a P = 1 state dict (loadable by a single learner of the same
        algorithm, and by stack_member_states); the noise state is the population's."""
        sd = self.state_dict()
        out = _slice_member({key: v for key, v in sd.items() if key not in _SHARED_KEYS}, k)
        out.update({key: sd[key] for key in _SHARED_KEYS})
        out["population"] = 1
        return out

    def load_state_dict(self, sd: dict) -> None:
        """Restore in place: parameter objects (and the optimisers' references to them) are kept."""
        if sd.get("algorithm", self.name) != self.name:
            raise ValueError(f"checkpoint is for {sd.get('algorithm')!r}, not {self.name!r}")
        if int(sd.get("population", 1)) != self.population:
            raise ValueError(f"checkpoint holds {sd.get('population', 1)} member(s), this learner {self.population}")
        for name, m in self._modules.items():
            # a checkpoint from before the averaged policy was switched on: the average starts there
            own, mine = sd[name] if name in sd or name != "policy_avg" else sd["policy"], m.state_dict()
            missing = set(mine) - set(own)
            if missing and missing <= _NORM_BUFFERS:  # from before the critics' normalisation: identity
                own = {**own, **{k: (torch.zeros_like if k == "obs_mean" else torch.ones_like)(mine[k])
                                 for k in missing}}
            m.load_state_dict(own)
        self.obs_normalised = bool(sd.get("obs_normalised", False))
        for name, o in self._optims.items():
            o.load_state_dict(copy.deepcopy(sd[name]))  # never share moments with the source
        self.step = int(sd["step"])
        self.noise.set_state(sd["gen"])


class OffPolicyAlgorithm(Learner):
    """SAC core. Subclasses implement `_update` with their own critic loss."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Any = None, device: str | torch.device = "cpu", *,
                 members: Sequence[Any] | None = None):
        super().__init__(obs_dim, act_dim, cfg, device, members=members)
        hidden = parse_hidden(self.cfg.hidden)
        # per member, policy then critics under its seed (the order a single learner always used)
        nets = self.per_member(lambda: (TanhGaussianPolicy(obs_dim, act_dim, hidden),
                                        TwinQ(obs_dim, act_dim, hidden, self.cfg.n_critics,
                                              self.cfg.critic_layer_norm)))
        self.policy = PopulationPolicy([n[0] for n in nets]).to(self.device)
        self.critic = PopulationQ([n[1] for n in nets]).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)  # hard copy at init
        self.log_alpha = nn.Parameter(torch.full((self.population,), float(np.log(self.cfg.alpha_init)),
                                                 device=self.device))
        self.target_entropy = float(-act_dim if self.cfg.target_entropy is None else self.cfg.target_entropy)
        self.policy_opt = make_adam(self.policy.parameters(), self.cfg.policy_lr)
        self.critic_opt = make_adam(self.critic.parameters(), self.cfg.q_lr)
        self.alpha_opt = make_adam([self.log_alpha], self.cfg.alpha_lr)
        self._target_params = list(self.critic_target.parameters())
        self._online_params = list(self.critic.parameters())
        self._modules.update({"policy": self.policy, "critic": self.critic, "critic_target": self.critic_target})
        if not 0.0 <= self.cfg.policy_ema <= 1.0:
            raise ValueError(f"policy_ema must be in [0, 1] (0 = off), got {self.cfg.policy_ema}")
        if self.cfg.policy_ema > 0:  # the deployed policy: a running average of the online one's weights
            self.policy_avg = copy.deepcopy(self.policy).requires_grad_(False)
            self._modules["policy_avg"] = self.policy_avg
            self._avg_params, self._policy_params = list(self.policy_avg.parameters()), list(self.policy.parameters())
        self._optims.update({"policy_opt": self.policy_opt, "critic_opt": self.critic_opt,
                             "alpha_opt": self.alpha_opt})

    # ---- shared loss pieces ----------------------------------------------------------------------
    def sample_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a ~ pi(.|s) for [P, B, obs_dim] with noise from the population's noise source."""
        return self.policy(obs, self.noise.normal((*obs.shape[:-1], self.act_dim)))

    def td_target(self, batch: Batch, extra_reward: torch.Tensor | None = None) -> torch.Tensor:
        """y = r' + gamma * (1 - done) * min_i Q_i'(s', a'~pi(s')) [- alpha log pi if backup_entropy], [P, B],
        at most r'_max / (1 - gamma) when cfg.reward_max is set."""
        with torch.no_grad():
            next_act, next_logp = self.sample_policy(batch.next_obs)
            next_q = self.critic_target(batch.next_obs, next_act).amin(1)
            if self.cfg.backup_entropy:
                next_q = next_q - self.log_alpha.exp()[:, None] * next_logp
            rew = self.cfg.reward_scale * batch.rew + self.cfg.reward_bias
            if extra_reward is not None:
                rew = rew + extra_reward
            y = torch.addcmul(rew, 1.0 - batch.done, next_q, value=self.cfg.gamma)
            if self.cfg.reward_max is not None:  # no return exceeds r_max / (1 - gamma)
                y = y.clamp(max=(self.cfg.reward_scale * self.cfg.reward_max + self.cfg.reward_bias)
                            / (1.0 - self.cfg.gamma))
            return y

    def actor_and_alpha_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Per member [P]: L_pi = mean(alpha log pi - min_i Q_i(s, a_new)); L_alpha = -mean(log_alpha (log pi + H)).

        The critics are evaluated with detached weights, so L_pi moves the policy only.
        """
        new_act, log_pi = self.sample_policy(obs)
        alpha = self.log_alpha.exp().detach()
        q_new = self.critic(obs, new_act, detach_params=True).amin(1)
        policy_loss = (alpha[:, None] * log_pi - q_new).mean(1)
        log_pi_mean = log_pi.detach().mean(1)
        if self.cfg.auto_alpha:
            alpha_loss = -self.log_alpha * (log_pi_mean + self.target_entropy)
        else:
            alpha_loss = torch.zeros(self.population, device=self.device)
        stats = {"losses/policy": policy_loss, "losses/alpha": alpha_loss, "charts/alpha": alpha,
                 "charts/log_pi": log_pi_mean}
        return policy_loss, alpha_loss, stats

    def optimise(self, critic_loss: torch.Tensor, policy_loss: torch.Tensor, alpha_loss: torch.Tensor,
                 extra_opts: tuple[torch.optim.Optimizer, ...] = ()) -> None:
        """One backward through the losses summed over members, then step alpha, pi, Q (reference
        order), any extra optimisers, and Polyak. Each argument is [P] (one loss per member)."""
        for opt in (self.alpha_opt, self.policy_opt, self.critic_opt, *extra_opts):
            opt.zero_grad(set_to_none=True)
        (critic_loss + policy_loss + alpha_loss).sum().backward()
        if self.cfg.auto_alpha:
            self.alpha_opt.step()
        self.policy_opt.step()
        self.critic_opt.step()
        for opt in extra_opts:
            opt.step()
        self.polyak()
        self.step += 1

    @torch.no_grad()
    def polyak(self) -> None:
        """target <- target + tau * (online - target), all tensors in one foreach call; the same
        for the averaged policy at cfg.policy_ema."""
        torch._foreach_lerp_(self._target_params, self._online_params, self.cfg.tau)
        if self.cfg.policy_ema > 0:
            torch._foreach_lerp_(self._avg_params, self._policy_params, self.cfg.policy_ema)

    @staticmethod
    def critic_stats(stats: dict, per_critic: dict[str, torch.Tensor]) -> None:
        """stats['losses/qf{i+1}<suffix>'] = term[:, i] for each [P, n_critics] term."""
        for suffix, term in per_critic.items():
            for i in range(term.shape[1]):
                stats[f"losses/qf{i + 1}{suffix}"] = term[:, i]

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["log_alpha"] = self.log_alpha.detach().clone()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"])

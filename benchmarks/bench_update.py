"""Updates per second of each learner algorithm, and of a naive reference-style H2O step, side by side.

    .venv/bin/python benchmarks/bench_update.py                  # 1 and 2 CPU threads (+ cuda if present)
    .venv/bin/python benchmarks/bench_update.py --threads 2 --seconds 5 --algorithms h2o naive_h2o

Setting (the learner-update speed target, docs/benchmarks.md): batch 128 real + 128 sim (classifiers 256 + 256), 256-256 networks,
obs 17 / act 6 (HalfCheetah dims), synthetic data in preallocated buffers. "naive_h2o" is the
reference's structure: two separate critic MLPs, discriminator inference with autograd graphs,
D_sa evaluated for all 10 repeated samples, Q(sim) evaluated twice (Bellman and penalty), the
policy run separately on each batch, and one backward per loss. The ratio h2o / naive_h2o is the
speed-up of learner/algorithms/h2o.py on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from learner.algorithms import REGISTRY, make
from learner.buffers import TransitionBuffer
from learner.networks import Discriminator, TanhGaussianPolicy, mlp

OBS_DIM, ACT_DIM = 17, 6


class NaiveH2OStep:
    """A plain port of the reference update's structure (for the speed ratio only; not used elsewhere)."""

    uses_classifiers = True

    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256), device="cpu"):
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, hidden).to(device)
        self.q1, self.q2 = (mlp(obs_dim + act_dim, hidden, 1).to(device) for _ in range(2))
        self.t1, self.t2 = (mlp(obs_dim + act_dim, hidden, 1).to(device) for _ in range(2))
        self.d_sa = Discriminator(obs_dim + act_dim, hidden).to(device)
        self.d_sas = Discriminator(2 * obs_dim + act_dim, hidden).to(device)
        self.log_alpha = nn.Parameter(torch.zeros((), device=device))
        self.opt_pi = torch.optim.Adam(self.policy.parameters(), 3e-4)
        self.opt_q = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 3e-4)
        self.opt_a = torch.optim.Adam([self.log_alpha], 3e-4)
        self.opt_dsa = torch.optim.Adam(self.d_sa.parameters(), 3e-4)
        self.opt_dsas = torch.optim.Adam(self.d_sas.parameters(), 3e-4)
        self.sigma = torch.ones(obs_dim, device=device)

    def _q(self, net, s, a):
        return net(torch.cat([s, a], 1)).squeeze(-1)

    def _ratio(self, s, a, sp):
        sa_logits = self.d_sa(torch.cat([s, a], 1))
        sas_logits = self.d_sas(torch.cat([s, a, sp], 1))
        p_sa, p_sas = F.softmax(sa_logits, 1), F.softmax(sas_logits + sa_logits, 1)
        return (p_sas[:, 0] * p_sa[:, 1]) / (p_sas[:, 1] * p_sa[:, 0])

    def update(self, real_batch, sim_batch, disc_real, disc_sim):
        r, s = real_batch, sim_batch
        # discriminators, two optimisers
        x = torch.cat([torch.cat([disc_real.obs, disc_real.act, disc_real.next_obs], 1),
                       torch.cat([disc_sim.obs, disc_sim.act, disc_sim.next_obs], 1)])
        x = x + 0.1 * torch.randn_like(x)
        y = torch.cat([torch.zeros(len(disc_real)), torch.ones(len(disc_sim))]).long().to(x.device)
        sa_logits = self.d_sa(x[:, : OBS_DIM + ACT_DIM])
        loss = F.cross_entropy(sa_logits, y) + F.cross_entropy(self.d_sas(x) + sa_logits, y)
        self.opt_dsa.zero_grad(); self.opt_dsas.zero_grad(); loss.backward(); self.opt_dsa.step(); self.opt_dsas.step()
        # policy and alpha
        obs = torch.cat([r.obs, s.obs])
        a_new, logpi = self.policy(obs)
        q_new = torch.min(self._q(self.q1, obs, a_new), self._q(self.q2, obs, a_new))
        alpha = self.log_alpha.exp()
        policy_loss = (alpha * logpi - q_new).mean()
        alpha_loss = -(self.log_alpha * (logpi - ACT_DIM).detach()).mean()
        # targets, separately per batch
        ys = []
        for b in (r, s):
            na, _ = self.policy(b.next_obs)
            tq = torch.min(self._q(self.t1, b.next_obs, na), self._q(self.t2, b.next_obs, na))
            ys.append((b.rew + 0.99 * (1 - b.done) * tq).detach())
        w = self._ratio(s.obs, s.act, s.next_obs).clamp(1e-5, 1).detach()  # builds a graph, then drops it
        # gap weight: everything repeated 10x, D_sa included
        n = 10
        sr, ar = s.obs.repeat_interleave(n, 0), s.act.repeat_interleave(n, 0)
        spr = s.next_obs.repeat_interleave(n, 0) + self.sigma * torch.randn(len(s) * n, OBS_DIM, device=sr.device)
        u = (-torch.log(self._ratio(sr, ar, spr))).reshape(-1, n).mean(1).clamp(1e-45, 10)
        omega = (u / u.sum()).detach()
        q_loss = 0.0
        for net in (self.q1, self.q2):
            qr, qs = self._q(net, r.obs, r.act), self._q(net, s.obs, s.act)
            q_loss = q_loss + F.mse_loss(qr, ys[0]) + (w * (qs - ys[1]) ** 2).mean()
            qs_again = self._q(net, s.obs, s.act)  # the reference evaluates Q(sim) again for the penalty
            q_loss = q_loss + 0.01 * (torch.logsumexp(qs_again + torch.log(omega), 0) - qr.mean()).clamp(-1000, 1000)
        self.opt_a.zero_grad(); alpha_loss.backward(); self.opt_a.step()
        self.opt_pi.zero_grad(); policy_loss.backward(); self.opt_pi.step()
        self.opt_q.zero_grad(); q_loss.backward(); self.opt_q.step()
        with torch.no_grad():
            for t, q in ((self.t1, self.q1), (self.t2, self.q2)):
                for pt, pq in zip(t.parameters(), q.parameters()):
                    pt.mul_(1 - 5e-3).add_(5e-3 * pq)
        return {"losses/q": float(q_loss.detach())}


def make_buffers(device: str, n: int = 20_000) -> tuple[TransitionBuffer, TransitionBuffer]:
    rng = np.random.default_rng(0)
    out = []
    for seed in (1, 2):
        buf = TransitionBuffer(OBS_DIM, ACT_DIM, n + 1, device, seed=seed)
        buf.load_fixed({"observations": rng.standard_normal((n, OBS_DIM)), "actions": rng.uniform(-1, 1, (n, ACT_DIM)),
                        "rewards": rng.standard_normal(n), "next_observations": rng.standard_normal((n, OBS_DIM)),
                        "terminals": np.zeros(n)})
        out.append(buf)
    return out[0], out[1]


class Subject:
    """One algorithm with its buffers and batch recipe, ready to be timed."""

    def __init__(self, name: str, device: str, batch: int, disc_batch: int, hidden: str):
        self.real, self.sim = make_buffers(device)
        self.batch, self.disc_batch = batch, disc_batch
        if name == "naive_h2o":
            self.algo = NaiveH2OStep(OBS_DIM, ACT_DIM, tuple(int(h) for h in hidden.split("-")), device)
            self.uses_real = self.uses_sim = True
        else:
            cfg = {"hidden": hidden}
            if "disc_hidden" in REGISTRY[name].config_cls.__dataclass_fields__:
                cfg["disc_hidden"] = hidden  # the classifiers at the same size as naive_h2o's
            self.algo = make(name, OBS_DIM, ACT_DIM, cfg, device)
            self.uses_real = "real" in self.algo.critic_sources
            self.uses_sim = "sim" in self.algo.critic_sources
            self.algo.set_real_stats(self.real.stats())
        self.device = device
        for _ in range(5):  # warm-up (allocator, first-call paths)
            self.step()

    def step(self) -> None:
        b, real, sim = self.batch, self.real, self.sim
        if self.uses_real and self.uses_sim:
            kw = {"real_batch": real.sample(b), "sim_batch": sim.sample(b)}
        elif self.uses_sim:
            kw = {"real_batch": None, "sim_batch": sim.sample(2 * b)}
        else:
            kw = {"real_batch": real.sample(2 * b), "sim_batch": None}
        if getattr(self.algo, "uses_classifiers", False):
            kw["disc_real"], kw["disc_sim"] = real.sample(self.disc_batch), sim.sample(self.disc_batch)
        self.algo.update(**kw)  # every update returns floats: a cuda sync is included

    def rate(self, seconds: float) -> float:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.step()
            n += 1
        return n / (time.perf_counter() - t0)


def measure_all(names: list[str], device: str, seconds: float, rounds: int, batch: int, disc_batch: int,
                hidden: str) -> dict[str, float]:
    """Best-of-`rounds` updates/s per algorithm, the algorithms interleaved round by round so that
    load from other processes on a shared machine hits all of them alike."""
    subjects = {n: Subject(n, device, batch, disc_batch, hidden) for n in names}
    best = {n: 0.0 for n in names}
    for _ in range(rounds):
        for n, s in subjects.items():
            best[n] = max(best[n], s.rate(seconds / rounds))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to measure")
    p.add_argument("--algorithms", nargs="+", default=["h2o", "naive_h2o", "sac", "cql", "darc", "darc_plus", "h2o_plus"],
                   help="algorithms to measure (registry names, plus naive_h2o)")
    p.add_argument("--seconds", type=float, default=4.0, help="measuring time per algorithm and setting")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds; the best round is reported")
    p.add_argument("--batch", type=int, default=128, help="rows per source (real, sim) per update")
    p.add_argument("--disc-batch", type=int, default=256, help="rows per source per classifier update")
    p.add_argument("--hidden", default="256-256", help="hidden sizes of every network")
    p.add_argument("--no-cuda", action="store_true", help="skip the cuda row even when a GPU is present")
    args = p.parse_args()

    settings = [("cpu", t) for t in args.threads]
    if torch.cuda.is_available() and not args.no_cuda:
        settings.append(("cuda", max(args.threads)))
    results: dict[tuple[str, int], dict[str, float]] = {}
    for device, threads in settings:
        torch.set_num_threads(threads)
        results[(device, threads)] = measure_all(args.algorithms, device, args.seconds, args.rounds, args.batch,
                                                 args.disc_batch, args.hidden)
    cols = [f"{d}/{t}thr" if d == "cpu" else d for d, t in settings]
    print(f"updates/s (best of {args.rounds} interleaved rounds), batch {args.batch}+{args.batch}, nets {args.hidden}, obs {OBS_DIM}/act {ACT_DIM}, "
          f"torch {torch.__version__}")
    print(f"{'algorithm':<12}" + "".join(f"{c:>12}" for c in cols))
    for a in args.algorithms:
        print(f"{a:<12}" + "".join(f"{results[s][a]:>12.1f}" for s in settings))
    if "h2o" in args.algorithms and "naive_h2o" in args.algorithms:
        print(f"{'h2o/naive':<12}" + "".join(f"{results[s]['h2o'] / results[s]['naive_h2o']:>11.2f}x" for s in settings))


if __name__ == "__main__":
    main()

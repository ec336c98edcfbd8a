"""Sim rollout workers: processes that step the nominal MuJoCo model with the latest policy.

Why processes: MuJoCo stepping and the per-step policy forward are Python-heavy; in the trainer's
process they would hold the GIL against the updates and the network loop. Each worker owns one env
and a CPU copy of the policy; a request carries the newest policy weights, so every chunk of sim
data is collected with the policy as it is now ("latest policy weights", not the last export).

Request: (weights state_dict, n_steps, seed). Reply: dict of D4RL-style arrays + episode returns.
Episodes continue across requests (the env is not reset between chunks), as on-line SAC does.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    task: str
    profile: str
    obs_dim: int
    act_dim: int
    hidden: str
    seed: int


def _worker_main(spec: WorkerSpec, index: int, requests: mp.Queue, replies: mp.Queue) -> None:
    import torch

    from learner.networks import TanhGaussianPolicy, parse_hidden
    from learner.rollout import ActionScaler, make_env

    torch.set_num_threads(1)
    env = make_env(spec.task, spec.profile, seed=spec.seed)
    scale = ActionScaler(env)
    policy = TanhGaussianPolicy(spec.obs_dim, spec.act_dim, parse_hidden(spec.hidden)).eval()
    gen = torch.Generator().manual_seed(spec.seed)
    obs, _ = env.reset(seed=spec.seed)
    ep_ret = 0.0
    while True:
        req = requests.get()
        if req is None:
            return
        weights, n_steps = req
        policy.load_state_dict(weights)
        cols = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                "terminals", "timeouts")}
        returns: list[float] = []
        with torch.no_grad():
            for _ in range(n_steps):
                a, _ = policy(torch.as_tensor(np.asarray(obs, np.float32)).unsqueeze(0),
                              generator=gen)
                a = a[0].numpy()
                nxt, r, term, trunc, _ = env.step(scale(a))
                cols["observations"].append(obs)
                cols["actions"].append(a)
                cols["rewards"].append(r)
                cols["next_observations"].append(nxt)
                cols["terminals"].append(term)
                cols["timeouts"].append(trunc and not term)
                ep_ret += float(r)
                if term or trunc:
                    returns.append(ep_ret)
                    ep_ret = 0.0
                    obs, _ = env.reset()
                else:
                    obs = nxt
        out = {k: np.asarray(v, np.float32) for k, v in cols.items()}
        replies.put((index, out, returns))


class SimWorkers:
    """A pool of rollout processes, one outstanding request each; `poll()` never blocks long."""

    def __init__(self, spec: WorkerSpec, n_workers: int, chunk_steps: int) -> None:
        self.chunk_steps = chunk_steps
        ctx = mp.get_context("spawn")  # no fork of a process holding torch/ZMQ threads
        self._replies: mp.Queue = ctx.Queue()
        self._requests: list[mp.Queue] = []
        self._procs = []
        self._idle: list[int] = []
        for i in range(n_workers):
            q = ctx.Queue()
            s = WorkerSpec(**{**spec.__dict__, "seed": spec.seed * 1000 + i})
            p = ctx.Process(target=_worker_main, args=(s, i, q, self._replies), daemon=True,
                            name=f"sim-worker-{i}")
            p.start()
            self._requests.append(q)
            self._procs.append(p)
            self._idle.append(i)
        self.steps_collected = 0

    def submit(self, weights: dict) -> int:
        """Give every idle worker a chunk with these weights; returns how many were started."""
        started = 0
        while self._idle:
            i = self._idle.pop()
            self._requests[i].put((weights, self.chunk_steps))
            started += 1
        return started

    def poll(self, timeout_s: float = 0.0) -> list[tuple[dict, list[float]]]:
        """Finished chunks (each frees its worker for the next `submit`)."""
        out = []
        try:
            item = self._replies.get(timeout=timeout_s) if timeout_s > 0 else \
                self._replies.get_nowait()
            out.append(item)
            while True:
                out.append(self._replies.get_nowait())
        except queue.Empty:
            pass
        for index, data, _ in out:
            self.steps_collected += len(data["rewards"])
            self._idle.append(index)
        return [(data, returns) for _, data, returns in out]

    def alive(self) -> bool:
        return all(p.is_alive() for p in self._procs)

    def close(self) -> None:
        for q in self._requests:
            try:
                q.put_nowait(None)
            except Exception:  # noqa: BLE001 - a full or closed queue: terminate below
                pass
        for p in self._procs:
            p.join(timeout=3)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)

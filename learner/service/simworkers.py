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


class RolloutWorker:
    """One env and a CPU copy of the policy: `rollout(weights, n_steps)` runs the next chunk.

    The body of every worker, a local process (SimWorkers) or a Ray actor on another machine
    (RaySimWorkers): the same spec, seed and weights give the same chunk on either.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from learner.networks import TanhGaussianPolicy, parse_hidden
        from learner.rollout import ActionScaler, make_env

        torch.set_num_threads(1)
        self._torch = torch
        self.env = make_env(spec.task, spec.profile, seed=spec.seed)
        self.scale = ActionScaler(self.env)
        self.policy = TanhGaussianPolicy(spec.obs_dim, spec.act_dim, parse_hidden(spec.hidden)).eval()
        self.gen = torch.Generator().manual_seed(spec.seed)
        self.obs, _ = self.env.reset(seed=spec.seed)
        self.ep_ret = 0.0

    def rollout(self, weights: dict, n_steps: int) -> tuple[dict, list[float]]:
        torch = self._torch
        self.policy.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                  "terminals", "timeouts")}
        returns: list[float] = []
        obs = self.obs
        with torch.no_grad():
            for _ in range(n_steps):
                a, _ = self.policy(torch.as_tensor(np.asarray(obs, np.float32)).unsqueeze(0), generator=self.gen)
                a = a[0].numpy()
                nxt, r, term, trunc, _ = self.env.step(self.scale(a))
                cols["observations"].append(obs)
                cols["actions"].append(a)
                cols["rewards"].append(r)
                cols["next_observations"].append(nxt)
                cols["terminals"].append(term)
                cols["timeouts"].append(trunc and not term)
                self.ep_ret += float(r)
                if term or trunc:
                    returns.append(self.ep_ret)
                    self.ep_ret = 0.0
                    obs, _ = self.env.reset()
                else:
                    obs = nxt
        self.obs = obs
        return {k: np.asarray(v, np.float32) for k, v in cols.items()}, returns


def _worker_main(spec: WorkerSpec, index: int, requests: mp.Queue, replies: mp.Queue) -> None:
    worker = RolloutWorker(spec)
    while True:
        req = requests.get()
        if req is None:
            return
        weights, n_steps = req
        out, returns = worker.rollout(weights, n_steps)
        replies.put((index, out, returns))


def worker_specs(spec: WorkerSpec, n_workers: int) -> list[WorkerSpec]:
    """Worker i's spec: its own seed (spec.seed * 1000 + i), the same for processes and actors."""
    return [WorkerSpec(**{**spec.__dict__, "seed": spec.seed * 1000 + i}) for i in range(n_workers)]


class SimWorkers:
    """A pool of rollout processes, one outstanding request each; `poll()` never blocks long."""

    def __init__(self, spec: WorkerSpec, n_workers: int, chunk_steps: int) -> None:
        self.chunk_steps = chunk_steps
        ctx = mp.get_context("spawn")  # no fork of a process holding torch/ZMQ threads
        self._replies: mp.Queue = ctx.Queue()
        self._requests: list[mp.Queue] = []
        self._procs = []
        self._idle: list[int] = []
        for i, s in enumerate(worker_specs(spec, n_workers)):
            q = ctx.Queue()
            p = ctx.Process(target=_worker_main, args=(s, i, q, self._replies), daemon=True,
                            name=f"sim-worker-{i}")
            p.start()
            self._requests.append(q)
            self._procs.append(p)
            self._idle.append(i)
        self.steps_collected = 0

    @property
    def idle(self) -> int:
        """Workers waiting for a chunk."""
        return len(self._idle)

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


class RaySimWorkers:
    """SimWorkers' interface with each worker a Ray actor, on any machine of a Ray cluster.

    Why: the learner's GPU workstation has few cores next to the GPU, and sim rollouts are CPU
    work; a cluster (docs/cluster.md: `ray start` on each host) lends as many as it has. The
    actors run RolloutWorker, so the data are those local processes would collect. Weights travel
    as numpy arrays. An actor that dies (its node lost) is replaced by a fresh one with the same
    spec (its episode starts again from a reset); `alive()` stays true while the cluster can run it.
    """

    def __init__(self, spec: WorkerSpec, n_workers: int, chunk_steps: int, address: str) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError(f"sim_ray_address={address!r} needs ray: pip install -e '.[cluster]'") from exc
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self.chunk_steps = chunk_steps
        self._specs = worker_specs(spec, n_workers)
        self._actors = [self._actor_cls.remote(s) for s in self._specs]
        self._pending: dict = {}  # ObjectRef -> worker index
        self._idle = list(range(n_workers))
        self.steps_collected = 0
        self.replaced = 0
        log.info("%d sim worker(s) as Ray actors on %s", n_workers, address)

    @property
    def idle(self) -> int:
        """Actors waiting for a chunk."""
        return len(self._idle)

    def submit(self, weights: dict) -> int:
        arrays = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in weights.items()}
        ref = self._ray.put(arrays)  # one copy in the object store for every actor
        started = 0
        while self._idle:
            i = self._idle.pop()
            self._pending[self._actors[i].rollout.remote(ref, self.chunk_steps)] = i
            started += 1
        return started

    def poll(self, timeout_s: float = 0.0) -> list[tuple[dict, list[float]]]:
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout_s)
        out = []
        for ref in ready:
            i = self._pending.pop(ref)
            self._idle.append(i)
            try:
                data, returns = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:  # the actor or its node died: a new one
                log.warning("sim worker %d lost (%s); starting a new one", i, type(exc).__name__)
                self._actors[i] = self._actor_cls.remote(self._specs[i])
                self.replaced += 1
                continue
            self.steps_collected += len(data["rewards"])
            out.append((data, returns))
        return out

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors, self._pending = [], {}

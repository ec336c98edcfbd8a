"""Background training: H2O (or a baseline, by name) on real rows + nominal-sim rollouts.

Why a thread in the service process: the algorithm, the buffers and the publisher live in one
address space with the network loop (torch releases the GIL inside its kernels); the heavy sim
stepping runs in worker processes (`simworkers`). The trainer owns the algorithm and both buffers;
other threads hand it real rows through `RealFeed` and read its `snapshot()`.

Every `export_every_updates` updates (or `export_every_s` seconds), once `pretrain_updates` are
done, it exports ONNX (metadata, sha256, parity check: learner/export.py) and publishes it if it
passes the publish gate (stays up on the nominal model; with `publish_gate_improve`, also beats
the return of the last published policy on the same seeds; each publish is a row of
published.jsonl); every `checkpoint_every_s` it writes an
atomic checkpoint (networks, optimisers, sim buffer, counters, policy version). The real buffer is
not checkpointed: it is rebuilt from the offline datasets and the durable store on start.

Non-finite training (a poisoned batch, a diverging update): every update's losses and the policy
weights handed to the sim workers are checked; a non-finite update is undone by restoring the last
known-good state (kept in memory every `GOOD_STATE_EVERY` updates), so the run recovers by itself.
Nothing non-finite is ever exported or checkpointed, and a checkpoint is loaded with
`torch.load(weights_only=True)` (a checkpoint that needs code to load, or holds NaN, is moved
aside and training starts afresh).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from learner import algorithms
from learner.buffers import TransitionBuffer
from learner.export import PolicyMetadata, export_policy
from learner.service.config import ServeConfig
from learner.service.publisher import PolicyBlob, Publisher
from learner.service.ingest import RealFeed
from learner.service.simworkers import RaySimWorkers, SimWorkers, WorkerSpec
from learner.service.tasks import task_info
from learner.algorithms.base import sample_update_batches
from learner.task_defaults import algorithm_config, obs_normalisation
from protocol import strict_json
from protocol.atomic_file import write_atomic

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
GOOD_STATE_EVERY = 200  # updates between in-memory known-good snapshots
NONFINITE_LOG_EVERY_S = 10.0
SIM_CHUNK_STEPS = 200  # steps per worker request: small enough to track the latest weights


@dataclass
class TrainerStats:
    updates: int = 0
    updates_per_s: float = 0.0
    sim_steps: int = 0
    sim_return: float = float("nan")
    sim_episodes: int = 0
    real_rows: int = 0
    real_offline_rows: int = 0
    sim_rows: int = 0
    policy_version: int = 0
    last_export_unix: float = 0.0
    last_export_s: float = 0.0
    gated: int = 0  # exports held back by the publish gate
    gate_return: float = float("nan")  # nominal-sim return of the last gate evaluation
    best_gate_return: float = float("-inf")  # gate return of the last published policy
    losses: dict = field(default_factory=dict)
    state: str = "starting"
    nonfinite_updates: int = 0  # updates undone because losses or weights went non-finite


def all_finite(obj) -> bool:
    """True if every float tensor / number in a (nested) state dict is finite."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def _losses_finite(losses) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in (losses or {}).values())
    except (TypeError, ValueError):
        return True  # a non-scalar entry: judged by the weights check instead


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save, atomically and durably (protocol/atomic_file.py)."""
    write_atomic(path, lambda f: torch.save(obj, f))


class Trainer:
    """Owns the algorithm and buffers; `run(stop_event)` trains until stopped or a limit is hit."""

    def __init__(self, cfg: ServeConfig, publisher: Publisher, feed: RealFeed,
                 offline: list[dict[str, np.ndarray]] | None = None) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.feed = feed
        self.info = task_info(cfg.task)
        self.device = torch.device(cfg.device)
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        o, a = self.info.obs_dim, self.info.act_dim
        data = _concat(offline or [])
        n_off = len(data["rewards"]) if data else 0
        self.real = TransitionBuffer(o, a, n_off + cfg.real_capacity, self.device, seed=cfg.seed * 2 + 1)
        if n_off:
            self.real.load_fixed(data)
        self.sim = TransitionBuffer(o, a, cfg.sim_capacity, self.device, seed=cfg.seed * 2 + 2)
        self._centre_sum, self._centre_n = np.zeros(o), 0  # the first streamed rows (_normalise_obs)
        # decided once: _ready() asks on every pass of the training loop
        self._norm_applies = cfg.obs_normalisation and obs_normalisation(cfg.task, np.zeros(o)) is not None
        algo_cfg = algorithm_config(cfg.algorithm, cfg.task, hidden=cfg.hidden, seed=cfg.seed,
                                    disc_hidden=cfg.disc_hidden, overrides=cfg.algo)
        self.algo = algorithms.make(cfg.algorithm, o, a, algo_cfg, self.device)
        self.stats = TrainerStats(real_offline_rows=n_off)
        self._lock = threading.Lock()
        self._sim_returns: collections.deque = collections.deque(maxlen=20)
        self.run_dir = cfg.run_path
        self.policy_dir = self.run_dir / "policies"
        self.workers: SimWorkers | RaySimWorkers | None = None
        self._gate_env = None
        self._sim_requested = 0  # sim steps asked of the workers so far (paces them, _collect_sim)
        self._update_times: collections.deque = collections.deque(maxlen=200)
        self._good_state: dict | None = None
        self._good_at = -1
        self._nonfinite_logged = 0.0
        self._loss_sums: dict[str, list] = {}  # key -> [sum, count] since the last take_loss_means()

    # ------------------------------------------------------------------ non-finite guard
    def _keep_good_state(self) -> None:
        state = self.algo.state_dict()
        if all_finite(state):
            self._good_state, self._good_at = state, self.stats.updates

    def _undo_nonfinite(self, what: str) -> None:
        """Restore the last known-good weights and optimiser state (the bad update is skipped)."""
        with self._lock:
            self.stats.nonfinite_updates += 1
        now = time.monotonic()
        if now - self._nonfinite_logged >= NONFINITE_LOG_EVERY_S:
            self._nonfinite_logged = now
            log.error("non-finite %s at update %d: restored the state of update %d (%d undone "
                      "so far). Rows beyond the ingest bounds never reach training; if this "
                      "repeats, check the offline datasets and the algorithm config",
                      what, self.stats.updates, self._good_at, self.stats.nonfinite_updates)
        if self._good_state is not None:
            self.algo.load_state_dict(self._good_state)

    def weights_finite(self) -> bool:
        return all_finite(self.algo.state_dict())

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> Path | None:
        path = self.run_dir / CHECKPOINT_NAME
        algo_state = self.algo.state_dict()
        if not all_finite(algo_state):
            log.error("checkpoint skipped at %d updates: the weights are not finite (the last "
                      "good checkpoint is kept)", self.stats.updates)
            return None
        state = {"algo": algo_state, "sim": self.sim.state_dict(),
                 "stats": {k: v for k, v in self.stats.__dict__.items() if k != "losses"},
                 "config": {k: v for k, v in self.cfg.__dict__.items()}}
        atomic_torch_save(state, path)
        log.info("checkpoint at %d updates, policy v%d -> %s", self.stats.updates,
                 self.stats.policy_version, path)
        return path

    def try_resume(self) -> bool:
        path = self.run_dir / CHECKPOINT_NAME
        if not (self.cfg.resume and path.exists()):
            return False
        try:  # weights_only: a checkpoint must never be able to run code when loaded
            state = torch.load(path, map_location=self.device, weights_only=True)
            if not all_finite(state.get("algo")):
                raise ValueError("it holds non-finite weights")
        except Exception as exc:  # noqa: BLE001 - unpickling refused, corrupt, NaN: start afresh
            aside = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            log.error("checkpoint %s not loaded (%s: %s); moved to %s, training starts afresh",
                      path, type(exc).__name__, str(exc)[:300], aside)
            return False
        self.algo.load_state_dict(state["algo"])
        self.sim.load_state_dict(state["sim"])
        for k, v in state["stats"].items():
            if hasattr(self.stats, k) and k not in ("real_rows", "real_offline_rows", "state"):
                setattr(self.stats, k, v)
        version = self.stats.policy_version
        onnx_path = self._policy_path(version)
        if version and onnx_path.exists():  # robots that reconnect get the latest policy again
            self.publisher.publish(PolicyBlob.from_file(onnx_path, version, self._props(version)))
        log.info("resumed from %s: %d updates, policy v%d", path, self.stats.updates, version)
        return True

    # ------------------------------------------------------------------ export
    def _policy_path(self, version: int) -> Path:
        return self.policy_dir / f"policy-v{version:05d}.onnx"

    def _props(self, version: int) -> dict:
        return PolicyMetadata(version=version, task=self.cfg.task, algorithm=self.cfg.algorithm,
                              parent=str(version - 1) if version > 1 else "",
                              action_scale=self.info.action_scale,
                              control_hz=self.info.control_hz).props(self.info.obs_dim,
                                                                     self.info.act_dim)

    def passes_gate(self) -> bool:
        """The publish gate, on the nominal model the learner trusts (deterministic policy):
        - its episodes must last `publish_gate_steps` steps on average (a policy that falls in
          the simulator it trusts is not sent);
        - with `publish_gate_improve`, its mean return must beat the last published policy's on
          the same seeds (robots only ever get a policy the simulator ranks higher)."""
        cfg = self.cfg
        steps = cfg.publish_gate_steps
        if steps <= 0 and not cfg.publish_gate_improve:
            return True
        from learner.rollout import evaluate, make_env

        if self._gate_env is None:
            self._gate_env = make_env(cfg.task, cfg.sim_profile, seed=cfg.seed)
        seed = cfg.seed if cfg.publish_gate_improve else cfg.seed + self.stats.updates
        # Comparing returns needs whole episodes; the survival check alone can stop at `steps`.
        result = evaluate(self._gate_env, lambda o: self.algo.act(o, deterministic=True),
                          episodes=cfg.publish_gate_episodes, seed=seed,
                          max_episode_steps=None if cfg.publish_gate_improve or steps <= 0 else steps)
        ret = result["return_mean"]
        why = ""
        if steps > 0 and result["length_mean"] < steps:
            why = f"fell after {result['length_mean']:.0f} of {steps} sim steps"
        elif cfg.publish_gate_improve and not ret > self.stats.best_gate_return:
            why = f"sim return {ret:.0f} does not beat the published {self.stats.best_gate_return:.0f}"
        with self._lock:
            self.stats.gate_return = ret
            self.stats.gated += 1 if why else 0
        if why:
            log.info("publish gate: policy at %d updates %s; not published", self.stats.updates, why)
        return not why

    def export_and_publish(self) -> PolicyBlob | None:
        if not self.weights_finite():
            self._undo_nonfinite("weights before export")
            return None
        if not self.passes_gate():
            return None
        version = self.stats.policy_version + 1
        meta = PolicyMetadata(version=version, task=self.cfg.task, algorithm=self.cfg.algorithm,
                              parent=str(version - 1) if version > 1 else "",
                              action_scale=self.info.action_scale, control_hz=self.info.control_hz)
        t0 = time.perf_counter()
        exported = export_policy(self.algo.policy_for_export(), meta, self._policy_path(version))
        blob = PolicyBlob(version=version, onnx=exported.onnx_bytes, sha256=exported.sha256,
                          metadata=dict(exported.metadata), published_unix=time.time())
        self.publisher.publish(blob)
        with self._lock:
            self.stats.policy_version = version
            self.stats.last_export_unix = blob.published_unix
            self.stats.last_export_s = time.perf_counter() - t0
            if self.cfg.publish_gate_steps > 0 or self.cfg.publish_gate_improve:
                self.stats.best_gate_return = self.stats.gate_return
        self._log_publish(version)
        log.info("published policy v%d after %d updates (export %.0f ms)", version,
                 self.stats.updates, 1e3 * self.stats.last_export_s)
        return blob

    def _log_publish(self, version: int) -> None:
        """One row per published policy (the demo report lines these up with robot returns)."""
        row = {"t": time.time(), "version": version, "updates": self.stats.updates, "gate_return": self.stats.gate_return}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "published.jsonl", "a") as fh:
            fh.write(strict_json.dumps(row) + "\n")  # a NaN gate return -> null

    # ------------------------------------------------------------------ data
    def _drain_real(self) -> None:
        """Streamed rows into the real buffer: only rows of the task's episodes (flags 0, see
        task_contract.episodes); rows past a termination, caught, recovering or with the motors
        off stay in the store but are never trained on as if the task went on."""
        from task_contract.episodes import in_task_episode

        for cols in self.feed.drain():
            need = self.cfg.obs_centre_rows - self._centre_n
            if need > 0:  # every streamed row, whoever drove it (_normalise_obs says why)
                first = np.asarray(cols["obs"][:need], np.float64)
                self._centre_sum += np.nan_to_num(first).sum(0)
                self._centre_n += len(first)
            keep = in_task_episode(cols.get("flags"), len(cols["rew"]))
            if not keep.all():
                cols = {k: v[keep] for k, v in cols.items()}
            if len(cols["rew"]):
                self.real.add(cols["obs"], cols["act"], cols["rew"], cols["next_obs"],
                              cols["terminated"].astype(np.float32))

    def _policy_weights(self) -> dict:
        return self.algo.policy_for_export().state_dict()  # a plain TanhGaussianPolicy's, CPU copies

    def _collect_sim(self, timeout_s: float) -> None:
        if self.workers is None:
            return
        for data, returns in self.workers.poll(timeout_s):
            self.sim.add(data["observations"], data["actions"], data["rewards"],
                         data["next_observations"], data["terminals"])
            self._sim_returns.extend(returns)
            with self._lock:
                self.stats.sim_steps += len(data["rewards"])
                self.stats.sim_episodes += len(returns)
                if self._sim_returns:
                    self.stats.sim_return = float(np.mean(self._sim_returns))
        # Pace the workers to sim_steps_per_update (a couple of chunks ahead, so an update never
        # waits): unpaced, a worker refilled at every poll collected many times more sim steps
        # than the updates used and took the CPU the updates needed (docs/results.md).
        if self.workers.idle == self.cfg.sim_workers:  # nothing in flight: a lost chunk (a replaced
            self._sim_requested = self.stats.sim_steps  # Ray actor) must not hold the workers back
        if not self.workers.idle or self._sim_requested >= self._sim_budget() + self._sim_lead():
            return
        weights = self._policy_weights()
        if not all_finite(weights):  # never send non-finite weights to a sim worker
            self._undo_nonfinite("policy weights")
            weights = self._policy_weights()
        self._sim_requested += self.workers.submit(weights) * self.workers.chunk_steps

    def _sim_budget(self) -> float:
        """Sim steps the updates so far call for (warm-up plus sim_steps_per_update each)."""
        return self.cfg.warmup_sim_steps + self.cfg.sim_steps_per_update * self.stats.updates

    def _sim_lead(self) -> int:
        """How far ahead of the budget the workers may run: two chunks each."""
        return 2 * SIM_CHUNK_STEPS * self.cfg.sim_workers

    def _wants_obs_centre(self) -> bool:
        """Normalisation is on for this task and not set yet (a resumed learner keeps its own)."""
        return self._norm_applies and not self.algo.obs_normalised

    def _normalise_obs(self, real_stats) -> None:
        """Once, when training starts: the networks' input centred on the robot's operating point
        and scaled per field (learner/task_defaults.py). The centre is the mean of the robot's
        first `obs_centre_rows` streamed rows, whoever drove them: the stand controller's drive,
        catches and recoveries, a swing about the robot's balance point (on `moderate` a lean of
        -0.166 rad from 2,000 rows). Not the real buffer's rows: the offline dataset's behaviour
        may run away (the demo's leans -0.015 on average) and the task-episode rows alone hold
        the controller's first second from upright (-0.019)."""
        if self.cfg.obs_centre_rows > 0:
            centre = self._centre_sum / max(self._centre_n, 1)
            source = f"the robot's first {self._centre_n} streamed rows"
        else:
            centre, source = np.nan_to_num(real_stats.obs_mean.cpu().numpy()), f"{len(self.real)} real rows"
        norm = obs_normalisation(self.cfg.task, centre)
        if norm is not None:
            self.algo.set_obs_normalisation(*norm)
            log.info("observation normalisation: centre %s, scale %s (the mean of %s)",
                     np.round(norm[0], 3).tolist(), norm[1].tolist(), source)

    def _sample(self) -> dict:
        c = self.cfg
        return sample_update_batches(self.algo, self.real.sample, self.sim.sample, c.batch_real, c.batch_sim,
                                     c.disc_batch)

    def _ready(self) -> str:
        """'' when an update can run, else what it waits for."""
        if self.algo.uses_real and len(self.real) < self.cfg.min_real_rows:
            return f"waiting for real rows ({len(self.real)}/{self.cfg.min_real_rows})"
        if self._centre_n < self.cfg.obs_centre_rows and self._wants_obs_centre():
            return (f"waiting for robot rows to centre the observation ({self._centre_n}/{self.cfg.obs_centre_rows}; "
                    "no robot: obs_centre_rows = 0 centres on the offline data)")
        if self.algo.uses_sim:
            if len(self.sim) < max(1, self.cfg.warmup_sim_steps):
                return f"warming up sim ({len(self.sim)}/{self.cfg.warmup_sim_steps})"
            if self.stats.sim_steps < self._sim_budget() - self._sim_lead():
                return "waiting for sim steps"
        return ""

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event) -> None:
        cfg = self.cfg
        self.try_resume()
        if self.algo.uses_sim:
            spec = WorkerSpec(cfg.task, cfg.sim_profile, self.info.obs_dim, self.info.act_dim,
                              cfg.hidden, cfg.seed + self.stats.updates)
            self.workers = (RaySimWorkers(spec, cfg.sim_workers, SIM_CHUNK_STEPS, cfg.sim_ray_address)
                            if cfg.sim_ray_address else SimWorkers(spec, cfg.sim_workers, SIM_CHUNK_STEPS))
            self._sim_requested = self.stats.sim_steps + self.workers.submit(self._policy_weights()) * SIM_CHUNK_STEPS
        t_start = time.monotonic()
        last_export_t = last_ckpt_t = time.monotonic()
        real_std_set_at = -1
        self._keep_good_state()
        try:
            while not stop.is_set():
                self._drain_real()
                self._collect_sim(0.0)
                with self._lock:
                    self.stats.real_rows, self.stats.sim_rows = len(self.real), len(self.sim)
                if self.workers is not None and not self.workers.alive():
                    raise RuntimeError("a sim worker process died (see its traceback above)")
                waiting = self._ready()
                if waiting:
                    self.stats.state = waiting
                    if self.workers is not None:
                        self._collect_sim(0.1)
                    else:
                        stop.wait(0.1)
                    continue
                self.stats.state = "training" if self.stats.updates >= cfg.pretrain_updates else "pretraining"
                if real_std_set_at < 0 or self.stats.updates - real_std_set_at >= 1000:
                    real_stats = self.real.stats()
                    self.algo.set_real_stats(real_stats)
                    if self._wants_obs_centre():
                        self._normalise_obs(real_stats)
                    real_std_set_at = self.stats.updates
                losses = self.algo.update(**self._sample())
                if not _losses_finite(losses):
                    self._undo_nonfinite("loss")
                    continue
                if self.stats.updates - self._good_at >= GOOD_STATE_EVERY:
                    self._keep_good_state()
                now = time.monotonic()
                self._update_times.append(now)
                with self._lock:
                    self.stats.updates += 1
                    self.stats.losses = losses
                    if self.cfg.tensorboard:  # only the TensorBoard rows read these sums
                        self._add_losses(losses)
                    if len(self._update_times) > 1:
                        span = self._update_times[-1] - self._update_times[0]
                        self.stats.updates_per_s = (len(self._update_times) - 1) / max(span, 1e-9)
                due_k = self.stats.updates % cfg.export_every_updates == 0
                due_t = cfg.export_every_s > 0 and now - last_export_t >= cfg.export_every_s
                pretrained = self.stats.updates >= cfg.pretrain_updates
                if pretrained and (due_k or due_t or self.stats.updates == cfg.pretrain_updates):
                    try:
                        self.export_and_publish()
                    except Exception:  # e.g. an export parity failure: skip it
                        log.exception("export at %d updates failed; nothing published, "
                                      "training goes on", self.stats.updates)
                    last_export_t = now
                if cfg.checkpoint_every_s > 0 and now - last_ckpt_t >= cfg.checkpoint_every_s:
                    self.checkpoint()
                    last_ckpt_t = now
                if cfg.max_updates and self.stats.updates >= cfg.max_updates:
                    log.info("reached max_updates=%d", cfg.max_updates)
                    break
                if cfg.max_seconds and now - t_start >= cfg.max_seconds:
                    break
        finally:
            self.stats.state = "stopped"
            if self.workers is not None:
                self.workers.close()
            if self.stats.updates:
                self.checkpoint()

    def _add_losses(self, losses: dict) -> None:
        """Sum the update's scalar losses for take_loss_means (the caller holds the lock)."""
        for k, v in losses.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            acc = self._loss_sums.setdefault(k, [0.0, 0])
            acc[0] += value
            acc[1] += 1

    def take_loss_means(self) -> dict[str, float]:
        """Each loss and chart's mean over the updates since the last call (what the TensorBoard
        rows show, as learner.train's rows hold epoch means), and start a new period."""
        with self._lock:
            sums, self._loss_sums = self._loss_sums, {}
        return {k: total / n for k, (total, n) in sums.items() if n}

    def snapshot(self) -> dict:
        with self._lock:
            d = dict(self.stats.__dict__)
            d["losses"] = dict(self.stats.losses)
        return d


def _concat(datasets: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    if not datasets:
        return None
    keys = ("observations", "actions", "rewards", "next_observations", "terminals")
    return {k: np.concatenate([np.asarray(d[k], np.float32) for d in datasets]) for k in keys}

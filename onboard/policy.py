"""ONNX policies on the robot: run one, and validate a new one off the loop thread before a swap.

Why this shape: a policy arrives over the network while the loop runs at 200 Hz. Building an
onnxruntime session and checking it takes milliseconds, so it happens on a loader thread; the
loop only ever does `policy = slot.pending` at a tick boundary (one reference assignment), and
keeps the previous policy to roll back to. Nothing reaches the loop that has not passed every
check: sha256 of the bytes, metadata and I/O schema against the task, finite and in-bound
outputs on recent observations and on a box around them, inference time under budget.

Quarantine: a policy can still misbehave on observations no check saw (NaN once the wheel has
moved, a graph whose run time depends on the observation). `OnnxPolicy.act` watches every call;
a non-finite output or repeated stalls set `fault`, the loop then quarantines the version (the
loader refuses it for good, the learner is told) and falls back to the previous good policy or
the controller. Log-probs are clipped to +-LOGP_CLIP so an extreme log_std cannot make a batch
unencodable.

The ONNX contract (docs/interfaces.md): input `obs` float32 [batch, obs_dim]; outputs `action`
(tanh(mean)), `mean` (pre-tanh) and `log_std`, each float32 [batch, act_dim]; `h2o.*` metadata.
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnxruntime as ort

from task_contract.history import ObsLayout
from task_contract.layout import layout_problem
from protocol.config_cli import help_field

log = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
REQUIRED_OUTPUTS = ("action", "mean", "log_std")
LOGP_CLIP = 1e4  # |log-prob| beyond this carries no information, and inf is refused on the wire
PROBE_BOX_MARGIN = 1.0  # validation probes reach this far (obs units) beyond the recent data


class PolicyRejected(Exception):
    """A candidate policy failed a check; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class PolicySpec:
    """What a policy must match to drive this robot (from the task and the protocol)."""

    task: str
    obs_dim: int
    act_dim: int
    control_hz: float | None = None  # checked when the metadata carries it
    schema_version: str | None = None  # checked when both sides have it
    layout: ObsLayout | None = None  # the observation this robot builds (None: not checked)


@dataclass
class ValidationConfig:
    """Limits applied to every candidate policy before it may be activated."""

    max_bytes: int = help_field(32 * 1024 * 1024, "reject larger files before parsing them")
    inference_budget_ms: float = help_field(1.0, "p90 single-observation inference time must be below this")
    timing_runs: int = help_field(30, "single-observation runs timed for the budget check")
    # A "too_slow" verdict can be a momentary load spike on the robot computer (a log rotation, a
    # compile) rather than a slow graph, so the loader re-times the candidate before rejecting it,
    # unless a newer candidate arrives meanwhile.
    slow_retries: int = help_field(2, "re-time a \"too_slow\" candidate this many more times before rejecting it")
    slow_retry_delay_s: float = help_field(1.0, "wait this long before each re-timing")
    action_tolerance: float = help_field(1e-5, "|action| may exceed 1 by this much (float rounding)")
    stall_ms: float = help_field(20.0, "a run-time inference longer than this is a stall ...")
    stalls_to_quarantine: int = help_field(2, "... and this many stalls quarantine the policy")
    intra_op_threads: int = help_field(1, "onnxruntime threads per session (1: leave the cores to the loop)")


@dataclass
class PolicyCandidate:
    """A policy as received: bytes plus what the sender claims about them."""

    version: int
    sha256: str
    onnx_bytes: bytes
    received_t: float = field(default_factory=time.perf_counter)  # for swap-latency stats
    source: str = "learner"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def squashed_gaussian_logp(u: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> float:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)), with the tanh change-of-variables term.

    log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), the numerically stable form (SpinUp).
    Clipped to +-LOGP_CLIP (an extreme log_std overflows float32 otherwise); NaN stays NaN.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        std = np.exp(log_std)
        z = (u - mean) / std
        gauss = -0.5 * z * z - log_std - 0.5 * LOG_2PI
        correction = 2.0 * (LOG_2 - u - np.logaddexp(0.0, -2.0 * u))
        value = float(np.sum(gauss - correction))
    return value if math.isnan(value) else max(-LOGP_CLIP, min(LOGP_CLIP, value))


class OnnxPolicy:
    """A validated, ready-to-run policy. `act` is what the loop calls each tick."""

    def __init__(self, session: ort.InferenceSession, version: int, sha256: str, metadata: dict[str, str],
                 stall_ms: float = 20.0, stalls_to_quarantine: int = 2) -> None:
        self.session = session
        self.version = version
        self.sha256 = sha256
        self.metadata = metadata
        self._outputs = list(REQUIRED_OUTPUTS)
        self.stall_s = stall_ms / 1e3
        self.stalls_to_quarantine = stalls_to_quarantine
        self.stalls = 0
        self.fault = ""  # set when the policy misbehaved at run time: quarantine it

    def run_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        action, mean, log_std = self.session.run(self._outputs, {"obs": obs.astype(np.float32, copy=False)})
        return action, mean, log_std

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
        """One observation -> (action in [-1, 1], log-prob). Deterministic when `rng` is None.

        Exploring: a = tanh(mean + exp(log_std) * eps), eps ~ N(0, I) from the seeded `rng`.
        Deterministic: a = tanh(mean); the log-prob is then that of u = mean (for provenance).
        """
        t0 = time.perf_counter()
        action, mean, log_std = self.run_batch(obs.reshape(1, -1))
        elapsed = time.perf_counter() - t0
        if elapsed > self.stall_s:
            self.stalls += 1
            if self.stalls >= self.stalls_to_quarantine and not self.fault:
                self.fault = f"stalled: inference {elapsed * 1e3:.1f} ms ({self.stalls} stalls)"
        if not (np.isfinite(action).all() and np.isfinite(mean).all() and np.isfinite(log_std).all()):
            self.fault = self.fault or "non_finite: output on a run-time observation"
        mean, log_std = mean[0].astype(np.float64), log_std[0].astype(np.float64)
        if rng is None:
            u = mean
            a = action[0]
        else:
            u = mean + np.exp(log_std) * rng.standard_normal(mean.shape)
            a = np.tanh(u).astype(np.float32)
        return a, squashed_gaussian_logp(u, mean, log_std)


def build_policy(
    cand: PolicyCandidate, spec: PolicySpec, cfg: ValidationConfig, recent_obs: np.ndarray | None
) -> OnnxPolicy:
    """Every check a policy must pass before the loop may use it; raises `PolicyRejected`."""
    if len(cand.onnx_bytes) > cfg.max_bytes:
        raise PolicyRejected("too_large", f"{len(cand.onnx_bytes)} bytes > {cfg.max_bytes}")
    digest = sha256_hex(cand.onnx_bytes)
    if digest != cand.sha256.lower():
        raise PolicyRejected("sha256_mismatch", f"bytes hash to {digest[:16]}..., claimed {cand.sha256[:16]}...")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(cand.onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for malformed models
        raise PolicyRejected("unloadable", str(e).splitlines()[0][:200]) from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    _check_metadata(metadata, cand, spec)
    _check_io_schema(session, spec)
    policy = OnnxPolicy(session, cand.version, digest, metadata, cfg.stall_ms, cfg.stalls_to_quarantine)
    _check_outputs(policy, spec, cfg, recent_obs)
    _check_inference_time(policy, spec, cfg, recent_obs)
    return policy


def _check_metadata(meta: dict[str, str], cand: PolicyCandidate, spec: PolicySpec) -> None:
    def need(key: str) -> str:
        if key not in meta:
            raise PolicyRejected("metadata_missing", f"no {key!r} in ONNX metadata")
        return meta[key]

    def need_int(key: str) -> int:
        try:
            return int(need(key))
        except ValueError:
            raise PolicyRejected("metadata_invalid", f"{key}={meta[key]!r} is not an integer") from None

    if need("h2o.task").split(":", 1)[0] != spec.task:
        raise PolicyRejected("task_mismatch", f"policy for {meta['h2o.task']!r}, robot runs {spec.task!r}")
    problem = layout_problem(meta, spec.layout) if spec.layout is not None else ""
    if problem:  # before the dims: say what differs, not only that the widths do
        raise PolicyRejected("layout_mismatch", problem)
    if need_int("h2o.obs_dim") != spec.obs_dim or need_int("h2o.act_dim") != spec.act_dim:
        raise PolicyRejected(
            "dims_mismatch",
            f"policy obs/act dims {meta['h2o.obs_dim']}/{meta['h2o.act_dim']}, task {spec.obs_dim}/{spec.act_dim}",
        )
    if need_int("h2o.version") != cand.version:
        raise PolicyRejected("version_mismatch", f"metadata version {meta['h2o.version']}, message says {cand.version}")
    if spec.control_hz is not None and "h2o.control_hz" in meta:
        try:
            hz = float(meta["h2o.control_hz"])
        except ValueError:
            raise PolicyRejected("metadata_invalid", f"h2o.control_hz={meta['h2o.control_hz']!r}") from None
        if abs(hz - spec.control_hz) > 1e-6:
            raise PolicyRejected("rate_mismatch", f"policy trained at {hz} Hz, loop runs {spec.control_hz} Hz")
    if spec.schema_version is not None and meta.get("h2o.schema_version", spec.schema_version) != spec.schema_version:
        raise PolicyRejected("schema_mismatch", f"schema {meta['h2o.schema_version']!r} != {spec.schema_version!r}")


def _check_io_schema(session: ort.InferenceSession, spec: PolicySpec) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != "obs":
        raise PolicyRejected("schema_mismatch", f"inputs {[i.name for i in inputs]}, expected ['obs']")
    if inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 2 or inputs[0].shape[1] != spec.obs_dim:
        raise PolicyRejected("schema_mismatch", f"obs is {inputs[0].type}{inputs[0].shape}, expected float[*, {spec.obs_dim}]")
    outputs = {o.name: o for o in session.get_outputs()}
    for name in REQUIRED_OUTPUTS:
        o = outputs.get(name)
        if o is None:
            raise PolicyRejected("schema_mismatch", f"missing output {name!r}")
        if o.type != "tensor(float)" or len(o.shape) != 2 or o.shape[1] != spec.act_dim:
            raise PolicyRejected("schema_mismatch", f"{name} is {o.type}{o.shape}, expected float[*, {spec.act_dim}]")


def _probe_obs(spec: PolicySpec, recent_obs: np.ndarray | None) -> np.ndarray:
    """Recent observations (what the robot sees now), zeros, small noise around them, and points
    spread over the box the recent data spans widened by PROBE_BOX_MARGIN per dimension (a policy
    that fails once the robot has moved a little is caught before it drives)."""
    rng = np.random.default_rng(0)
    base = np.zeros((1, spec.obs_dim), np.float32)
    if recent_obs is not None and len(recent_obs):
        base = np.concatenate([base, np.asarray(recent_obs, np.float32).reshape(-1, spec.obs_dim)])
    noisy = base[rng.integers(0, len(base), 16)] + rng.normal(0, 0.1, (16, spec.obs_dim)).astype(np.float32)
    lo, hi = base.min(axis=0) - PROBE_BOX_MARGIN, base.max(axis=0) + PROBE_BOX_MARGIN
    box = rng.uniform(lo, hi, (128, spec.obs_dim))
    corners = np.where(rng.integers(0, 2, (16, spec.obs_dim)).astype(bool), lo, hi)
    return np.concatenate([base, noisy, box, corners]).astype(np.float32)


def _check_outputs(policy: OnnxPolicy, spec: PolicySpec, cfg: ValidationConfig, recent_obs: np.ndarray | None) -> None:
    obs = _probe_obs(spec, recent_obs)
    try:
        action, mean, log_std = policy.run_batch(obs)
    except Exception as e:  # noqa: BLE001 - any inference failure rejects the policy, named
        raise PolicyRejected("inference_failed", str(e).splitlines()[0][:200]) from None
    for name, arr in (("action", action), ("mean", mean), ("log_std", log_std)):
        if arr.shape != (len(obs), spec.act_dim):
            raise PolicyRejected("schema_mismatch", f"{name} has shape {arr.shape}, expected {(len(obs), spec.act_dim)}")
        if not np.all(np.isfinite(arr)):
            raise PolicyRejected("non_finite", f"{name} has non-finite values on probe observations")
    if np.max(np.abs(action)) > 1.0 + cfg.action_tolerance:
        raise PolicyRejected("out_of_bounds", f"|action| up to {np.max(np.abs(action)):.4g} > 1")


def _check_inference_time(policy: OnnxPolicy, spec: PolicySpec, cfg: ValidationConfig, recent_obs: np.ndarray | None) -> None:
    one = _probe_obs(spec, recent_obs)[:1]
    times = []
    for _ in range(max(cfg.timing_runs, 1)):
        t0 = time.perf_counter()
        policy.run_batch(one)
        times.append(time.perf_counter() - t0)
    p90_ms = float(np.percentile(times, 90)) * 1e3
    if p90_ms > cfg.inference_budget_ms:
        raise PolicyRejected("too_slow", f"p90 inference {p90_ms:.3f} ms > budget {cfg.inference_budget_ms} ms")


ResultCallback = Callable[[int, bool, str], None]  # (version, accepted, reason) -> None


class PolicyLoader:
    """Validates candidates on its own thread and leaves the winner for the loop to pick up.

    The loop calls `take_pending()` once per tick (a reference read and a reference write), so
    the swap happens at a tick boundary and never waits on validation. Only the newest candidate
    matters: a full inbox drops the oldest, answered as "superseded".
    """

    def __init__(
        self,
        spec: PolicySpec,
        cfg: ValidationConfig,
        recent_obs: Callable[[], np.ndarray | None] = lambda: None,
        on_result: ResultCallback | None = None,
        inbox_size: int = 2,
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self._recent_obs = recent_obs
        self._on_result = on_result
        self._inbox: queue.Queue[PolicyCandidate | None] = queue.Queue(maxsize=inbox_size)
        self._pending: tuple[OnnxPolicy, PolicyCandidate] | None = None
        self._pending_lock = threading.Lock()
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.slow_retries = 0  # timing re-checks done after a "too_slow" verdict
        self.quarantined: dict[int, str] = {}  # version -> why; never activated again
        self.last_result: tuple[int, bool, str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="policy-loader", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        if self._thread is None:
            return
        while True:
            try:
                self._inbox.put_nowait(None)
                break
            except queue.Full:
                self._drop_oldest()
        self._thread.join(timeout_s)
        self._thread = None

    def submit(self, cand: PolicyCandidate) -> None:
        """Queue a candidate; never blocks (drops the oldest waiting one if full)."""
        while True:
            try:
                self._inbox.put_nowait(cand)
                return
            except queue.Full:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            old = self._inbox.get_nowait()
        except queue.Empty:
            return
        if old is not None:
            self._report(old.version, False, "superseded")

    def take_pending(self) -> tuple[OnnxPolicy, PolicyCandidate] | None:
        """For the loop, at a tick boundary: the newest validated policy, once."""
        if self._pending is None:  # the common case: no lock taken
            return None
        with self._pending_lock:  # uncontended except at the instant the loader hands one over
            p, self._pending = self._pending, None
        return p

    def validate_now(self, cand: PolicyCandidate) -> OnnxPolicy:
        """Synchronous validation (start-up policy file); raises `PolicyRejected`."""
        if cand.version in self.quarantined:
            raise PolicyRejected("quarantined", self.quarantined[cand.version])
        return build_policy(cand, self.spec, self.cfg, self._recent_obs())

    def quarantine(self, version: int, reason: str) -> None:
        """A policy misbehaved while driving: refuse this version from now on (a newer version is
        validated as usual) and tell the learner, which then stops offering it."""
        if version in self.quarantined:
            return
        self.quarantined[version] = reason
        log.error("policy v%d quarantined: %s; falling back to the previous good policy (or the "
                  "controller) until a newer version arrives", version, reason)
        self._report(version, False, f"quarantined: {reason}")

    def _run(self) -> None:
        while True:
            cand = self._inbox.get()
            if cand is None:
                return
            policy = self._validate_with_retries(cand)
            if policy is None:
                continue
            with self._pending_lock:
                self._pending = (policy, cand)  # a newer policy replaces one not yet taken
            log.info("policy v%d validated (sha256 %s...), swapping at the next tick", cand.version, policy.sha256[:12])
            self._report(cand.version, True, "ok")

    def _validate_with_retries(self, cand: PolicyCandidate) -> OnnxPolicy | None:
        """`build_policy`, re-timing a "too_slow" candidate up to `slow_retries` times.

        Returns None (after reporting) when the candidate is rejected or a newer one arrived
        while waiting to re-time it (that one is validated next; this one is "superseded").
        """
        if cand.version in self.quarantined:
            self._report(cand.version, False, f"quarantined: {self.quarantined[cand.version]}")
            return None
        attempt = 0
        while True:
            try:
                return build_policy(cand, self.spec, self.cfg, self._recent_obs())
            except PolicyRejected as e:
                if e.reason == "too_slow" and attempt < self.cfg.slow_retries:
                    attempt += 1
                    self.slow_retries += 1
                    log.info("policy v%d: %s; re-timing in %.1f s (%d/%d)", cand.version, e.detail,
                             self.cfg.slow_retry_delay_s, attempt, self.cfg.slow_retries)
                    if self._newer_arrived(self.cfg.slow_retry_delay_s):
                        self._report(cand.version, False, "superseded")
                        return None
                    continue
                log.warning("policy v%d rejected: %s", cand.version, e)
                self._report(cand.version, False, f"{e.reason}: {e.detail}")
                return None
            except Exception as e:  # never let a bad policy kill the loader
                log.exception("policy v%d: unexpected validation error", cand.version)
                self._report(cand.version, False, f"internal_error: {e}")
                return None

    def _newer_arrived(self, wait_s: float) -> bool:
        """Wait up to wait_s; True as soon as anything (a newer candidate or stop) is queued."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not self._inbox.empty():
                return True
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
        return not self._inbox.empty()

    def _report(self, version: int, ok: bool, reason: str) -> None:
        if ok:
            self.accepted += 1
        else:
            code = reason.split(":")[0]
            self.rejected[code] = self.rejected.get(code, 0) + 1
        self.last_result = (version, ok, reason)
        if self._on_result is not None:
            try:
                self._on_result(version, ok, reason)
            except Exception:
                log.exception("policy result callback failed")


def load_policy_file(path: str, sha256: str | None = None) -> PolicyCandidate:
    """A start-up policy from disk; the hash comes from `<path>.sha256` unless given."""
    with open(path, "rb") as f:
        data = f.read()
    if sha256 is None:
        with open(path + ".sha256") as f:
            sha256 = f.read().split()[0]
    version = -1
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        meta = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"]).get_modelmeta()
        version = int(meta.custom_metadata_map.get("h2o.version", -1))
    except Exception:  # noqa: BLE001 - build_policy reports the real reason
        pass
    return PolicyCandidate(version=version, sha256=sha256, onnx_bytes=data, source="file")

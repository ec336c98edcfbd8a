"""ONNX export of the policy, exactly per docs/interfaces.md, with a parity check on every export.

Why a hand-built graph (onnx.helper) instead of torch.onnx.export: the policy is a plain MLP, and
writing the graph from its weights gives a small, stable file made of plain ops only (Sub, Div,
MatMul, Add, Relu, Split, Mul, Clip, Tanh) at opset 17 / IR 8, which every onnxruntime 1.2x runs,
with no dependency on the torch exporter of the day (TorchScript vs dynamo, onnxscript).

Graph: obs [batch, obs_dim] -> (obs - obs_mean) / obs_std (normalisation baked in) -> MLP ->
head -> split -> mean, raw; log_std = clip(m * raw + c, -20, 2); action = tanh(mean).

Every export runs the graph in onnxruntime on random observations and compares all three outputs
with the torch policy (max abs diff <= PARITY_ATOL); a failure raises ExportParityError and nothing
is written.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from learner.networks import LOG_STD_MAX, LOG_STD_MIN, TanhGaussianPolicy
from protocol.atomic_file import write_atomic
from protocol.version import project_version

log = logging.getLogger(__name__)

OPSET = 17  # onnxruntime >= 1.13 runs opset 17
IR_VERSION = 8
PARITY_ATOL = 1e-5  # max abs difference torch vs onnxruntime, any output
PARITY_SAMPLES = 256
OUTPUT_NAMES = ("action", "mean", "log_std")
PRODUCER_NAME = "h2o-learner"
DOC_STRING = ("h2o-robot policy: obs [batch, obs_dim] -> action = tanh(mean), mean, log_std [batch, act_dim]; "
              "h2o.* metadata as in docs/interfaces.md")


class ExportParityError(RuntimeError):
    """The exported graph does not reproduce the torch policy within PARITY_ATOL."""


def _default_schema_version() -> str:
    from protocol.messages import SCHEMA_VERSION

    return str(SCHEMA_VERSION)


class ExportLayoutError(ValueError):
    """The policy's input width is not the observation layout of its task id."""


@dataclass
class PolicyMetadata:
    """The `h2o.*` metadata_props of docs/interfaces.md (all written as strings).

    `task` is a task id ("stand_still" or "stand_still:action_history=2"). For a task of the
    task contract the policy also carries its contract (task_contract.layout): h2o.task_id,
    h2o.obs_layout (fields, history lengths) and h2o.actuators (every actuator's mode and scale,
    legs included); h2o.task is then the base task name and h2o.action_scale the wheels' scale.
    """

    version: int
    task: str
    algorithm: str
    parent: str = ""  # version (or sha256) of the policy this one was trained from; "" for none
    action_scale: float = 1.0  # physical units per unit action on the wheels (e.g. N*m per 1.0)
    control_hz: float = 200.0
    schema_version: str = field(default_factory=_default_schema_version)
    created_unix: int | None = None  # None -> now

    def props(self, obs_dim: int, act_dim: int) -> dict[str, str]:
        created = int(time.time()) if self.created_unix is None else int(self.created_unix)
        contract = _contract_props(self.task, obs_dim, act_dim)
        return {
            "h2o.version": str(int(self.version)),
            "h2o.parent": str(self.parent),
            "h2o.task": self.task.split(":", 1)[0] if contract else self.task,
            "h2o.algorithm": self.algorithm,
            "h2o.obs_dim": str(obs_dim),
            "h2o.act_dim": str(act_dim),
            "h2o.action_scale": repr(float(self.action_scale)),
            "h2o.control_hz": repr(float(self.control_hz)),
            "h2o.schema_version": str(self.schema_version),
            "h2o.project_version": project_version(),
            "h2o.created_unix": str(created),
            **contract,
        }


def _contract_props(task: str, obs_dim: int, act_dim: int) -> dict[str, str]:
    """The task contract's layout keys ({} for a task outside it, e.g. gym:HalfCheetah-v5)."""
    from task_contract.history import ObsLayout
    from task_contract.layout import policy_metadata
    from task_contract.tasks import TASKS

    if task.split(":", 1)[0] not in TASKS:
        return {}
    layout = ObsLayout.of(task)
    if (obs_dim, act_dim) != (layout.dim, layout.task.act_dim):
        raise ExportLayoutError(f"policy obs/act dims {obs_dim}/{act_dim} are not task {layout.id!r}'s "
                                f"{layout.dim}/{layout.task.act_dim} (check the task options)")
    return policy_metadata(layout)


@dataclass
class ExportedPolicy:
    onnx_bytes: bytes
    sha256: str
    max_abs_diff: float  # parity check result
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _linear_layers(policy: TanhGaussianPolicy) -> list[torch.nn.Linear]:
    trunk = [m for m in policy.trunk.modules() if isinstance(m, torch.nn.Linear)]
    return [*trunk, policy.head]


def build_onnx(policy: TanhGaussianPolicy, props: dict[str, str]) -> onnx.ModelProto:
    """The policy as an ONNX graph of plain ops (see module docstring)."""
    p = policy.cpu().eval()
    act_dim = p.act_dim
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    with torch.no_grad():
        nodes.append(helper.make_node("Sub", ["obs", const("obs_mean", p.obs_mean.numpy())], ["obs_centered"]))
        nodes.append(helper.make_node("Div", ["obs_centered", const("obs_std", p.obs_std.numpy())], ["h0"]))
        x = "h0"
        layers = _linear_layers(p)
        for i, lin in enumerate(layers):
            w = const(f"W{i}", lin.weight.numpy().T)
            b = const(f"b{i}", lin.bias.numpy())
            nodes.append(helper.make_node("MatMul", [x, w], [f"mm{i}"]))
            nodes.append(helper.make_node("Add", [f"mm{i}", b], [f"z{i}"]))
            x = f"z{i}"
            if i < len(layers) - 1:  # every hidden layer has a ReLU; the head does not
                nodes.append(helper.make_node("Relu", [x], [f"h{i + 1}"]))
                x = f"h{i + 1}"
        inits.append(numpy_helper.from_array(np.array([act_dim, act_dim], dtype=np.int64), "split_sizes"))
        nodes.append(helper.make_node("Split", [x, "split_sizes"], ["mean", "raw_log_std"], axis=1))
        nodes.append(helper.make_node("Mul", ["raw_log_std", const("log_std_scale", p.log_std_scale.numpy())],
                                      ["scaled_log_std"]))
        nodes.append(helper.make_node("Add", ["scaled_log_std", const("log_std_offset", p.log_std_offset.numpy())],
                                      ["log_std_unclipped"]))
        nodes.append(helper.make_node("Clip", ["log_std_unclipped", const("log_std_min", LOG_STD_MIN),
                                               const("log_std_max", LOG_STD_MAX)], ["log_std"]))
        nodes.append(helper.make_node("Tanh", ["mean"], ["action"]))

    graph = helper.make_graph(
        nodes,
        "h2o_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", p.obs_dim])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", act_dim]) for n in OUTPUT_NAMES],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER_NAME,
                              producer_version=project_version(), doc_string=DOC_STRING)
    model.ir_version = IR_VERSION
    # ONNX's own version fields, for tools that read no metadata_props (Netron, onnx.checker, model
    # registries): the policy version is the model's version, the project version the producer's.
    model.model_version = int(props.get("h2o.version", 0))
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def parity_check(policy: TanhGaussianPolicy, onnx_bytes: bytes, n: int = PARITY_SAMPLES, seed: int = 0) -> float:
    """Max abs diff of (action, mean, log_std) between onnxruntime and torch on random obs."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    p = policy.cpu().eval()
    obs = (p.obs_mean.numpy() + 3.0 * p.obs_std.numpy() * rng.standard_normal((n, p.obs_dim))).astype(np.float32)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUT_NAMES), {"obs": obs})
    with torch.no_grad():
        mean, log_std = p.distribution_params(torch.from_numpy(obs))
        want = [torch.tanh(mean).numpy(), mean.numpy(), log_std.numpy()]
    return float(max(np.max(np.abs(g - w)) for g, w in zip(got, want)))


def export_policy(policy: TanhGaussianPolicy, meta: PolicyMetadata, path: str | Path | None = None,
                  atol: float = PARITY_ATOL) -> ExportedPolicy:
    """Build, parity-check and (if `path`) write `<path>` and `<path>.sha256`. Raises
    ExportParityError when onnxruntime and torch disagree by more than `atol`."""
    props = meta.props(policy.obs_dim, policy.act_dim)
    data = build_onnx(policy, props).SerializeToString()
    diff = parity_check(policy, data)
    if not diff <= atol:  # also catches NaN
        raise ExportParityError(f"ONNX parity check failed: max abs diff {diff:.3g} > {atol:.1g}")
    digest = hashlib.sha256(data).hexdigest()
    out = ExportedPolicy(data, digest, diff, None, props)
    if path is not None:
        out.path = Path(path)
        write_atomic(out.path, data)
        write_atomic(out.path.with_name(out.path.name + ".sha256"), f"{digest}  {out.path.name}\n".encode())
        log.info("exported policy v%s to %s (sha256 %s, parity %.2g)", meta.version, out.path, digest[:12], diff)
    return out

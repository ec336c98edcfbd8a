"""Small ONNX policies built with the `onnx` helper API, for tests, benchmarks and demos.

Why not torch: the robot side must run and be tested without torch. These graphs follow the
policy contract in docs/interfaces.md exactly (input `obs`; outputs `action`, `mean`,
`log_std`; `h2o.*` metadata), and can be broken on purpose (NaN outputs, wrong shapes, missing
metadata) to test that such policies are never activated. Needs the `onnx` package (dev extra);
the loop itself never imports this module.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def mlp_policy_bytes(
    obs_dim: int,
    act_dim: int,
    task: str = "stand_still",
    version: int = 1,
    hidden: int = 32,
    seed: int = 0,
    linear_gain: np.ndarray | None = None,
    log_std: float = -1.0,
    control_hz: float = 200.0,
    mean_bias: float = 0.0,
    nan_output: bool = False,
    nan_beyond: float | None = None,
    out_act_dim: int | None = None,
    unsquashed: bool = False,
    metadata: dict[str, str] | None = None,
    drop_metadata: tuple[str, ...] = (),
) -> bytes:
    """A contract ONNX policy: a linear law and/or a 2-hidden-layer ReLU MLP, summed.

    mean = linear_gain @ obs (if given) + MLP(obs) (if hidden > 0); action = tanh(mean);
    log_std = a constant per dimension; `mean_bias` is added to mean. Fault knobs: `nan_output` (a NaN bias),
    `nan_beyond` (NaN once obs[0] exceeds it: sqrt of a negative, times 0), `out_act_dim`
    (wrong output width), `unsquashed` (action = 10 * mean, out of [-1, 1]).
    """
    rng = np.random.default_rng(seed)
    out_dim = act_dim if out_act_dim is None else out_act_dim
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    if linear_gain is None and hidden <= 0:
        raise ValueError("need a linear_gain or hidden > 0")
    branches = []
    if linear_gain is not None:
        inits.append(_init("Wlin", np.asarray(linear_gain, np.float32).reshape(out_dim, obs_dim).T))
        nodes.append(helper.make_node("MatMul", ["obs", "Wlin"], ["mean_lin"]))
        branches.append("mean_lin")
    if hidden > 0:  # two hidden layers (the learner's policy shape), small output weights
        inits += [
            _init("W1", rng.normal(0, 1 / np.sqrt(obs_dim), (obs_dim, hidden))),
            _init("b1", np.zeros(hidden)),
            _init("W2", rng.normal(0, 1 / np.sqrt(hidden), (hidden, hidden))),
            _init("b2", np.zeros(hidden)),
            _init("W3", rng.normal(0, 0.01 / np.sqrt(hidden), (hidden, out_dim))),
            _init("b3", np.zeros(out_dim)),
        ]
        nodes += [
            helper.make_node("Gemm", ["obs", "W1", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h1r"]),
            helper.make_node("Gemm", ["h1r", "W2", "b2"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["h2r"]),
            helper.make_node("Gemm", ["h2r", "W3", "b3"], ["mean_mlp"]),
        ]
        branches.append("mean_mlp")
    if nan_beyond is not None:  # 0 * sqrt(nan_beyond - obs[0]): 0 inside, NaN beyond
        sel = np.zeros((obs_dim, out_dim))
        sel[0, :] = 1.0
        inits += [_init("sel0", sel), _init("thr", np.array(nan_beyond)), _init("zero_s", np.array(0.0))]
        nodes += [
            helper.make_node("MatMul", ["obs", "sel0"], ["x0"]),
            helper.make_node("Sub", ["thr", "x0"], ["room"]),
            helper.make_node("Sqrt", ["room"], ["root"]),
            helper.make_node("Mul", ["root", "zero_s"], ["mean_nan"]),
        ]
        branches.append("mean_nan")
    if len(branches) >= 2:
        nodes.append(helper.make_node("Sum", branches, ["mean_raw"]))
    else:
        nodes.append(helper.make_node("Identity", branches, ["mean_raw"]))
    bias = np.full(out_dim, np.nan if nan_output else mean_bias)
    inits += [_init("bias", bias), _init("log_std_c", np.full(out_dim, log_std)), _init("zero_w", np.zeros((obs_dim, out_dim)))]
    nodes += [
        helper.make_node("Add", ["mean_raw", "bias"], ["mean"]),
        # log_std = obs @ 0 + c: keeps the batch dimension without a Shape/Expand pair.
        helper.make_node("MatMul", ["obs", "zero_w"], ["ls0"]),
        helper.make_node("Add", ["ls0", "log_std_c"], ["log_std"]),
    ]
    if unsquashed:
        inits.append(_init("ten", np.array(10.0)))
        nodes.append(helper.make_node("Mul", ["mean", "ten"], ["action"]))
    else:
        nodes.append(helper.make_node("Tanh", ["mean"], ["action"]))
    graph = helper.make_graph(
        nodes,
        "h2o_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", out_dim]) for n in ("action", "mean", "log_std")],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "h2o.version": str(version),
        "h2o.parent": str(version - 1),
        "h2o.task": task,
        "h2o.algorithm": "dev",
        "h2o.obs_dim": str(obs_dim),
        "h2o.act_dim": str(act_dim),
        "h2o.action_scale": "1.0",
        "h2o.control_hz": str(control_hz),
        "h2o.schema_version": "1",
        "h2o.created_unix": str(int(time.time())),
    }
    meta.update(metadata or {})
    for k in drop_metadata:
        meta.pop(k, None)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Real ONNX models built by the tests (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def logistic_regression(
    path: Path, *, n_features: int = 20, seed: int = 0, zipmap: bool = False
) -> Path:
    """A scikit-learn logistic-regression classifier: outputs ``label`` and ``probabilities``."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, n_features)).astype(np.float32)
    weights = rng.normal(size=n_features)
    y = (x @ weights + rng.normal(scale=0.5, size=400) > 0).astype(np.int64)
    model = LogisticRegression(max_iter=500).fit(x, y)
    onx = to_onnx(
        model,
        x[:1],
        options={id(model): {"zipmap": zipmap}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path.write_bytes(onx.SerializeToString())
    return path


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def mixed_types(path: Path) -> Path:
    """Inputs of several datatypes with a dynamic batch; outputs depend on each input.

    ``scaled`` = x_fp64 * 2, ``summed`` = x_i32 + 1 (INT32), ``count`` = x_i64 + x_i64,
    ``negated`` = not flag.
    """
    f64 = helper.make_tensor_value_info("x_fp64", TensorProto.DOUBLE, ["batch", 3])
    i32 = helper.make_tensor_value_info("x_i32", TensorProto.INT32, ["batch", 2])
    i64 = helper.make_tensor_value_info("x_i64", TensorProto.INT64, ["batch", 1])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch"])
    two = helper.make_tensor("two", TensorProto.DOUBLE, [], [2.0])
    one = helper.make_tensor("one", TensorProto.INT32, [], [1])
    nodes = [
        helper.make_node("Mul", ["x_fp64", "two"], ["scaled"]),
        helper.make_node("Add", ["x_i32", "one"], ["summed"]),
        helper.make_node("Add", ["x_i64", "x_i64"], ["count"]),
        helper.make_node("Not", ["flag"], ["negated"]),
    ]
    outputs = [
        helper.make_tensor_value_info("scaled", TensorProto.DOUBLE, ["batch", 3]),
        helper.make_tensor_value_info("summed", TensorProto.INT32, ["batch", 2]),
        helper.make_tensor_value_info("count", TensorProto.INT64, ["batch", 1]),
        helper.make_tensor_value_info("negated", TensorProto.BOOL, ["batch"]),
    ]
    graph = helper.make_graph(nodes, "mixed", [f64, i32, i64, flag], outputs, [two, one])
    return _save(graph, path)


def strings(path: Path) -> Path:
    """A string identity model (BYTES in, BYTES out)."""
    x = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])
    y = helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch"])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["echo"])], "s", [x], [y])
    return _save(graph, path)


def fixed_batch(path: Path) -> Path:
    """Shape fixed at [2, 3]: cannot be batched across requests."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed", [x], [y])
    return _save(graph, path)


def gather(path: Path, *, table: int = 4) -> Path:
    """Looks rows up by index: an out-of-range index is rejected by ONNX Runtime itself."""
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch"])
    out = helper.make_tensor_value_info("row", TensorProto.FLOAT, ["batch", 2])
    values = helper.make_tensor(
        "table", TensorProto.FLOAT, [table, 2], np.arange(table * 2, dtype=np.float32).tolist()
    )
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["row"], axis=0)], "g", [idx], [out], [values]
    )
    return _save(graph, path)


def threshold_classifier(path: Path, *, threshold: float, features: int = 4) -> Path:
    """``label`` = 1 when the first feature is over ``threshold`` (INT64); ``score`` = that
    feature (FP32). Two of these with different thresholds disagree exactly on the inputs
    whose first feature lies between the thresholds."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", features])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    consts = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("squeeze_axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("t", TensorProto.FLOAT, [], [threshold]),
    ]
    nodes = [
        helper.make_node("Slice", ["X", "starts", "ends", "axes"], ["first"]),
        helper.make_node("Squeeze", ["first", "squeeze_axes"], ["score"]),
        helper.make_node("Greater", ["score", "t"], ["over"]),
        helper.make_node("Cast", ["over"], ["label"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(nodes, "threshold", [x], [label, score], consts)
    return _save(graph, path)

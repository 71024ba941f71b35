"""The demo's fraud models, built here with numpy and ``onnx.helper`` (nothing downloaded).

Inputs are one FP32 tensor ``X`` of eight features (``FEATURES``; ``region`` is a category
code); outputs are ``label`` (INT64: fraud or not) and ``probability`` (FP32). Ground truth
is a fixed linear rule plus noise, so the generator can send true labels as feedback.

- v1: logistic regression fitted on 300 rows and only four of the features: good.
- v2: fitted on 5000 rows and every feature: better.
- v3: fitted on last year's data, before region 4 opened: its drift profile is far from
  today's traffic, it is miscalibrated (its bias moved so that it disagrees with v2 on
  ``V3_DISAGREEMENT`` of live inputs), and its feature pipeline fails (HTTP 500) on
  region 4 (about 8% of today's inputs).
- v4: v2 refitted on fresh data (for the blue-green switch): as good as v2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

FEATURES = (
    "amount",
    "hour",
    "distance",
    "merchant_risk",
    "velocity",
    "account_age",
    "device_score",
    "region",
)
REGIONS = 5
_REGION_P = (0.4, 0.25, 0.15, 0.12, 0.08)
_LAST_YEAR_REGION_P = (0.3, 0.3, 0.2, 0.2, 0.0)  # region 4 opened this year
TRUE_WEIGHTS = np.array([1.6, -0.4, 1.1, 1.3, 0.9, -0.8, 0.5, 0.3], dtype=np.float64)
TRUE_BIAS = -0.9
V3_DISAGREEMENT = 0.25
NEW_REGION = 4

Array = np.ndarray


def sample(n: int, rng: np.random.Generator, *, last_year: bool = False) -> Array:
    """``n`` transactions as live traffic sees them today (or as they were last year:
    larger amounts and distances, and no region 4 yet)."""
    x = rng.normal(size=(n, len(FEATURES)))
    if last_year:
        x[:, 0] += 1.2
        x[:, 2] += 0.8
        x[:, 4] -= 0.7
    regions = rng.choice(REGIONS, size=n, p=_LAST_YEAR_REGION_P if last_year else _REGION_P)
    x[:, 7] = regions
    return x.astype(np.float32)


def truth(x: Array, rng: np.random.Generator | None = None) -> Array:
    """Whether each transaction is fraud (the rule the models try to learn)."""
    z = x.astype(np.float64) @ TRUE_WEIGHTS + TRUE_BIAS
    if rng is not None:
        z = z + rng.normal(scale=0.6, size=len(z))
    labels: Array = (z > 0).astype(np.int64)
    return labels


def fit(x: Array, y: Array, *, steps: int = 400, rate: float = 0.5) -> tuple[Array, float]:
    """Logistic regression by plain gradient descent: (weights, bias)."""
    xs = x.astype(np.float64)
    w = np.zeros(xs.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xs @ w + b)))
        w -= rate * xs.T @ (p - y) / len(y)
        b -= rate * float(np.mean(p - y))
    return w, b


# --- ONNX ------------------------------------------------------------------------------------


def _const(
    name: str, dtype: int, values: list[float] | list[int], dims: list[int]
) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, dims, values)


def _graph(weights: Array, bias: float, *, crash_region: int | None) -> onnx.ModelProto:
    n = len(FEATURES)
    inits = [
        _const("W", TensorProto.FLOAT, [float(v) for v in weights], [n, 1]),
        _const("B", TensorProto.FLOAT, [float(bias)], [1]),
        _const("half", TensorProto.FLOAT, [0.5], []),
        _const("squeeze_axes", TensorProto.INT64, [1], [1]),
    ]
    nodes = []
    source = "X"
    if crash_region is not None:
        # A broken feature pipeline: a batch holding the unknown region is reshaped to a
        # width that does not divide it, and ONNX Runtime fails (a 500, not a 4xx).
        column = FEATURES.index("region")
        inits += [
            _const("starts", TensorProto.INT64, [column], [1]),
            _const("ends", TensorProto.INT64, [column + 1], [1]),
            _const("limit", TensorProto.FLOAT, [crash_region - 0.5], []),
            _const("one", TensorProto.INT64, [1], [1]),
            _const("seven", TensorProto.INT64, [7], [1]),
            _const("width", TensorProto.INT64, [n], [1]),
            _const("rest", TensorProto.INT64, [-1], [1]),
        ]
        nodes += [
            helper.make_node("Slice", ["X", "starts", "ends", "squeeze_axes"], ["region"]),
            helper.make_node("Greater", ["region", "limit"], ["unknown"]),
            helper.make_node("Cast", ["unknown"], ["unknown_i"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["unknown_i"], ["any_2d"], keepdims=1),
            helper.make_node("Reshape", ["any_2d", "one"], ["any"]),
            helper.make_node("Mul", ["any", "seven"], ["extra"]),
            helper.make_node("Add", ["width", "extra"], ["new_width"]),
            helper.make_node("Concat", ["rest", "new_width"], ["shape"], axis=0),
            helper.make_node("Reshape", ["X", "shape"], ["X_checked"]),
        ]
        source = "X_checked"
    nodes += [
        helper.make_node("MatMul", [source, "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p2d"]),
        helper.make_node("Squeeze", ["p2d", "squeeze_axes"], ["probability"]),
        helper.make_node("Greater", ["probability", "half"], ["is_fraud"]),
        helper.make_node("Cast", ["is_fraud"], ["label"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "fraud",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", n])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class DemoModel:
    version: str
    path: Path
    data: Path  # the training data, CSV with a header (what `serinus profile` reads)
    description: str


def _write_csv(path: Path, x: Array) -> None:
    np.savetxt(path, x, delimiter=",", header=",".join(FEATURES), comments="", fmt="%.6g")


def build(directory: Path, *, seed: int = 7) -> dict[str, DemoModel]:
    """Write v1..v4 (``fraud-vN.onnx``) and their training data into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: dict[str, DemoModel] = {}

    def save(version: str, model: onnx.ModelProto, data: Array, description: str) -> None:
        path = directory / f"fraud-{version}.onnx"
        path.write_bytes(model.SerializeToString())
        csv = directory / f"fraud-{version}-train.csv"
        _write_csv(csv, data)
        out[version] = DemoModel(version, path, csv, description)

    x1 = sample(300, rng)
    w1, b1 = fit(x1[:, :4], truth(x1, rng))
    w1 = np.concatenate([w1, np.zeros(len(FEATURES) - 4)])
    save("v1", _graph(w1, b1, crash_region=None), x1, "logistic regression, 4 features")

    x2 = sample(5000, rng)
    w2, b2 = fit(x2, truth(x2, rng))
    save("v2", _graph(w2, b2, crash_region=None), x2, "logistic regression, 8 features")

    # v3's bias: move it until the given share of today's inputs changes side.
    live = sample(20000, rng).astype(np.float64)
    z = live @ w2 + b2
    below = float(np.mean(z <= 0))
    shift = float(np.quantile(z, min(0.999, below + V3_DISAGREEMENT)))
    x3 = sample(5000, rng, last_year=True)
    save(
        "v3",
        _graph(w2, b2 - shift, crash_region=NEW_REGION),
        x3,
        "fitted on last year's data: miscalibrated, fails on the new region",
    )

    x4 = sample(5000, rng)
    w4, b4 = fit(x4, truth(x4, rng))
    save("v4", _graph(w4, b4, crash_region=None), x4, "v2 refitted on fresh data")
    return out


def accuracy(path: Path, x: Array, y: Array) -> float:
    """Share of ``x`` the model at ``path`` labels as ``y`` (for the summary)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"X": x})[0]
    return float(np.mean(labels == y))

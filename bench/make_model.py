"""Build a benchmark model, exported to ONNX, with its request and expected answers.

Two models, both built here from fixed seeds (nothing is downloaded), both with the outputs
``label`` (INT64, one per row) and ``probabilities`` (FP32, one row of class probabilities
per row) and a dynamic first (batch) dimension:

- ``logreg`` (the default): a 20-feature logistic-regression classifier trained on
  synthetic data, converted with skl2onnx with ``zipmap`` off;
- ``mlp``: a multilayer perceptron 256 -> 1024 -> 512 -> 256 -> 10 (ReLU between layers,
  softmax and argmax on top), 921,866 random FP32 parameters (He initialisation), written
  with the ``onnx`` helper API. About 0.9 M multiply-adds per row: heavy enough that one
  merged runtime call for many rows costs far less than one call per row.

Writes ``model.onnx``, the one OIP v2 request body every server gets (``request.json``, one
row) and ``meta.json``: input/output names, what ONNX Runtime answers for that request, and
``check_rows``, a few distinct rows with their answers, sent concurrently to check that a
server's batching hands each request its own rows.

Usage: python bench/make_model.py OUT_DIR [logreg|mlp]
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import orjson
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "input"
MODEL_NAME = "bench"
#: Distinct rows (each its own request) sent at once by the harness's concurrent check.
CHECK_ROWS = 16

LOGREG_FEATURES = 20
MLP_LAYERS = (256, 1024, 512, 256, 10)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- the models ---------------------------------------------------------------------------


def logreg() -> tuple[bytes, str, int]:
    """scikit-learn logistic regression on 20 features, through skl2onnx."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(20240601)
    x = rng.normal(size=(4000, LOGREG_FEATURES)).astype(np.float32)
    weights = rng.normal(size=LOGREG_FEATURES)
    y = (x @ weights + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.int64)
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    onx = convert_sklearn(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, LOGREG_FEATURES]))],
        options={"zipmap": False},
    )
    params = int(clf.coef_.size + clf.intercept_.size)
    description = f"logistic regression on {LOGREG_FEATURES} FP32 features (ONNX)"
    return onx.SerializeToString(), description, params


def mlp() -> tuple[bytes, str, int]:
    """Gemm + Relu layers with random fixed-seed weights; softmax and argmax heads."""
    rng = np.random.default_rng(20251205)
    initializers, nodes = [], []
    previous = INPUT_NAME
    params = 0
    pairs = list(itertools.pairwise(MLP_LAYERS))
    for i, (fan_in, fan_out) in enumerate(pairs):
        weight = (rng.normal(size=(fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (rng.normal(size=fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(bias, f"b{i}"),
        ]
        params += weight.size + bias.size
        last = i == len(pairs) - 1
        out = "logits" if last else f"h{i}"
        nodes.append(
            helper.make_node("Gemm", [previous, f"w{i}", f"b{i}"], [out if last else f"z{i}"])
        )
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [out]))
        previous = out
    nodes += [
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    n_in, n_out = MLP_LAYERS[0], MLP_LAYERS[-1]
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_in])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_out]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    layers = " -> ".join(map(str, MLP_LAYERS))
    description = (
        f"MLP {layers} (ReLU; softmax and argmax heads), {params:,} random FP32 parameters "
        f"(ONNX, {len(pairs)} Gemm layers), one {n_in}-feature row per request"
    )
    return model.SerializeToString(), description, params


MODELS: dict[str, Callable[[], tuple[bytes, str, int]]] = {"logreg": logreg, "mlp": mlp}


# --- request and answers ------------------------------------------------------------------


def rows(seed: int, count: int, features: int) -> np.ndarray:
    """Rows rounded to 4 decimals, so their JSON text is short and the same everywhere."""
    raw = np.random.default_rng(seed).normal(size=(count, features))
    return np.round(raw, 4).astype(np.float32)


def body_for(row: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [1, int(row.shape[0])],
                "datatype": "FP32",
                "data": [round(float(v), 4) for v in row],
            }
        ]
    }


def answer(sess: ort.InferenceSession, row: np.ndarray) -> tuple[int, list[float], float]:
    """ONNX Runtime's own label and probabilities for one row, and how far its top class is
    from the next (a label is only checkable when rounding cannot swap the top two)."""
    label, probabilities = sess.run(None, {INPUT_NAME: row.reshape(1, -1)})
    top = np.sort(probabilities[0])[::-1]
    return int(label[0]), [float(p) for p in probabilities[0]], float(top[0] - top[1])


def build(out_dir: Path, kind: str = "logreg") -> dict[str, object]:
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose from {', '.join(MODELS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_bytes, description, params = MODELS[kind]()
    model_path = out_dir / "model.onnx"
    model_path.write_bytes(onnx_bytes)
    sess = session(model_path)
    features = int(sess.get_inputs()[0].shape[1])

    # The one request every server is loaded with (the seed the logreg bench always used).
    row = rows(7, 1, features)[0]
    (out_dir / "request.json").write_bytes(orjson.dumps(body_for(row)))
    expected_label, expected_probabilities, _ = answer(sess, row)
    checks: list[dict[str, object]] = []
    for candidate in rows(11, CHECK_ROWS * 4, features):
        label, probabilities, margin = answer(sess, candidate)
        if margin > 1e-3 and len(checks) < CHECK_ROWS:  # clear of rounding differences
            data = [round(float(v), 4) for v in candidate]
            checks.append({"data": data, "label": label, "probabilities": probabilities})

    meta: dict[str, object] = {
        "kind": kind,
        "description": description,
        "parameters": params,
        "model_bytes": len(onnx_bytes),
        "model_name": MODEL_NAME,
        "input_name": sess.get_inputs()[0].name,
        "outputs": [o.name for o in sess.get_outputs()],
        "expected_label": expected_label,
        "expected_probabilities": expected_probabilities,
        "n_features": features,
        "check_rows": checks,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: make_model.py OUT_DIR [{'|'.join(MODELS)}]")
    kind = sys.argv[2] if len(sys.argv) == 3 else "logreg"
    if kind not in MODELS:
        sys.exit(f"make_model.py: unknown model {kind!r}; choose from {', '.join(MODELS)}")
    meta = build(Path(sys.argv[1]), kind)
    print(json.dumps({k: v for k, v in meta.items() if k != "check_rows"}))


if __name__ == "__main__":
    main()

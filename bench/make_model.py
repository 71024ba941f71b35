"""Build the benchmark model: a 20-feature logistic-regression classifier, exported to ONNX.

Trained on synthetic data (nothing is downloaded), converted with skl2onnx with
``zipmap`` off so ``probabilities`` is a plain FP32 tensor next to the INT64 ``label``.
Writes ``model.onnx``, the one OIP v2 request body every server gets (``request.json``)
and ``meta.json`` (input/output names and the label ONNX Runtime gives for that request).

Usage: python bench/make_model.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

N_FEATURES = 20
INPUT_NAME = "input"
MODEL_NAME = "bench"


def train() -> LogisticRegression:
    rng = np.random.default_rng(20240601)
    x = rng.normal(size=(4000, N_FEATURES)).astype(np.float32)
    weights = rng.normal(size=N_FEATURES)
    y = (x @ weights + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.int64)
    return LogisticRegression(max_iter=1000).fit(x, y)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build(out_dir: Path) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    clf = train()
    onx = convert_sklearn(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        options={"zipmap": False},
    )
    model_path = out_dir / "model.onnx"
    model_path.write_bytes(onx.SerializeToString())

    # One fixed row, rounded so its JSON text is short and the same everywhere.
    row = np.round(np.random.default_rng(7).normal(size=N_FEATURES), 4).astype(np.float32)
    body = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [1, N_FEATURES],
                "datatype": "FP32",
                "data": [round(float(v), 4) for v in row],
            }
        ]
    }
    (out_dir / "request.json").write_bytes(orjson.dumps(body))

    sess = session(model_path)
    label, probabilities = sess.run(None, {INPUT_NAME: row.reshape(1, -1)})
    meta: dict[str, object] = {
        "model_name": MODEL_NAME,
        "input_name": sess.get_inputs()[0].name,
        "outputs": [o.name for o in sess.get_outputs()],
        "expected_label": int(label[0]),
        "expected_probabilities": [float(p) for p in probabilities[0]],
        "n_features": N_FEATURES,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_model.py OUT_DIR")
    meta = build(Path(sys.argv[1]))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()

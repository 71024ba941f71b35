"""Profiles made in memory for the drift tests (no model needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from serinus_serving.drift.build import categorical_reference, numeric_reference
from serinus_serving.drift.columns import Column, Selector
from serinus_serving.drift.profile import Profile, Reference, Target

SHA = hashlib.sha256(b"model").hexdigest()


def numeric(
    name: str, values: np.ndarray, *, tensor: str = "X", index: int | None = None
) -> Reference:
    return numeric_reference(
        Column(name, Selector(tensor, index=index), "numeric"), values, bins=10, quantiles=100
    )


def categorical(
    name: str, values: np.ndarray, *, tensor: str = "X", index: int | None = None
) -> Reference:
    return categorical_reference(
        Column(name, Selector(tensor, index=index), "categorical"), values, max_categories=64
    )


def tabular_profile(seed: int = 0, rows: int = 20_000) -> Profile:
    """Features a, b (normal) and c (categories 0..3, the third column of X); output label."""
    rng = np.random.default_rng(seed)
    return Profile(
        model_sha256=SHA,
        features=(
            numeric("a", rng.normal(size=rows), index=0),
            numeric("b", rng.normal(size=rows), index=1),
            categorical("c", rng.integers(0, 4, size=rows), index=2),
        ),
        outputs=(categorical("label", rng.integers(0, 2, size=rows), tensor="label"),),
        target=Target("label", "classification"),
        rows=rows,
    )


def live_rows(rng: np.random.Generator, rows: int, *, shift_a: float = 0.0) -> np.ndarray:
    x = np.empty((rows, 3), dtype=np.float32)
    x[:, 0] = rng.normal(shift_a, 1, size=rows)
    x[:, 1] = rng.normal(size=rows)
    x[:, 2] = rng.integers(0, 4, size=rows)
    return x


# ---------------------------------------------------------------------------- models
def image_model(path: Path) -> Path:
    """Input ``img`` [N, 3, 4, 4] FP32; output ``brightness`` [N] (its mean)."""
    import onnx
    from onnx import TensorProto, helper

    img = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 3, 4, 4])
    out = helper.make_tensor_value_info("brightness", TensorProto.FLOAT, ["batch"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    node = helper.make_node("ReduceMean", ["img", "axes"], ["brightness"], keepdims=0)
    graph = helper.make_graph([node], "image", [img], [out], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def regressor(path: Path, *, n_features: int = 4, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A linear regression on ``n_features`` FP32 features; output ``variable`` [N, 1].
    Returns the model and its training inputs."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, n_features)).astype(np.float32)
    y = x @ rng.normal(size=n_features) + rng.normal(scale=0.1, size=len(x))
    onx = to_onnx(LinearRegression().fit(x, y), x[:1], target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path, x

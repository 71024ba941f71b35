"""The runtime's per-request path (raw binding call, single-row padding, dense outputs)
returns exactly what the public ONNX Runtime API gives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from serinus_serving.runtime.onnx import OnnxRuntime, _densify, _run_call, sample_inputs

pytestmark = pytest.mark.unit

MODELS = ["logreg_path", "zipmap_path", "mixed_path", "strings_path", "fixed_path", "gather_path"]


def _loaded(path: Path) -> OnnxRuntime:
    runtime = OnnxRuntime(str(path))
    asyncio.run(runtime.load())
    assert runtime.ready, runtime.reason
    return runtime


def _rows(runtime: OnnxRuntime, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    sample = sample_inputs(runtime.inputs, rows)
    for name, array in sample.items():
        if array.dtype.kind == "f":
            sample[name] = rng.normal(size=array.shape).astype(array.dtype)
    return sample


def _reference(runtime: OnnxRuntime, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The former path: public ``InferenceSession.run``, padding by concatenation."""
    session = runtime._session
    assert session is not None
    names = [spec.name for spec in runtime.outputs]
    pad = runtime._pad_single_rows and next(iter(inputs.values())).shape[0] == 1
    feed = {n: np.concatenate((a, a)) for n, a in inputs.items()} if pad else inputs
    values = [_densify(v) for v in session.run(names, feed)]
    return {n: v[:1] if pad else v for n, v in zip(names, values, strict=True)}


@pytest.mark.parametrize("model", MODELS)
def test_one_row_matches_the_public_api(model: str, request: pytest.FixtureRequest) -> None:
    runtime = _loaded(request.getfixturevalue(model))
    for rows in (1, 3):
        inputs = _rows(runtime, rows) if runtime.batchable or rows == 1 else None
        if inputs is None:
            continue
        got, want = runtime.predict(inputs), _reference(runtime, inputs)
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


def test_padded_single_row_equals_its_row_in_a_batch(logreg_path: Path) -> None:
    runtime = _loaded(logreg_path)
    batch = _rows(runtime, 8)
    together = runtime.predict(batch)
    for row in range(8):
        alone = runtime.predict({n: a[row : row + 1] for n, a in batch.items()})
        for name, value in alone.items():
            np.testing.assert_array_equal(value, together[name][row : row + 1])


@pytest.mark.parametrize("pad", [True, False])
def test_padding_on_or_off_gives_the_same_shapes(logreg_path: Path, pad: bool) -> None:
    runtime = _loaded(logreg_path)
    runtime._pad_single_rows = pad
    inputs = _rows(runtime, 1)
    out = runtime.predict(inputs, ["label"])
    assert list(out) == ["label"] and out["label"].shape == (1,)
    proxy = runtime.predict(MappingProxyType(inputs))  # any Mapping, not only a dict
    np.testing.assert_array_equal(proxy["label"], out["label"])


def test_zipmap_outputs_are_densified(zipmap_path: Path) -> None:
    runtime = _loaded(zipmap_path)
    assert not runtime._dense_outputs
    out = runtime.predict(_rows(runtime, 1))
    assert all(isinstance(v, np.ndarray) for v in out.values())


def test_run_call_falls_back_to_the_public_method() -> None:
    session = SimpleNamespace(run=lambda names, feed, options=None: ["public"])
    assert _run_call(session)(["y"], {}, None) == ["public"]  # type: ignore[arg-type]
    raw = SimpleNamespace(run=lambda names, feed, options: ["raw"])
    session_with_binding = SimpleNamespace(_sess=raw, run=session.run)
    assert _run_call(session_with_binding)(["y"], {}, None) == ["raw"]  # type: ignore[arg-type]


def test_predict_after_unload_raises(logreg_path: Path) -> None:
    runtime = _loaded(logreg_path)
    asyncio.run(runtime.unload())
    with pytest.raises(RuntimeError, match="not loaded"):
        runtime.predict(_rows(runtime, 1))

"""The DataPlane on its own: decoded inputs in, arrays and dicts out, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
import pytest

from serinus_serving import __version__
from serinus_serving.codec import InferRequest
from serinus_serving.dataplane import DataPlane
from serinus_serving.drift.build import ProfileOptions, build_profile
from serinus_serving.drift.config import DriftSettings
from serinus_serving.drift.feedback import Label
from serinus_serving.drift.profile import dump_profile
from serinus_serving.errors import ModelNotFound, ModelNotReady
from serinus_serving.runtime.onnx import OnnxRuntime
from serinus_serving.settings import ServeSettings

pytestmark = pytest.mark.unit

T = TypeVar("T")


def plane_for(model: Path, **overrides: Any) -> DataPlane:
    settings = ServeSettings(model_uri=str(model), name="m", version="1", **overrides)
    return DataPlane(settings, OnnxRuntime(settings.model_uri, sha256=settings.sha256))


def with_loaded(plane: DataPlane, body: Callable[[DataPlane], Awaitable[T]]) -> T:
    async def run() -> T:
        await plane.load()
        try:
            return await body(plane)
        finally:
            await plane.close()

    return asyncio.run(run())


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 20)).astype(np.float32)


def test_infer_matches_onnx_runtime(logreg_path: Path) -> None:
    x = rows(5)
    label, proba = ort.InferenceSession(str(logreg_path)).run(None, {"X": x})

    async def body(plane: DataPlane) -> None:
        plane.check_target("m", "1")  # ready: no error
        outputs = await plane.infer(InferRequest(inputs={"X": x}, rows=5))
        assert list(outputs) == ["label", "probabilities"]
        np.testing.assert_array_equal(outputs["label"], label)
        np.testing.assert_array_equal(outputs["probabilities"], proba)
        only = await plane.infer(InferRequest(inputs={"X": x}, rows=5, outputs=["label"]))
        assert list(only) == ["label"]

    with_loaded(plane_for(logreg_path), body)


@pytest.mark.parametrize("max_batch_size", [0, 32])
def test_concurrent_requests_get_their_own_rows(logreg_path: Path, max_batch_size: int) -> None:
    """40 requests on their way at once (as the HTTP server counts them: ``arriving``):
    merged when batching is on, each answered with its own rows either way."""
    x = rows(40, seed=1)
    label, _ = ort.InferenceSession(str(logreg_path)).run(None, {"X": x})
    coming = [40]

    async def body(plane: DataPlane) -> None:
        assert (plane.batcher is not None) == (max_batch_size > 0)

        async def one(i: int) -> np.ndarray:
            await asyncio.sleep(0)  # still being received
            coming[0] -= 1
            outputs = await plane.infer(InferRequest(inputs={"X": x[i : i + 1]}, rows=1))
            return outputs["label"]

        results = await asyncio.gather(*(one(i) for i in range(40)))
        np.testing.assert_array_equal(np.concatenate(results), label)
        calls = plane.metrics.batch_rows.count  # runtime calls
        assert calls < 40 if max_batch_size else calls == 40
        assert coming[0] == 0

    plane = plane_for(logreg_path, max_batch_size=max_batch_size)
    plane.arriving_elsewhere = lambda: coming[0]
    with_loaded(plane, body)


def test_metadata_and_targets(logreg_path: Path) -> None:
    plane = plane_for(logreg_path, revision="abc")
    assert plane.server_metadata() == {
        "name": "serinus",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }
    with pytest.raises(ModelNotReady, match="LOADING"):
        plane.check_target("m", None)
    assert plane.unready_reason() == "LOADING: loading"

    async def body(plane: DataPlane) -> None:
        meta = plane.model_metadata("m", None)
        assert meta["name"] == "m" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}]
        assert meta["parameters"]["revision"] == "abc"
        assert meta["parameters"]["state"] == "READY"
        assert len(meta["parameters"]["sha256"]) == 64
        assert list(plane.input_specs) == ["X"]
        with pytest.raises(ModelNotFound, match="unknown model 'x'"):
            plane.model_metadata("x", None)
        with pytest.raises(ModelNotFound, match="no version '2'"):
            plane.check_target("m", "2")
        assert plane.ready and plane.unready_reason() is None

    with_loaded(plane, body)


def test_draining_is_unready_but_still_infers(logreg_path: Path) -> None:
    async def body(plane: DataPlane) -> None:
        plane.begin_drain()
        assert not plane.ready
        assert plane.unready_reason() == "draining"
        assert plane.metrics.ready() is False
        plane.check_target("m", None)  # the model itself still serves
        outputs = await plane.infer(InferRequest(inputs={"X": rows(1)}, rows=1))
        assert outputs["label"].shape == (1,)

    with_loaded(plane_for(logreg_path), body)


def test_a_model_that_fails_to_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")

    async def body(plane: DataPlane) -> None:
        assert not plane.ready
        assert (plane.unready_reason() or "").startswith("FAILED: ")
        with pytest.raises(ModelNotReady, match="FAILED"):
            plane.model_metadata("m", None)
        state = plane.model_state()
        assert state["name"] == "m" and state["state"] == "FAILED"
        assert "cannot load" in state["reason"]
        assert plane.batcher is None and plane.input_specs == {}

    with_loaded(plane_for(broken), body)


def test_request_ids_are_remembered_for_feedback(logreg_path: Path) -> None:
    x = rows(3, seed=2)

    async def body(plane: DataPlane) -> None:
        assert plane.feedback is not None
        outputs = await plane.infer(InferRequest(inputs={"X": x}, rows=3, id="r1"))
        predicted = outputs["label"].tolist()
        counts = plane.feedback.apply([Label("r1", predicted), Label("other", [0, 0, 0])])
        assert counts["matched"] == 1 and counts["unknown_id"] == 1

    with_loaded(plane_for(logreg_path), body)


@pytest.mark.parametrize("max_batch_size", [0, 32])
def test_every_row_enters_the_drift_window_once(
    logreg_path: Path, tmp_path: Path, max_batch_size: int
) -> None:
    train = tmp_path / "train.npy"
    np.save(train, rows(2000, seed=3))
    profile = tmp_path / "profile.json"
    profile.write_bytes(dump_profile(build_profile(str(logreg_path), train, ProfileOptions())))
    drift = DriftSettings(profile=str(profile), min_samples=1)

    async def body(plane: DataPlane) -> None:
        assert plane.drift_monitor is not None
        requests = [InferRequest(inputs={"X": rows(n, seed=n)}, rows=n) for n in (1, 2, 3, 4)]
        await asyncio.gather(*(plane.infer(r) for r in requests))
        assert plane.drift_monitor.snapshot().window_samples == 10

    with_loaded(plane_for(logreg_path, max_batch_size=max_batch_size, drift=drift), body)


def test_a_profile_that_cannot_be_read_keeps_the_model_unready(
    logreg_path: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "missing.json"  # cannot be fetched

    async def body(plane: DataPlane) -> None:
        assert not plane.ready
        assert "drift profile" in (plane.unready_reason() or "")

    drift = DriftSettings(profile=str(profile))
    with_loaded(plane_for(logreg_path, drift=drift), body)

"""Adaptive batching with a real ONNX Runtime session: merged calls give the very same
results as one call per request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from serinus_serving.batching import AdaptiveBatcher, signature_of
from serinus_serving.errors import InferenceError
from serinus_serving.runtime.onnx import OnnxRuntime

pytestmark = pytest.mark.unit


async def _loaded(path: Path) -> OnnxRuntime:
    runtime = OnnxRuntime(str(path))
    await runtime.load()
    assert runtime.ready, runtime.reason
    return runtime


@pytest.mark.parametrize("inline", [True, False])
def test_concurrent_requests_are_merged_and_split_back_exactly(
    logreg_path: Path, inline: bool
) -> None:
    rng = np.random.default_rng(7)
    requests = [
        rng.normal(size=(int(rng.integers(1, 5)), 20)).astype(np.float32) for _ in range(40)
    ]
    calls: list[int] = []

    async def scenario() -> list[dict[str, np.ndarray]]:
        runtime = await _loaded(logreg_path)
        batcher = AdaptiveBatcher(
            runtime.predict,
            max_batch_size=16,
            max_latency=0.005,
            inline=inline,
            observe=lambda rows, _s: calls.append(rows),
        )
        try:
            return await asyncio.gather(*(batcher.submit({"X": x}, len(x)) for x in requests))
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    unbatched = asyncio.run(_loaded(logreg_path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(logreg_path), options)
    for x, got in zip(requests, results, strict=True):
        want = unbatched.predict({"X": x})
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
        # and what ONNX Runtime itself answers for these rows in a multi-row call
        label, proba = session.run(None, {"X": np.concatenate((x, x))})
        np.testing.assert_array_equal(got["label"], label[: len(x)])
        np.testing.assert_array_equal(got["probabilities"], proba[: len(x)])
    assert sum(calls) == sum(len(x) for x in requests)
    assert max(calls) <= 16
    assert len(calls) < len(requests), "concurrent requests should share runtime calls"


def test_requests_with_different_row_shapes_never_share_a_call(mixed_path: Path) -> None:
    a = {"x": np.zeros((1, 3), dtype=np.float32)}
    b = {"x": np.zeros((1, 4), dtype=np.float32)}
    assert signature_of(a) != signature_of(b)
    assert signature_of(a) == signature_of({"x": np.ones((5, 3), dtype=np.float32)})
    assert signature_of(a) != signature_of({"x": np.zeros((1, 3), dtype=np.float64)})


def test_one_bad_request_does_not_fail_its_neighbours(gather_path: Path) -> None:
    async def scenario() -> list[object]:
        runtime = await _loaded(gather_path)
        batcher = AdaptiveBatcher(runtime.predict, max_batch_size=8, max_latency=0.0, inline=True)
        good = [np.array([i % 4], dtype=np.int64) for i in range(5)]
        bad = np.array([99], dtype=np.int64)
        jobs = [batcher.submit({"idx": x}, 1) for x in [*good[:2], bad, *good[2:]]]
        try:
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    assert isinstance(results[2], InferenceError)
    for index, result in enumerate(results):
        if index != 2:
            assert isinstance(result, dict)
            assert result["row"].shape == (1, 2)


def test_fixed_batch_models_are_not_batchable(fixed_path: Path, logreg_path: Path) -> None:
    assert not asyncio.run(_loaded(fixed_path)).batchable
    assert asyncio.run(_loaded(logreg_path)).batchable


def test_a_request_larger_than_a_batch_runs_alone(logreg_path: Path) -> None:
    calls: list[int] = []

    async def scenario() -> list[dict[str, np.ndarray]]:
        runtime = await _loaded(logreg_path)
        batcher = AdaptiveBatcher(
            runtime.predict,
            max_batch_size=4,
            max_latency=0.0,
            inline=True,
            observe=lambda rows, _s: calls.append(rows),
        )
        rows = [np.zeros((n, 20), dtype=np.float32) for n in (1, 9, 1, 2)]
        try:
            return await asyncio.gather(*(batcher.submit({"X": x}, len(x)) for x in rows))
        finally:
            await batcher.close()

    results = asyncio.run(scenario())
    assert [len(r["label"]) for r in results] == [1, 9, 1, 2]
    assert 9 in calls and sum(calls) == 13


def test_a_lone_request_runs_at_once_when_the_server_says_no_one_is_coming(
    logreg_path: Path,
) -> None:
    """With the server's count of requests on their way, a request with no company runs
    in the caller's own turn of the loop (no wait); with company on its way it waits for
    it, up to the latency bound."""
    coming = [0]
    calls: list[int] = []

    async def scenario() -> tuple[bool, list[int]]:
        runtime = await _loaded(logreg_path)
        batcher = AdaptiveBatcher(
            runtime.predict,
            max_batch_size=16,
            max_latency=0.5,
            inline=True,
            observe=lambda rows, _s: calls.append(rows),
            arriving=lambda: coming[0],
        )
        x = np.ones((1, 20), dtype=np.float32)
        alone = batcher.submit({"X": x}, 1)
        try:
            alone.send(None)  # one step: finished without ever suspending
            ran_at_once = False
        except StopIteration:
            ran_at_once = True
        coming[0] = 1  # a request is arriving: the next one waits for it
        first = asyncio.ensure_future(batcher.submit({"X": x}, 1))
        await asyncio.sleep(0.01)
        waited = not first.done()
        coming[0] = 0
        second = batcher.submit({"X": np.ones((2, 20), dtype=np.float32)}, 2)
        await asyncio.gather(first, second)
        await batcher.close()
        return ran_at_once and waited, calls

    ok, rows = asyncio.run(scenario())
    assert ok
    assert rows == [1, 3]  # the lone one alone; the waiting one with the one it waited for

"""ONNX Runtime (CPU) backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from serinus_serving.datatypes import DATATYPE_BY_ONNX, NUMPY_BY_DATATYPE
from serinus_serving.errors import InferenceError, ModelLoadError
from serinus_serving.loading import DEFAULT_MAX_BYTES, fetch_model
from serinus_serving.runtime.base import Array, ModelRuntime, ModelState, TensorSpec
from serinus_serving.sources.base import redacted

log = logging.getLogger(__name__)

# skl2onnx classifiers emit probabilities as a sequence of {class: prob} maps (ZipMap).
_ZIPMAP_PREFIX = "seq(map("


def _dims(shape: Sequence[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _output_spec(node: Any) -> TensorSpec:
    if node.type.startswith(_ZIPMAP_PREFIX):
        # Served as a dense [batch, classes] FP32 tensor, columns in class order.
        return TensorSpec(node.name, "FP32", (-1, -1))
    datatype = DATATYPE_BY_ONNX.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"output {node.name!r} has unsupported type {node.type}")
    return TensorSpec(node.name, datatype, _dims(node.shape))


def _input_spec(node: Any) -> TensorSpec:
    datatype = DATATYPE_BY_ONNX.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"input {node.name!r} has unsupported type {node.type}")
    return TensorSpec(node.name, datatype, _dims(node.shape))


def _densify(value: Any) -> Array:
    """Turn ONNX Runtime's list-of-maps output into a [batch, classes] array."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0])
        return np.asarray([[row[k] for k in keys] for row in value], dtype=np.float32)
    return np.asarray(value)


def _same(a: Array, b: Array) -> bool:
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


RunCall = Callable[[list[str], dict[str, Array], Any], Sequence[Any]]


def _run_call(session: ort.InferenceSession) -> RunCall:
    """ONNX Runtime's own ``run``, under its Python wrapper's per-call checks when it can.

    ``InferenceSession.run`` re-validates the feed's names and walks the session's metadata
    on every call: some 8k instructions, about a sixth of a one-row call. Here the codec
    has checked every input's name, type and shape before ``predict``, and only the CPU
    provider is used (so the wrapper's provider fallback never applies). Falls back to the
    public method should a future ONNX Runtime drop the binding object.
    """
    run = getattr(getattr(session, "_sess", None), "run", None)
    return cast(RunCall, run) if callable(run) else session.run


def sample_inputs(specs: Sequence[TensorSpec], batch: int) -> dict[str, Array]:
    """Zero-valued inputs with every dynamic dim set to ``batch`` (first) or 1 (others)."""
    sample: dict[str, Array] = {}
    for spec in specs:
        shape = [(batch if i == 0 else 1) if d < 0 else d for i, d in enumerate(spec.shape)]
        if spec.datatype == "BYTES":
            sample[spec.name] = np.full(shape, "", dtype=object)
        else:
            sample[spec.name] = np.zeros(shape, dtype=NUMPY_BY_DATATYPE[spec.datatype])
    return sample


class OnnxRuntime(ModelRuntime):
    """One ONNX model on ONNX Runtime's CPU provider.

    Thread counts default to one: serving many small requests concurrently, extra intra-op
    threads spin and steal the core the event loop needs.
    """

    platform = "onnxruntime_onnx"

    def __init__(
        self,
        uri: str,
        *,
        sha256: str | None = None,
        model_dir: Path | None = None,
        max_model_bytes: int = DEFAULT_MAX_BYTES,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        prefetched: bool = False,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.prefetched = prefetched
        self.expected_sha256 = sha256
        self.model_dir = model_dir
        self.max_model_bytes = max_model_bytes
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self._session: ort.InferenceSession | None = None
        self._output_names: list[str] = []
        self.load_seconds = 0.0
        self._pad_single_rows = False
        #: ``run(output_names, feed, run_options)``, set once the session is loaded.
        self._call: RunCall | None = None
        #: True when every output is a plain tensor, so ``_densify`` has nothing to do.
        self._dense_outputs = True

    async def load(self) -> None:
        started = time.perf_counter()
        self.state, self.reason = ModelState.LOADING, "loading"
        try:
            await asyncio.to_thread(self._load_sync)
        except ModelLoadError as exc:
            self.state, self.reason = ModelState.FAILED, str(exc)
        except Exception as exc:  # ONNX Runtime raises its own exception types
            self.state, self.reason = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
        else:
            self.state, self.reason = ModelState.READY, "ready"
        self.load_seconds = time.perf_counter() - started
        if self.state is ModelState.FAILED:
            log.error("model %s failed to load: %s", redacted(self.uri), self.reason)
        else:
            log.info(
                "model %s ready in %.2fs (warm-up inference %.2f ms, batchable=%s)",
                redacted(self.uri),
                self.load_seconds,
                self.warmup_seconds * 1000,
                self.batchable,
            )

    def _load_sync(self) -> None:
        fetched = fetch_model(
            self.uri,
            sha256=self.expected_sha256,
            dest_dir=self.model_dir,
            max_bytes=self.max_model_bytes,
            prefetched=self.prefetched,
        )
        self.sha256 = fetched.sha256
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(fetched.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"ONNX Runtime cannot load {redacted(self.uri)}: {exc}") from exc
        self.inputs = tuple(_input_spec(node) for node in session.get_inputs())
        self.outputs = tuple(_output_spec(node) for node in session.get_outputs())
        self._output_names = [spec.name for spec in self.outputs]
        self._dense_outputs = all(n.type.startswith("tensor(") for n in session.get_outputs())
        self._session = session
        self._call = _run_call(session)
        self._warm_up()

    def _warm_up(self) -> None:
        try:
            sample = sample_inputs(self.inputs, 1)
            self.predict(sample)  # the first call pays for lazy allocations; time the second
            started = time.perf_counter()
            self.predict(sample)
            self.warmup_seconds = time.perf_counter() - started
        except Exception as exc:
            raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
        self.batchable = self._probe_batching()
        self._pad_single_rows = self.batchable and self._single_row_kernel_differs()

    def _probe_batching(self) -> bool:
        """Batching is safe only if every input and output has a dynamic first axis."""
        if not self.inputs or any(not s.shape or s.shape[0] != -1 for s in self.inputs):
            return False
        try:
            outputs = self.predict(sample_inputs(self.inputs, 3))
        except Exception:
            return False
        return all(a.ndim >= 1 and a.shape[0] == 3 for a in outputs.values())

    def _single_row_kernel_differs(self) -> bool:
        """ONNX Runtime may pick another kernel for one row (GEMV rather than GEMM), whose
        float rounding differs in the last bit. Then a row's result would depend on how many
        rows shared its call; padding single rows to two keeps every call on one kernel."""
        rng = np.random.default_rng(0)
        rows = 8
        sample = sample_inputs(self.inputs, rows)
        for name, array in sample.items():
            if array.dtype.kind == "f":
                sample[name] = rng.normal(size=array.shape).astype(array.dtype)
        try:
            together = self._run(sample, None)
            for row in range(rows):
                alone = self._run({n: a[row : row + 1] for n, a in sample.items()}, None)
                if any(not _same(alone[n], together[n][row : row + 1]) for n in alone):
                    return True
        except Exception:
            return False
        return False

    def predict(
        self, inputs: Mapping[str, Array], output_names: Sequence[str] | None = None
    ) -> dict[str, Array]:
        # The per-request path: what it can settle was settled at load.
        if self._pad_single_rows and next(iter(inputs.values())).shape[0] == 1:
            # For one row, a.repeat(2, 0) is np.concatenate((a, a)) at half the cost.
            doubled = {n: a.repeat(2, 0) for n, a in inputs.items()}
            return {n: a[:1] for n, a in self._run(doubled, output_names).items()}
        return self._run(inputs, output_names)

    def _run(
        self, inputs: Mapping[str, Array], output_names: Sequence[str] | None
    ) -> dict[str, Array]:
        call = self._call
        if call is None:
            raise RuntimeError("model is not loaded")
        names = list(output_names) if output_names else self._output_names
        try:
            values = call(names, inputs if type(inputs) is dict else dict(inputs), None)
        except InvalidArgument as exc:
            # Types and shapes were checked already: this is the data itself (an index out
            # of range, say), so it is the client's to fix.
            raise InferenceError(f"the model rejected the input: {exc}") from None
        if self._dense_outputs:
            return dict(zip(names, values, strict=True))
        return {name: _densify(value) for name, value in zip(names, values, strict=True)}

    async def unload(self) -> None:
        self._session = None
        self._call = None
        await super().unload()

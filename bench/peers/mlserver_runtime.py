"""MLServer custom runtime: the benchmark model on ONNX Runtime, in the server's own process.

Referenced from the generated ``model-settings.json`` as
``mlserver_runtime.OnnxRuntimeModel`` (bench/peers is put on PYTHONPATH). The session uses
one intra-op and one inter-op thread, like every other server in the benchmark.

With MLServer's adaptive batching on (``max_batch_size`` and ``max_batch_time`` in
model-settings.json), ``predict`` gets one merged request: the rows of several requests,
concatenated along the first dimension (shape ``[rows, features]``). It runs them in one
ONNX Runtime call and answers with outputs whose first dimension is those rows, which
MLServer splits back per request (it slices each output's flattened data by each request's
row count, so every output must keep one entry, or row, per input row). ``GET
/bench/batch-stats`` reports the runtime calls, rows and seconds in them so far, so the
harness can tell how large MLServer's batches were.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json must set parameters.uri")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._calls = 0
        self._rows = 0
        self._seconds = 0.0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        # Merged or not, the request's shape is [rows, features] and its data flat.
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        started = time.perf_counter()
        results = self._session.run(None, {self._input_name: x})
        self._seconds += time.perf_counter() - started
        self._calls += 1
        self._rows += x.shape[0]
        for name, value in zip(self._output_names, results, strict=True):
            if value.shape[0] != x.shape[0]:  # MLServer could not split it back per request
                raise ValueError(f"output {name} has {value.shape[0]} rows for {x.shape[0]}")
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name=name, payload=value)
                for name, value in zip(self._output_names, results, strict=True)
            ],
        )

    @custom_handler(rest_path="/bench/batch-stats", rest_method="GET")
    async def batch_stats(self) -> dict[str, float]:
        return {"calls": self._calls, "rows": self._rows, "seconds": self._seconds}

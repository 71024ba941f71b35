"""KServe peer: a ``kserve.Model`` on ONNX Runtime under ``kserve.ModelServer`` (one worker).

Usage: python kserve_server.py MODEL_PATH MODEL_NAME HTTP_PORT

Only the REST server runs (gRPC off). Per-request logging is off, as in every server in the
benchmark: KServe's uvicorn access log, its latency log line and its timing middleware's
trace lines. ``ModelServer`` binds REST to 0.0.0.0 with no option to change it, so a shim
points its uvicorn config at 127.0.0.1.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.protocol.rest import server as rest_server

HOST = "127.0.0.1"


class OnnxRuntimeModel(Model):
    def __init__(self, name: str, model_path: str) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            self.model_path, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        results = self.session.run(None, {self.input_name: x})
        outputs = []
        for name, value in zip(self.output_names, results, strict=True):
            datatype = "INT64" if value.dtype == np.int64 else "FP32"
            output = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=outputs
        )


def _bind_loopback() -> None:
    original = rest_server.RESTServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = HOST
        self.config.access_log = False

    rest_server.RESTServer.__init__ = init


def main() -> None:
    model_path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _bind_loopback()
    model = OnnxRuntimeModel(model_name, model_path)
    server = ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False)
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()

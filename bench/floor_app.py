"""The practical floor: a bare ASGI app (no framework) serving the OIP v2 infer call.

orjson in, one ONNX Runtime session (one intra-op and one inter-op thread) called on the
event loop, orjson out. Anything a real server does on top of this costs time; this is
what "nothing on top" measures under the same uvicorn (uvloop + httptools, no access log).

Run: BENCH_MODEL_PATH=model.onnx BENCH_MODEL_NAME=bench \
    uvicorn floor_app:app --app-dir bench --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_DTYPES = {"tensor(int64)": "INT64", "tensor(float)": "FP32"}


class FloorApp:
    def __init__(self, model_path: str, model_name: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.model_name = model_name
        self.infer_path = f"/v2/models/{model_name}/infer"
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [(o.name, _DTYPES[o.type]) for o in self.session.get_outputs()]

    def infer(self, body: bytes) -> bytes:
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        results = self.session.run(None, {self.input_name: x})
        return orjson.dumps(
            {
                "model_name": self.model_name,
                "outputs": [
                    {
                        "name": name,
                        "shape": list(value.shape),
                        "datatype": datatype,
                        "data": value.ravel(),
                    }
                    for (name, datatype), value in zip(self.outputs, results, strict=True)
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if scope["method"] == "POST" and path == self.infer_path:
            chunks = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            try:
                status, body = 200, self.infer(b"".join(chunks))
            except Exception as exc:
                status, body = 400, orjson.dumps({"error": str(exc)})
        elif path in ("/v2/health/ready", "/v2/health/live"):
            status, body = 200, b"{}"
        else:
            status, body = 404, b'{"error":"not found"}'
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": body})


app = FloorApp(os.environ["BENCH_MODEL_PATH"], os.environ.get("BENCH_MODEL_NAME", "bench"))

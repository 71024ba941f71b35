"""The model server's ASGI application.

Inference (``/v2/models/{m}[/versions/{v}]/infer`` and ``/v1/models/{m}:predict``) runs on a
raw ASGI fast path: FastAPI's routing and response machinery cost more than a small model's
inference. Everything else (health, metadata, metrics, OpenAPI docs) is a FastAPI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from serinus_serving import __version__
from serinus_serving.batching import AdaptiveBatcher, RunFn
from serinus_serving.codec import HEADER_LENGTH, parse_v1, parse_v2, render_v1, render_v2
from serinus_serving.drift.feedback import FeedbackStore
from serinus_serving.drift.metrics import DriftCollector
from serinus_serving.drift.monitor import DriftMonitor
from serinus_serving.drift.profile import Profile, ProfileError
from serinus_serving.drift.serving import add_feedback_routes, build_drift, prefetch_profile
from serinus_serving.errors import (
    InferenceError,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
)
from serinus_serving.metrics import ModelLabels, ServingMetrics
from serinus_serving.openapi_infer import infer_paths
from serinus_serving.runtime.base import Array, ModelRuntime, ModelState, TensorSpec
from serinus_serving.settings import ServeSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Models whose warm-up inference is faster than this run on the event loop: a hop to a
#: worker thread costs more than they do. Slower ones run in a thread so the server stays
#: responsive (health checks, metrics) while they compute.
INLINE_THRESHOLD_SECONDS = 0.002
_JSON = [(b"content-type", b"application/json")]
_ALLOW_POST = [*_JSON, (b"allow", b"POST")]
_HEADER_LENGTH = HEADER_LENGTH.encode()


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def match_infer(path: str) -> tuple[str, str, str | None] | None:
    """``(protocol, model, version)`` for an inference path, else None."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[11:-6].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2", parts[0], None
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return "v2", parts[0], parts[2]
        return None
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        model = path[11:-8]
        if model and "/" not in model:
            return "v1", model, None
    return None


async def read_body(receive: Receive, limit: int, content_length: bytes | None = None) -> bytes:
    """Read the whole request body, refusing (413) as soon as it exceeds ``limit``."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InferenceError("client disconnected before sending the whole body", 400)
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise InferenceError("Inference-Header-Content-Length must be a non-negative integer")
    return int(raw)


class ServingApp:
    """One model behind the Open Inference Protocol v2 and KServe v1."""

    def __init__(self, settings: ServeSettings, runtime: ModelRuntime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics = ServingMetrics(
            ModelLabels(settings.name, settings.version, settings.effective_revision)
        )
        self.metrics.ready = lambda: self.ready
        self.draining = False
        self.inline = True
        self.batcher: AdaptiveBatcher | None = None
        self.drift_monitor: DriftMonitor | None = None
        self._batches_recorded = False
        self.feedback: FeedbackStore | None = None
        self._specs: dict[str, TensorSpec] = {}
        self._load_task: asyncio.Task[None] | None = None
        self.fastapi = self._build_fastapi()

    # ----------------------------------------------------------------- lifecycle
    @property
    def ready(self) -> bool:
        return self.runtime.ready and not self.draining

    def begin_drain(self) -> None:
        """Stop reporting ready but keep serving, so endpoints drop us before we stop."""
        if not self.draining:
            log.info("draining: readiness is now false; still serving in-flight traffic")
        self.draining = True

    async def load(self) -> None:
        profile = await prefetch_profile(self.settings.drift, model_dir=self.settings.model_dir)
        await self.runtime.load()
        runtime = self.runtime
        if runtime.ready:  # no await since the runtime turned ready: readiness never flips
            self._attach_drift(profile)
        if runtime.ready:
            self._specs = {spec.name: spec for spec in runtime.inputs}
            self.inline = runtime.warmup_seconds < INLINE_THRESHOLD_SECONDS
            if self.settings.max_batch_size > 0:
                if runtime.batchable:
                    self.batcher = AdaptiveBatcher(
                        self._batch_runner(),
                        max_batch_size=self.settings.max_batch_size,
                        max_latency=self.settings.max_batch_latency_ms / 1000,
                        inline=self.inline,
                        observe=self.metrics.observe_inference,
                    )
                else:
                    log.warning(
                        "adaptive batching is off: the model's inputs and outputs do not all "
                        "have a dynamic first (batch) dimension"
                    )
        # Everything alive now (FastAPI, pydantic, ONNX Runtime bindings: ~65k objects)
        # lives as long as the process. Freezing it keeps full collections, which stop the
        # event loop, from rescanning it (one took ~65 ms on the development machine).
        gc.collect()
        gc.freeze()
        self.metrics.model_loaded(
            seconds=getattr(runtime, "load_seconds", 0.0),
            sha256=runtime.sha256,
            platform=runtime.platform,
        )

    def _batch_runner(self) -> RunFn:
        """The batcher's runtime call. With drift on and the model run on the event loop, it
        records each merged batch into the drift window once, rather than each request."""
        monitor, predict = self.drift_monitor, self.runtime.predict
        if monitor is None or not self.inline:
            return predict

        def run_and_record(inputs: dict[str, Array]) -> dict[str, Array]:
            outputs = predict(inputs)
            monitor.record(inputs, outputs, next(iter(inputs.values())).shape[0])
            return outputs

        self._batches_recorded = True
        return run_and_record

    def _attach_drift(self, profile: Profile | ProfileError | None) -> None:
        try:
            parts = build_drift(self.settings.drift, self.runtime, profile)
        except ProfileError as exc:
            self.runtime.state = ModelState.FAILED
            self.runtime.reason = f"drift profile: {exc}"
            log.error("model unready: %s", self.runtime.reason)
            return
        self.drift_monitor, self.feedback = parts.monitor, parts.feedback
        if parts.monitor is not None or parts.feedback is not None:
            collector = DriftCollector(
                self.metrics.labels, monitor=parts.monitor, feedback=parts.feedback
            )
            self.metrics.registry.register(collector)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self._load_task = asyncio.create_task(self.load())
        try:
            yield
        finally:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
            if self.batcher is not None:
                await self.batcher.close()
            await self.runtime.unload()

    # ----------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = match_infer(scope["path"])
            if route is not None:
                if scope["method"] == "POST":
                    await self._serve_infer(route, scope, receive, send)
                else:
                    await _send(send, 405, error_body("Method Not Allowed: use POST"), _ALLOW_POST)
                return
        await self.fastapi(scope, receive, send)

    async def _serve_infer(
        self, route: tuple[str, str, str | None], scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        protocol, model, version = route
        metrics = self.metrics
        metrics.inflight += 1
        headers = _JSON
        try:
            body, extra = await self._infer(protocol, model, version, scope, receive)
            status = 200
            if extra is not None:
                headers = [
                    (b"content-type", b"application/octet-stream"),
                    (HEADER_LENGTH.encode(), str(extra).encode()),
                ]
        except InferenceError as exc:
            status, body = exc.status, error_body(exc.message)
        except Exception:
            log.exception("inference failed on %s", scope["path"])
            status, body = 500, error_body("internal error while running the model; see logs")
        finally:
            metrics.inflight -= 1
        await _send(send, status, body, headers)
        metrics.observe_request(protocol, status, time.perf_counter() - started)

    def _check_target(self, model: str, version: str | None) -> None:
        if model != self.settings.name:
            raise ModelNotFound(
                f"unknown model {model!r}; this server serves {self.settings.name!r}"
            )
        if version is not None and version != self.settings.version:
            raise ModelNotFound(
                f"model {model!r} has no version {version!r}; it serves version "
                f"{self.settings.version!r}"
            )
        if not self.runtime.ready:
            raise ModelNotReady(
                f"model {model!r} is {self.runtime.state.value}: {self.runtime.reason}"
            )

    async def _infer(
        self, protocol: str, model: str, version: str | None, scope: Scope, receive: Receive
    ) -> tuple[bytes, int | None]:
        self._check_target(model, version)
        content_length = header_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
            elif key == _HEADER_LENGTH:
                header_length = value
        limit = self.settings.max_request_rows
        batcher = self.batcher
        if batcher is not None:
            batcher.arriving += 1  # tells the batcher that company is on its way
        try:
            body = await read_body(receive, self.settings.max_body_bytes, content_length)
            if protocol == "v1":
                inputs, rows = parse_v1(body, self._specs, max_rows=limit)
            else:
                request = parse_v2(
                    body,
                    self._specs,
                    self.runtime.outputs,
                    max_rows=limit,
                    header_length=_header_length(header_length),
                )
        finally:
            if batcher is not None:
                batcher.arriving -= 1
        if protocol == "v1":
            return render_v1(await self._predict(inputs, rows, None)), None
        outputs = await self._predict(request.inputs, request.rows, request.outputs, request.id)
        return render_v2(
            outputs,
            model_name=self.settings.name,
            model_version=self.settings.version,
            request_id=request.id,
            binary_outputs=request.binary_outputs,
        )

    async def _predict(
        self,
        inputs: dict[str, Array],
        rows: int,
        names: Sequence[str] | None,
        request_id: str | None = None,
    ) -> dict[str, Array]:
        if self.batcher is not None:
            outputs = await self.batcher.submit(inputs, rows)
            self._observe(inputs, outputs, rows, request_id, record=not self._batches_recorded)
            return outputs if not names else {n: outputs[n] for n in names}
        started = time.perf_counter()
        if self.inline:
            outputs = self.runtime.predict(inputs, names)
        else:
            outputs = await asyncio.to_thread(self.runtime.predict, inputs, names)
        self.metrics.observe_inference(rows, time.perf_counter() - started)
        self._observe(inputs, outputs, rows, request_id)
        return outputs

    def _observe(
        self,
        inputs: dict[str, Array],
        outputs: dict[str, Array],
        rows: int,
        request_id: str | None,
        *,
        record: bool = True,
    ) -> None:
        """Drift window and feedback ids: appends only; the statistics run at scrape time."""
        if record and self.drift_monitor is not None:
            self.drift_monitor.record(inputs, outputs, rows)
        if request_id is not None and self.feedback is not None:
            self.feedback.remember(request_id, outputs)

    # ----------------------------------------------------------------- FastAPI part
    def _build_fastapi(self) -> FastAPI:
        app = FastAPI(
            title="Serinus model server",
            version=__version__,
            description="Open Inference Protocol v2 and KServe v1 for one ONNX model.",
            lifespan=self.lifespan,
        )
        _install_error_handlers(app)
        self._add_health_routes(app)
        self._add_metadata_routes(app)
        add_feedback_routes(
            app,
            check_target=self._check_target,
            store=lambda: self.feedback,
            max_body_bytes=self.settings.max_body_bytes,
        )

        @app.get("/metrics", tags=["observability"], include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        default_openapi = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                schema = default_openapi()
                schema["paths"].update(infer_paths())
                app.openapi_schema = schema
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        return app

    def _readiness(self, model: str | None = None, version: str | None = None) -> Response:
        if model is not None:
            try:
                self._check_target(model, version)
            except ModelNotFound as exc:
                return _json_response({"error": exc.message}, 404)
            except ModelNotReady as exc:
                return _json_response({"error": exc.message}, 400)
        if self.ready:
            return Response(status_code=200)
        reason = (
            "draining" if self.draining else f"{self.runtime.state.value}: {self.runtime.reason}"
        )
        return _json_response({"error": f"not ready ({reason})"}, 400)

    def _add_health_routes(self, app: FastAPI) -> None:
        @app.get("/v2/health/live", tags=["health"])
        async def live() -> Response:
            """200 while the process serves HTTP."""
            return Response(status_code=200)

        @app.get("/v2/health/ready", tags=["health"])
        async def ready() -> Response:
            """200 once the model is loaded and warmed up; 400 while loading, failed or draining."""
            return self._readiness()

        @app.get("/v2/models/{model_name}/ready", tags=["health"])
        async def model_ready(model_name: str) -> Response:
            return self._readiness(model_name)

        @app.get("/v2/models/{model_name}/versions/{model_version}/ready", tags=["health"])
        async def model_version_ready(model_name: str, model_version: str) -> Response:
            return self._readiness(model_name, model_version)

    def _metadata(self, model: str, version: str | None) -> Response:
        try:
            self._check_target(model, version)
        except ModelNotFound as exc:
            return _json_response({"error": exc.message}, 404)
        except ModelNotReady as exc:
            return _json_response(
                {
                    "error": exc.message,
                    "name": self.settings.name,
                    "versions": [self.settings.version],
                    "platform": self.runtime.platform,
                    "state": self.runtime.state.value,
                    "reason": self.runtime.reason,
                },
                503,
            )
        return _json_response(
            {
                "name": self.settings.name,
                "versions": [self.settings.version],
                "platform": self.runtime.platform,
                "inputs": [spec.as_metadata() for spec in self.runtime.inputs],
                "outputs": [spec.as_metadata() for spec in self.runtime.outputs],
                "parameters": {
                    "revision": self.settings.effective_revision,
                    "sha256": self.runtime.sha256,
                    "state": self.runtime.state.value,
                },
            },
            200,
        )

    def _add_metadata_routes(self, app: FastAPI) -> None:
        @app.get("/v2", tags=["metadata"])
        async def server_metadata() -> Response:
            return _json_response(
                {"name": "serinus", "version": __version__, "extensions": ["binary_tensor_data"]},
                200,
            )

        @app.get("/v2/models/{model_name}", tags=["metadata"])
        async def model_metadata(model_name: str) -> Response:
            return self._metadata(model_name, None)

        @app.get("/v2/models/{model_name}/versions/{model_version}", tags=["metadata"])
        async def model_version_metadata(model_name: str, model_version: str) -> Response:
            return self._metadata(model_name, model_version)

        @app.get("/v1/models/{model_name}", tags=["metadata"])
        async def v1_model(model_name: str) -> Response:
            if model_name != self.settings.name:
                return _json_response({"error": f"unknown model {model_name!r}"}, 404)
            return _json_response({"name": model_name, "ready": self.ready}, 200)


def _json_response(content: object, status: int) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _json_response({"error": str(exc.detail)}, exc.status_code)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _json_response({"error": f"invalid request: {exc.errors()}"}, 400)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(settings: ServeSettings, runtime: ModelRuntime) -> ServingApp:
    return ServingApp(settings, runtime)

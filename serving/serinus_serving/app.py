"""The model server's request handler: endpoints that are shells over the DataPlane.

The server (``http1``, shared with the router) hands over whole requests. Inference
(``/v2/models/{m}[/versions/{v}]/infer``, ``/v1/models/{m}:predict``), liveness, readiness
and ``/metrics`` are answered here directly: FastAPI's routing and response machinery cost
more than a small model's inference. Everything else (metadata, feedback, the OpenAPI
document) goes to a FastAPI app (routes.py), which also documents the direct endpoints.
Either way the work is the DataPlane's (dataplane.py), which owns the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serinus_serving.asgi import Receive, Scope, Send, asgi_entry, call_asgi, error_body
from serinus_serving.codec import HEADER_LENGTH, InferRequest, decode_v2, parse_v2, render_v2
from serinus_serving.codec_v1 import parse_v1, render_v1
from serinus_serving.dataplane import DataPlane
from serinus_serving.errors import InferenceError
from serinus_serving.fastcodec import V2Renderer
from serinus_serving.http1 import Request, Response, http_date
from serinus_serving.routes import build_fastapi, readiness
from serinus_serving.runtime.base import Array, ModelRuntime
from serinus_serving.settings import ServeSettings
from serinus_serving.tensors import load_json

__all__ = ["ServingApp", "create_app", "match_infer"]

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")
_BINARY = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
_METRICS_TYPE = (b"content-type", CONTENT_TYPE_LATEST.encode())
_GET = frozenset({b"GET", b"HEAD"})


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


def _header_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise InferenceError("Inference-Header-Content-Length must be a non-negative integer")
    return int(raw)


class ServingApp:
    """One model behind the Open Inference Protocol v2 and KServe v1.

    ``handle`` serves a whole request (what ``http1.HttpServer`` calls); the instance is
    also an ASGI app over the same ``handle`` (what in-process tests call)."""

    def __init__(self, settings: ServeSettings, runtime: ModelRuntime) -> None:
        self.dataplane = DataPlane(settings, runtime)
        self.settings = settings
        self.runtime = runtime
        self.metrics = self.dataplane.metrics
        self._load_task: asyncio.Task[None] | None = None
        self.fastapi = build_fastapi(self.dataplane, self.lifespan)
        self._asgi = asgi_entry(
            self.handle, max_body=settings.max_body_bytes, lifespan=self.fastapi
        )
        self._access = logging.getLogger("serinus.access")
        #: The model's own OIP v2 inference path and its route, matched without parsing.
        self._v2_path = f"/v2/models/{settings.name}/infer"
        self._v2_route = match_infer(self._v2_path)
        self._render_v2 = V2Renderer(model_name=settings.name, model_version=settings.version)

    # ----------------------------------------------------------------- lifecycle
    @property
    def ready(self) -> bool:
        return self.dataplane.ready

    def begin_drain(self) -> None:
        """Stop reporting ready but keep serving, so endpoints drop us before we stop."""
        self.dataplane.begin_drain()

    async def load(self) -> None:
        await self.dataplane.load()

    async def startup(self) -> None:
        """Begin loading the model in the background: the server answers (unready) meanwhile."""
        self._load_task = asyncio.create_task(self.dataplane.load())

    async def shutdown(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
        await self.dataplane.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    # ----------------------------------------------------------------- requests
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        path = request.path
        route = self._v2_route if path == self._v2_path else match_infer(path)
        if route is not None:
            if request.method == b"POST":
                return await self._serve_infer(route, request)
            body = error_body("Method Not Allowed: use POST")
            return Response(405, [_JSON, (b"allow", b"POST"), (b"date", http_date())], body)
        if request.method in _GET:
            if path == "/v2/health/ready":
                status, body = readiness(self.dataplane)
                return Response(status, [_JSON, (b"date", http_date())] if body else [], body)
            if path == "/v2/health/live":
                return Response(200, [(b"date", http_date())])
            if path == "/metrics":
                body = generate_latest(self.metrics.registry)
                return Response(200, [_METRICS_TYPE, (b"date", http_date())], body)
        return await call_asgi(self.fastapi, request)

    async def _serve_infer(self, route: tuple[str, str, str | None], request: Request) -> Response:
        started = time.perf_counter()
        protocol = route[0]
        metrics = self.metrics
        metrics.inflight += 1
        headers = [_JSON, (b"date", http_date())]
        try:
            decoded = self._checked(route, request)
            outputs = await self.dataplane.infer(decoded)
            body, extra = self._encode(decoded, outputs, protocol=protocol)
            status = 200
            if extra is not None:
                headers = [_BINARY, (_HEADER_LENGTH, b"%d" % extra), (b"date", http_date())]
        except InferenceError as exc:
            status, body = exc.status, error_body(exc.message)
        except Exception:
            log.exception("inference failed on %s", request.path)
            status, body = 500, error_body("internal error while running the model; see logs")
        finally:
            metrics.inflight -= 1

        def after() -> None:
            seconds = time.perf_counter() - started
            metrics.observe_request(protocol, status, seconds)
            if self.settings.access_log:
                self._access.info("%s %s %d %.1fms", request.method.decode(),
                                  request.path, status, seconds * 1000)  # fmt: skip

        return Response(status, headers, body, after)

    def _checked(self, route: tuple[str, str, str | None], request: Request) -> InferRequest:
        """Check the target, then decode the body."""
        protocol, model, version = route
        self.dataplane.check_target(model, version)
        header_length = None
        for key, value in request.headers:
            if key == _HEADER_LENGTH:
                header_length = value
        return self._decode(protocol, request.body, header_length)

    def _encode(
        self, decoded: InferRequest, outputs: Mapping[str, Array], *, protocol: str
    ) -> tuple[bytes, int | None]:
        """The response body and, for binary outputs, the length of its JSON header."""
        if protocol == "v1":
            return render_v1(outputs), None
        if not decoded.binary_outputs:
            return self._render_v2.render(outputs, decoded.id), None
        return render_v2(
            outputs,
            model_name=self.settings.name,
            model_version=self.settings.version,
            request_id=decoded.id,
            binary_outputs=decoded.binary_outputs,
        )

    def _decode(self, protocol: str, body: bytes, header_length: bytes | None) -> InferRequest:
        specs, limit = self.dataplane.input_specs, self.settings.max_request_rows
        if protocol == "v1":
            inputs, rows = parse_v1(body, specs, max_rows=limit)
            return InferRequest(inputs=inputs, rows=rows)
        fast = self.dataplane.fast_v2
        if fast is not None and header_length is None:
            payload = load_json(body)
            return fast.decode(payload) or decode_v2(
                payload, b"", specs=specs, outputs=self.runtime.outputs, max_rows=limit
            )
        return parse_v2(
            body,
            specs,
            self.runtime.outputs,
            max_rows=limit,
            header_length=_header_length(header_length),
        )


def create_app(settings: ServeSettings, runtime: ModelRuntime) -> ServingApp:
    return ServingApp(settings, runtime)

"""The model server's ASGI application: endpoints that are shells over the DataPlane.

Inference (``/v2/models/{m}[/versions/{v}]/infer`` and ``/v1/models/{m}:predict``) runs on a
raw ASGI fast path: FastAPI's routing and response machinery cost more than a small model's
inference. Everything else (health, metadata, metrics, feedback, OpenAPI docs) is a FastAPI
app (routes.py). Either reads and decodes the request, calls the DataPlane (dataplane.py),
which owns the model, and encodes its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from serinus_serving.asgi import (
    ALLOW_POST,
    HEADER_LENGTH_KEY,
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    error_body,
    header_length_value,
    match_infer,
    read_body,
    send_response,
)
from serinus_serving.codec import InferRequest, parse_v2, render_v2
from serinus_serving.codec_v1 import parse_v1, render_v1
from serinus_serving.dataplane import DataPlane
from serinus_serving.errors import InferenceError
from serinus_serving.routes import build_fastapi
from serinus_serving.runtime.base import ModelRuntime
from serinus_serving.settings import ServeSettings

__all__ = ["ServingApp", "create_app", "match_infer"]

log = logging.getLogger(__name__)


class ServingApp:
    """One model behind the Open Inference Protocol v2 and KServe v1: the ASGI entry point."""

    def __init__(self, settings: ServeSettings, runtime: ModelRuntime) -> None:
        self.dataplane = DataPlane(settings, runtime)
        self.settings = settings
        self.runtime = runtime
        self.metrics = self.dataplane.metrics
        self._load_task: asyncio.Task[None] | None = None
        self.fastapi = build_fastapi(self.dataplane, self.lifespan)

    # ----------------------------------------------------------------- lifecycle
    @property
    def ready(self) -> bool:
        return self.dataplane.ready

    def begin_drain(self) -> None:
        """Stop reporting ready but keep serving, so endpoints drop us before we stop."""
        self.dataplane.begin_drain()

    async def load(self) -> None:
        await self.dataplane.load()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self._load_task = asyncio.create_task(self.dataplane.load())
        try:
            yield
        finally:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
            await self.dataplane.close()

    # ----------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = match_infer(scope["path"])
            if route is not None:
                if scope["method"] == "POST":
                    await self._serve_infer(route, scope, receive, send)
                else:
                    await send_response(
                        send, 405, error_body("Method Not Allowed: use POST"), ALLOW_POST
                    )
                return
        await self.fastapi(scope, receive, send)

    async def _serve_infer(
        self, route: tuple[str, str, str | None], scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        protocol, model, version = route
        metrics = self.metrics
        metrics.inflight += 1
        headers = JSON_HEADERS
        try:
            body, extra = await self._infer(protocol, model, version, scope, receive)
            status = 200
            if extra is not None:
                headers = [
                    (b"content-type", b"application/octet-stream"),
                    (HEADER_LENGTH_KEY, str(extra).encode()),
                ]
        except InferenceError as exc:
            status, body = exc.status, error_body(exc.message)
        except Exception:
            log.exception("inference failed on %s", scope["path"])
            status, body = 500, error_body("internal error while running the model; see logs")
        finally:
            metrics.inflight -= 1
        await send_response(send, status, body, headers)
        metrics.observe_request(protocol, status, time.perf_counter() - started)

    async def _infer(
        self, protocol: str, model: str, version: str | None, scope: Scope, receive: Receive
    ) -> tuple[bytes, int | None]:
        """Check the target, read and decode the body, infer, encode the response."""
        plane = self.dataplane
        plane.check_target(model, version)
        content_length = header_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
            elif key == HEADER_LENGTH_KEY:
                header_length = value
        with plane.receiving():
            body = await read_body(receive, self.settings.max_body_bytes, content_length)
            request = self._decode(protocol, body, header_length)
        outputs = await plane.infer(request)
        if protocol == "v1":
            return render_v1(outputs), None
        return render_v2(
            outputs,
            model_name=self.settings.name,
            model_version=self.settings.version,
            request_id=request.id,
            binary_outputs=request.binary_outputs,
        )

    def _decode(self, protocol: str, body: bytes, header_length: bytes | None) -> InferRequest:
        specs, limit = self.dataplane.input_specs, self.settings.max_request_rows
        if protocol == "v1":
            inputs, rows = parse_v1(body, specs, max_rows=limit)
            return InferRequest(inputs=inputs, rows=rows)
        return parse_v2(
            body,
            specs,
            self.runtime.outputs,
            max_rows=limit,
            header_length=header_length_value(header_length),
        )


def create_app(settings: ServeSettings, runtime: ModelRuntime) -> ServingApp:
    return ServingApp(settings, runtime)

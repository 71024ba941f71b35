"""The FastAPI part of the model server: health, metadata, metrics, feedback and the
OpenAPI document. Each route is a shell over the DataPlane: it calls one method and turns
the answer, or the error, into JSON."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from serinus_serving import __version__
from serinus_serving.dataplane import DataPlane
from serinus_serving.drift.serving import add_feedback_routes
from serinus_serving.errors import ModelNotFound, ModelNotReady
from serinus_serving.openapi_infer import infer_paths

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_fastapi(plane: DataPlane, lifespan: Lifespan) -> FastAPI:
    app = FastAPI(
        title="Serinus model server",
        version=__version__,
        description="Open Inference Protocol v2 and KServe v1 for one ONNX model.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _add_health_routes(app, plane)
    _add_metadata_routes(app, plane)
    add_feedback_routes(
        app,
        check_target=plane.check_target,
        store=lambda: plane.feedback,
        max_body_bytes=plane.settings.max_body_bytes,
    )

    @app.get("/metrics", tags=["observability"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schema["paths"].update(infer_paths())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def json_response(content: object, status: int) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def readiness(
    plane: DataPlane, model: str | None = None, version: str | None = None
) -> tuple[int, bytes]:
    """``(status, JSON body or b"")`` of a readiness probe: 200 when ready, 404 for another
    model, else 400 with why (the Open Inference Protocol's codes)."""
    if model is not None:
        try:
            plane.check_target(model, version)
        except ModelNotFound as exc:
            return 404, orjson.dumps({"error": exc.message})
        except ModelNotReady as exc:
            return 400, orjson.dumps({"error": exc.message})
    reason = plane.unready_reason()
    if reason is None:
        return 200, b""
    return 400, orjson.dumps({"error": f"not ready ({reason})"})


def _readiness(plane: DataPlane, model: str | None = None, version: str | None = None) -> Response:
    status, body = readiness(plane, model, version)
    if not body:
        return Response(status_code=status)
    return Response(body, status_code=status, media_type="application/json")


def _add_health_routes(app: FastAPI, plane: DataPlane) -> None:
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        """200 while the process serves HTTP (answered by the server itself; documented here)."""
        return Response(status_code=200)

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> Response:
        """200 once the model is loaded and warmed up; 400 while loading, failed or draining
        (answered by the server itself; documented here)."""
        return _readiness(plane)

    @app.get("/v2/models/{model_name}/ready", tags=["health"])
    async def model_ready(model_name: str) -> Response:
        return _readiness(plane, model_name)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready", tags=["health"])
    async def model_version_ready(model_name: str, model_version: str) -> Response:
        return _readiness(plane, model_name, model_version)


def _metadata(plane: DataPlane, model: str, version: str | None) -> Response:
    try:
        return json_response(plane.model_metadata(model, version), 200)
    except ModelNotFound as exc:
        return json_response({"error": exc.message}, 404)
    except ModelNotReady as exc:
        return json_response({"error": exc.message, **plane.model_state()}, 503)


def _add_metadata_routes(app: FastAPI, plane: DataPlane) -> None:
    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return json_response(plane.server_metadata(), 200)

    @app.get("/v2/models/{model_name}", tags=["metadata"])
    async def model_metadata(model_name: str) -> Response:
        return _metadata(plane, model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}", tags=["metadata"])
    async def model_version_metadata(model_name: str, model_version: str) -> Response:
        return _metadata(plane, model_name, model_version)

    @app.get("/v1/models/{model_name}", tags=["metadata"])
    async def v1_model(model_name: str) -> Response:
        if model_name != plane.settings.name:
            return json_response({"error": f"unknown model {model_name!r}"}, 404)
        return json_response({"name": model_name, "ready": plane.ready}, 200)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return json_response({"error": str(exc.detail)}, exc.status_code)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return json_response({"error": f"invalid request: {exc.errors()}"}, 400)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

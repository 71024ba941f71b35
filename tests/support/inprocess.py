"""The serving app in-process (starlette's TestClient runs its lifespan), no sockets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from starlette.testclient import TestClient

from serinus_serving.app import ServingApp, create_app
from serinus_serving.runtime.onnx import OnnxRuntime
from serinus_serving.settings import ServeSettings


def make_app(model: Path | str, **overrides: object) -> ServingApp:
    settings = ServeSettings(model_uri=str(model), name="m", version="1", **overrides)  # type: ignore[arg-type]
    runtime = OnnxRuntime(settings.model_uri, sha256=settings.sha256)
    return create_app(settings, runtime)


@contextlib.contextmanager
def running(app: ServingApp, *, wait_ready: bool = True) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while wait_ready and not app.runtime.ready and time.monotonic() < deadline:
            if app.runtime.state.value == "FAILED":
                break
            time.sleep(0.01)
        while app.runtime.state.value == "LOADING" and time.monotonic() < deadline:
            time.sleep(0.01)
        yield client

"""Run the model server under uvicorn, with a Kubernetes-friendly shutdown.

SIGTERM first turns readiness off and keeps serving for ``drain_seconds`` (endpoints and
load balancers need a moment to stop sending), then stops accepting connections and lets
in-flight requests finish within ``shutdown_timeout``. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn

from serinus_serving.app import ServingApp, create_app
from serinus_serving.runtime.onnx import OnnxRuntime
from serinus_serving.settings import ServeSettings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: ServingApp, drain_seconds: float) -> None:
        super().__init__(config)
        self.serving_app = app
        self.drain_seconds = drain_seconds
        self._drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_deadline is None and self.drain_seconds > 0:
            self._drain_deadline = time.monotonic() + self.drain_seconds
            self.serving_app.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self.serving_app.begin_drain()
        await super().shutdown(sockets)  # type: ignore[arg-type]
        # We own the process: exit 0 after a graceful stop instead of re-raising the signal.
        self._captured_signals.clear()


def build_runtime(settings: ServeSettings) -> OnnxRuntime:
    return OnnxRuntime(
        settings.model_uri,
        sha256=settings.sha256,
        model_dir=settings.model_dir,
        max_model_bytes=settings.max_model_bytes,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )


def run(settings: ServeSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    app = create_app(settings, build_runtime(settings))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        log_config=None,
    )
    DrainingServer(config, app, settings.drain_seconds).run()

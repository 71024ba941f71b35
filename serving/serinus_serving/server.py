"""Run the model server on the HTTP/1.1 layer it shares with the router.

The server answers (unready) at once while the model loads in the background. Shutdown is
``graceful.serve_until_signalled``'s: readiness off and ``connection: close`` on SIGTERM,
``drain_seconds`` more serving, then in-flight requests finish within
``shutdown_timeout``; a second signal stops at once. The process exits 0 after a graceful
stop.
"""

from __future__ import annotations

import logging

import uvloop

from serinus_serving.app import ServingApp, create_app
from serinus_serving.graceful import Shutdown, serve_until_signalled
from serinus_serving.http1 import HttpServer
from serinus_serving.runtime.onnx import OnnxRuntime
from serinus_serving.settings import ServeSettings
from serinus_serving.sources.base import quiet_client_logs

log = logging.getLogger(__name__)


def build_runtime(settings: ServeSettings) -> OnnxRuntime:
    return OnnxRuntime(
        settings.model_uri,
        sha256=settings.sha256,
        model_dir=settings.model_dir,
        max_model_bytes=settings.max_model_bytes,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        prefetched=settings.prefetched,
    )


def http_server(app: ServingApp) -> HttpServer:
    """The server for ``app``, with the limits its settings give; the batcher learns from
    it which requests are still arriving."""
    settings = app.settings
    server = HttpServer(
        app.handle,
        max_body=settings.max_body_bytes,
        max_head=settings.max_header_bytes,
        max_buffered=settings.max_buffered_bytes,
        read_timeout=settings.read_timeout,
        keep_alive_timeout=settings.keep_alive_timeout,
    )
    app.dataplane.arriving_elsewhere = lambda: server.arriving + server.starting
    return server


async def serve(app: ServingApp) -> None:
    settings = app.settings
    server = http_server(app)
    await app.startup()
    try:
        await serve_until_signalled(
            server,
            settings.host,
            settings.port,
            name="serinus serve",
            shutdown=Shutdown(
                drain_seconds=settings.drain_seconds, shutdown_timeout=settings.shutdown_timeout
            ),
            begin_drain=app.begin_drain,
        )
    finally:
        await app.shutdown()
    log.info("stopped")


def run(settings: ServeSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    quiet_client_logs()
    uvloop.run(serve(create_app(settings, build_runtime(settings))))

"""Run ``serinus router``: the routing-table source, the app and its HTTP/1.1 server.

Shutdown is ``graceful.serve_until_signalled``'s (the same as the model server's); then
shadow copies get a few seconds, and the process exits 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvloop

from serinus_serving.graceful import Shutdown, serve_until_signalled
from serinus_serving.http1 import HttpServer
from serinus_serving.router.app import RouterApp
from serinus_serving.router.kube_source import (
    ConfigMapSource,
    KubeConfig,
    KubeConfigError,
    parse_target,
)
from serinus_serving.router.prediction_settings import (
    PredictionLogSettings,
    SettingsError,
    open_log,
)
from serinus_serving.router.recorder import Recorder
from serinus_serving.router.shadow_channel import ShadowChannel
from serinus_serving.router.sources import FileSource

log = logging.getLogger(__name__)


def build(
    routes: str,
    *,
    log_level: str = "warning",
    predictions: PredictionLogSettings | None = None,
) -> RouterApp:
    settings = predictions or PredictionLogSettings()
    try:
        store = open_log(settings)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from exc
    app = RouterApp(
        shadows=ShadowChannel(log_level=log_level),
        recorder=Recorder(store) if store is not None else None,
        request_id_header=settings.request_id_header,
    )
    source: FileSource | ConfigMapSource
    if routes.startswith("configmap:"):
        try:
            namespace, name = parse_target(routes.removeprefix("configmap:"))
            config = KubeConfig.from_env()
        except KubeConfigError as exc:
            raise SystemExit(str(exc)) from exc
        source = ConfigMapSource(namespace, name, app.apply, rejected=app.rejected, config=config)
    else:
        source = FileSource(Path(routes), app.apply, rejected=app.rejected)
    app.on_startup.append(source.start)
    app.on_shutdown.append(source.stop)
    return app


async def serve(app: RouterApp, *, host: str, port: int, shutdown: Shutdown) -> None:
    """Serve ``app`` until a signal, then shut down gracefully (see the module doc)."""
    server = HttpServer(app.handle, max_body=app.max_body_bytes)

    def begin_drain() -> None:
        app.draining = True

    await app.startup()
    try:
        forced = await serve_until_signalled(
            server,
            host,
            port,
            name="serinus router",
            shutdown=shutdown,
            begin_drain=begin_drain,
            on_force=app.shadows.kill,
        )
    except BaseException:
        await app.shutdown(grace=0)
        raise
    await app.shutdown(grace=0 if forced else 5.0)
    log.info("stopped")


def run(
    routes: str,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    drain_seconds: float = 0.0,
    shutdown_timeout: float = 30.0,
    predictions: PredictionLogSettings | None = None,
) -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = build(routes, log_level=log_level, predictions=predictions)
    shutdown = Shutdown(drain_seconds=drain_seconds, shutdown_timeout=shutdown_timeout)
    uvloop.run(serve(app, host=host, port=port, shutdown=shutdown))

"""Run ``serinus router``: the routing-table source, the app and its HTTP/1.1 server.

Shutdown, on SIGTERM or SIGINT: readiness turns false at once; after ``drain_seconds``
(SIGTERM only; endpoints and load balancers need a moment to stop sending) the server stops
accepting, closes idle connections, lets in-flight requests finish within
``shutdown_timeout``, gives shadow copies a few seconds, and the process exits 0. A second
signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import uvloop

from serinus_serving.router.app import RouterApp
from serinus_serving.http1 import HttpServer
from serinus_serving.router.kube_source import (
    ConfigMapSource,
    KubeConfig,
    KubeConfigError,
    parse_target,
)
from serinus_serving.router.shadow_channel import ShadowChannel
from serinus_serving.router.sources import FileSource

log = logging.getLogger(__name__)


def build(routes: str, *, log_level: str = "warning") -> RouterApp:
    app = RouterApp(shadows=ShadowChannel(log_level=log_level))
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


async def serve(
    app: RouterApp,
    *,
    host: str,
    port: int,
    drain_seconds: float = 0.0,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve ``app`` until a signal, then shut down gracefully (see the module doc)."""
    loop = asyncio.get_running_loop()
    server = HttpServer(app.handle, max_body=app.max_body_bytes)
    stop = asyncio.Event()
    forced = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal forced
        if app.draining:
            log.warning("%s again: stopping now", sig.name)
            forced = True
            server.abort()
            app.shadows.kill()
            stop.set()
            return
        app.draining = True
        if sig == signal.SIGTERM and drain_seconds > 0:
            log.info("%s: not ready; serving %gs more before shutting down", sig.name,
                     drain_seconds)  # fmt: skip
            loop.call_later(drain_seconds, stop.set)
        else:
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await app.startup()
    try:
        await server.start(host, port)
    except OSError as exc:
        await app.shutdown(grace=0)
        raise SystemExit(f"serinus router cannot listen on {host}:{port}: {exc}") from None
    log.info("serinus router listening on http://%s:%d", host, server.port)
    await stop.wait()
    log.info("shutting down: no new connections; finishing %d open", len(server.connections))
    await server.shutdown(within=0 if forced else shutdown_timeout)
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
) -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = build(routes, log_level=log_level)
    uvloop.run(
        serve(
            app,
            host=host,
            port=port,
            drain_seconds=drain_seconds,
            shutdown_timeout=shutdown_timeout,
        )
    )

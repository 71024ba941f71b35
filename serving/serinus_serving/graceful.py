"""Signals and shutdown, the same for ``serinus serve`` and ``serinus router``.

On the first SIGTERM or SIGINT, readiness turns false at once (``begin_drain``) and every
response from then on carries ``connection: close``, so keep-alive clients reconnect and
land elsewhere. After ``drain_seconds`` (SIGTERM only: endpoints and load balancers need a
moment to stop sending) the server stops accepting, closes idle connections and lets
requests in flight, or still arriving, finish within ``shutdown_timeout``. A second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from serinus_serving.http1 import HttpServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shutdown:
    """How a server stops (the module doc)."""

    drain_seconds: float = 0.0
    shutdown_timeout: float = 30.0


async def serve_until_signalled(
    server: HttpServer,
    host: str,
    port: int,
    *,
    name: str,
    shutdown: Shutdown,
    begin_drain: Callable[[], None],
    on_force: Callable[[], None] = lambda: None,
) -> bool:
    """Serve until a signal, then shut down (the module doc). True when a second signal
    forced the stop; raises ``SystemExit`` when the address cannot be bound."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced = False
    draining = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal forced, draining
        if draining:
            log.warning("%s again: stopping now", sig.name)
            forced = True
            server.abort()
            on_force()
            stop.set()
            return
        draining = True
        begin_drain()
        server.drain()
        if sig == signal.SIGTERM and shutdown.drain_seconds > 0:
            log.info("%s: not ready; serving %gs more before shutting down", sig.name,
                     shutdown.drain_seconds)  # fmt: skip
            loop.call_later(shutdown.drain_seconds, stop.set)
        else:
            stop.set()

    try:
        await server.start(host, port)
    except OSError as exc:
        raise SystemExit(f"{name} cannot listen on {host}:{port}: {exc}") from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        log.info("%s listening on http://%s:%d", name, host, server.port)
        await stop.wait()
        log.info("shutting down: no new connections; finishing %d open", len(server.connections))
        await server.shutdown(within=0 if forced else shutdown.shutdown_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return forced

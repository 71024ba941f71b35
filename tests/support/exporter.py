"""A stand-in for what Prometheus scrapes from ``serinus serve`` and the router: a
``prometheus_client`` registry on 127.0.0.1, with a thread feeding it while the block lasts.

What it emulates: the metric names and labels the analysis checks query, with counts a test
controls. What it lacks: the servers themselves (no requests, no latency of its own); the
tests of those servers scrape the real ones.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server

from support.serve import free_port


class Source(Protocol):
    registry: CollectorRegistry
    stop: threading.Event

    def run(self) -> None:
        """Feed the registry until ``stop`` is set."""


@contextlib.contextmanager
def exported(source: Source) -> Iterator[str]:
    """Serve ``source.registry`` and run ``source.run`` in a thread; yields ``host:port``.
    On leaving, the feeder is stopped and joined, and the server shut down."""
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=source.registry)
    feeder = threading.Thread(target=source.run, daemon=True)
    feeder.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        source.stop.set()
        feeder.join()
        server.shutdown()

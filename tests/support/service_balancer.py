"""A stand-in for a Kubernetes ClusterIP Service on 127.0.0.1: one address in front of
several backends, each TCP connection piped to the next backend in turn.

What it emulates: kube-proxy's spread behind a Service. The unit kube-proxy balances is the
connection, not the request: once a client's connection is placed on a pod, every request
it carries goes to that pod, so a client with keep-alive connections (the router's upstream
pools) reaches several pods only by opening several connections. Here each accepted
connection goes to the next backend round-robin (kube-proxy's IPVS default; its iptables
mode picks at random, which spreads the same way over many connections) and its bytes are
copied unchanged both ways; a half-close on one side is passed on to the other, as a NAT
passes the FIN on, and the pair is closed once both directions have ended or either side
failed. A backend that refuses the connection makes the client's connection close at once.

What it lacks: no session affinity (``sessionAffinity: ClientIP``), no health checks or
endpoint updates (the backends are fixed when it starts; a dead one keeps its turn, where
the EndpointSlice controller would drop a pod that is not ready), and none of the iptables
or IPVS semantics (no NAT, so backends see the balancer's address as the client; no
conntrack; no node ports; no weights or other schedulers).

``connections`` counts the connections given to each backend, so a test can tell that the
traffic really spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import urlsplit

CHUNK = 64 << 10


def _address(url: str) -> tuple[str, int]:
    """``http://host:port`` or ``host:port`` as (host, port)."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"a backend is host:port or http://host:port, not {url!r}")
    return parts.hostname, parts.port


class ServiceBalancer:
    """A round-robin TCP balancer on its own loopback port, over ``backends`` (URLs or
    ``host:port``), run by an event loop in a background thread while the block lasts."""

    def __init__(self, backends: Sequence[str], *, host: str = "127.0.0.1") -> None:
        if not backends:
            raise ValueError("a Service needs at least one backend")
        self.backends = list(backends)
        self.host = host
        self.port = 0
        self._addresses = [_address(b) for b in self.backends]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._connections: Counter[str] = Counter({b: 0 for b in self.backends})
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> dict[str, int]:
        """Connections given to each backend so far (a snapshot)."""
        with self._lock:
            return dict(self._connections)

    def __enter__(self) -> ServiceBalancer:
        self._thread = threading.Thread(target=self._run, name=f"balancer{self.backends}")
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None and self._stopping is not None and self._thread
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to __enter__ when starting failed
            if self._ready.is_set():
                raise
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for end in self._live:
                end.transport.abort()  # each pipe then sees both its ends close, and returns
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._pipe(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        turn = next(self._turn) % len(self.backends)
        with self._lock:
            self._connections[self.backends[turn]] += 1
        host, port = self._addresses[turn]
        self._live.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()  # as a connection to a dead pod: refused
            self._live.discard(writer)
            return
        ends = (writer, up_writer)
        self._live.add(up_writer)
        if writer.is_closing():  # stopped while connecting
            up_writer.transport.abort()
        try:
            await asyncio.gather(_copy(reader, up_writer, ends), _copy(up_reader, writer, ends))
        finally:
            for end in ends:
                end.close()
            for end in ends:
                with contextlib.suppress(OSError):
                    await end.wait_closed()
                self._live.discard(end)


async def _copy(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    ends: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
) -> None:
    """Bytes from ``source`` to ``sink`` until ``source`` ends, then pass the end on; if
    either side fails, reset both (the other direction then ends too)."""
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
    except OSError:
        for end in ends:
            end.transport.abort()
        return
    if sink.can_write_eof() and not sink.is_closing():
        with contextlib.suppress(OSError):
            sink.write_eof()

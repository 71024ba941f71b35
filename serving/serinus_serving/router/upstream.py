"""A small HTTP/1.1 client for the router's backends: keep-alive pools of asyncio
connections parsed by httptools (the C parser uvicorn uses).

A general-purpose client (httpx) costs more per request than the model behind it; the
router needs only buffered requests and responses to a handful of known backends.

A connection carries one exchange at a time, and only bytes that answer the request in
flight are read as its response: interim ``1xx`` responses are skipped, and bytes a backend
sends when nothing was asked (after a response, or while the connection idles in the pool)
make the connection unusable, so they can never be read as another client's response. What
remains possible is bytes that arrive in the same instant as the next request is written;
no HTTP/1.1 client can tell those from a fast answer. A response head is bounded
(``max_head``) like the body (``max_body``); a connection's buffers are released when it
closes, not when the garbage collector next finds the connection's reference cycle.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import cast

import httptools

#: Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the ones the
#: router sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)


class UpstreamError(Exception):
    """The backend did not answer; ``status`` is what the router answers instead."""

    status = 502
    kind = "protocol"


class UpstreamUnavailable(UpstreamError):
    status = 503
    kind = "connect"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout"


class _Lost(Exception):
    pass


class _Expired(Exception):
    pass


#: How often a pool looks for requests past their deadline. A timer per request (what
#: ``asyncio.timeout`` sets up) costs the router more than everything else it does in Python.
SWEEP_SECONDS = 0.05


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int, max_head: int = 64 << 10) -> None:
        # Kept: asyncio.get_running_loop() makes a getpid() system call every time.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.max_body = max_body
        self.max_head = max_head
        self.closed = False
        self.received = False
        self.keep_alive = True
        self.head = False
        self.in_head = False  # awaiting or reading a response's head: bytes are counted
        self.head_bytes = 0  # raw bytes read while in the head (bounds an endless one)
        self._head_size = 0  # the head's exact size, once whole
        self.interim = False  # the response being read is a 1xx: skipped
        self.deadline = 0.0  # loop time by which the current exchange must be answered
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # unasked-for bytes: the connection can no longer be trusted
            return
        self.received = True
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError(f"malformed response from backend: {exc}"))
            return
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamError("backend switched protocols unasked"))
            return
        if self.in_head and self.head_bytes > self.max_head:
            self.fail(UpstreamError(f"backend response head is over {self.max_head} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(_Lost(str(exc or "connection closed by backend")))
        self._headers, self._body = [], []  # not kept until a GC cycle frees the parser

    # httptools callbacks
    def on_message_begin(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # A second response to one request: what it says cannot be trusted, nor what
            # follows it on this connection.
            self.keep_alive = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        if self._head_size > self.max_head:
            self.fail(UpstreamError(f"backend response head is over {self.max_head} bytes"))
            return
        self._head_size = 0
        self._status = status = self.parser.get_status_code()
        if not 100 <= status <= 599:  # RFC 9110 §15: not a status a proxy can pass on
            self.fail(UpstreamError(f"backend answered with status {status}, not HTTP"))
            return
        if 100 <= status < 200:
            if status == 101:  # the router never asks to upgrade
                self.fail(UpstreamError("backend switched protocols unasked (101)"))
            else:  # interim (100 Continue, 103 Early Hints): the final response follows
                self.interim = True
            return
        self.in_head = False
        self.keep_alive = self.parser.should_keep_alive()
        if self.head:
            # A response to HEAD has no body whatever its content-length says, and the
            # parser cannot be told so: complete it here and do not reuse the connection.
            self.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self.closed:
            return
        self._size += len(body)
        if self._size > self.max_body:
            self.fail(UpstreamError(f"backend response is over {self.max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            self._headers = []
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(UpstreamResponse(self._status, self._headers, b"".join(self._body)))
        # The response handed over is the caller's: whatever the parser reads next (a HEAD
        # response's body and trailers, bytes nobody asked for) must not change it.
        self._headers, self._body = [], []

    def fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._body = []
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, *, head: bool = False) -> UpstreamResponse:
        assert self.transport is not None
        self._waiter = self.loop.create_future()
        self._status, self._headers, self._body, self._size = 0, [], [], 0
        self.received = self.interim = False
        self.in_head = True
        self.head_bytes = self._head_size = 0
        self.head = head
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None


class UpstreamPool:
    """Keep-alive connections to one backend (``host:port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int = 256,
        connect_timeout: float = 2.0,
        max_body: int = 64 << 20,
        max_head: int = 64 << 10,
    ) -> None:
        self.host, self.port = host, port
        self.max_head = max_head
        self.authority = f"{host}:{port}".encode()
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.max_body = max_body
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(self.max_body, self.max_head), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamUnavailable(
                f"connecting to {self.host}:{self.port} timed out after {self.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def encode(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        skip: frozenset[bytes] = HOP_BY_HOP,
    ) -> bytes:
        """The request as bytes, with ``headers`` (lower-cased names) minus ``skip``."""
        parts = [
            method, b" ", target, b" HTTP/1.1\r\nhost: ", self.authority,
            b"\r\ncontent-length: %d\r\n" % len(body),
        ]  # fmt: skip
        for name, value in headers:
            if name not in skip:
                parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts)

    async def request(
        self, request: bytes, *, within: float, head: bool = False
    ) -> UpstreamResponse:
        """Send an encoded request; a stale keep-alive connection is retried once on a
        fresh one (only when the backend sent nothing back, so the request was not seen)."""
        for attempt in (1, 2):
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            loop = conn.loop
            conn.deadline = loop.time() + within
            self._busy.add(conn)
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep, loop)
            try:
                response = await conn.exchange(request, head=head)
            except asyncio.CancelledError:
                conn.close()  # mid-exchange: never reusable
                raise
            except _Expired:
                raise UpstreamTimeout(
                    f"{self.host}:{self.port} did not answer within {within:g}s"
                ) from None
            except _Lost as exc:
                conn.close()
                if reused and not conn.received and attempt == 1:
                    continue
                raise UpstreamError(
                    f"{self.host}:{self.port} closed the connection: {exc}"
                ) from None
            finally:
                self._busy.discard(conn)
            if (
                conn.keep_alive
                and not conn.closed
                and not self._closed
                and len(self._idle) < self.max_idle
            ):
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the exchanges past their deadline (within ``SWEEP_SECONDS`` of it)."""
        now = loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn.fail(_Expired())
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep, loop) if self._busy else None

    def close(self) -> None:
        """Close idle connections now; busy ones close when their request finishes."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

"""A small HTTP/1.1 client for the router's backends: keep-alive pools of asyncio
connections parsed by httptools (the C parser uvicorn uses).

A general-purpose client (httpx) costs more per request than the model behind it; the
router needs only buffered requests and responses to a handful of known backends.
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


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.max_body = max_body
        self.closed = False
        self.received = False
        self.keep_alive = True
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
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed response from backend: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Lost(str(exc or "connection closed by backend")))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            self._fail(UpstreamError(f"backend response is over {self.max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(UpstreamResponse(self._status, self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> UpstreamResponse:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers, self._body, self._size = 0, [], [], 0
        self.received = False
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
    ) -> None:
        self.host, self.port = host, port
        self.authority = f"{host}:{port}".encode()
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.max_body = max_body
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(self.max_body), self.host, self.port
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
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        parts = [
            method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self.authority,
            b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n",
        ]  # fmt: skip
        for name, value in headers:
            if name not in HOP_BY_HOP:
                parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts)

    async def request(self, request: bytes, *, within: float) -> UpstreamResponse:
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
            try:
                async with asyncio.timeout(within):
                    response = await conn.exchange(request)
            except TimeoutError:
                conn.close()
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
            if conn.keep_alive and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close idle connections now; busy ones close when their request finishes."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

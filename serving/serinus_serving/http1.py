"""The HTTP/1.1 server of both ``serinus router`` and ``serinus serve``: an asyncio ``Protocol``
on httptools.

The router does little per request, so the server around it decides its throughput. A
general ASGI server builds message dicts per request and writes each response in two
system calls (head, then body); this one hands a whole buffered request to a handler and
writes the whole response with one ``transport.write``.

Per connection, requests are parsed as they arrive, queued, and answered one at a time in
arrival order, so pipelined requests get their responses in order. Reading pauses while
the queue is long or the client is not reading its responses. Client mistakes (a malformed
request, a body over the limit, oversized headers, a stalled request) get a JSON ``4xx``
with ``connection: close``; the connection then lingers half-closed so the client reads
that answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast
from urllib.parse import unquote

import httptools
import orjson

log = logging.getLogger(__name__)

JSON = (b"content-type", b"application/json")


@dataclass(slots=True)
class Request:
    """A whole request, as the handler sees it."""

    method: bytes
    #: The origin-form target (path and query) exactly as sent, to forward unchanged.
    target: bytes
    #: The percent-decoded path without the query, to dispatch on.
    path: str
    #: In arrival order, names lower-cased.
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass(slots=True)
class Response:
    """A whole response. ``content-length`` and ``connection`` are the server's to add."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    #: Runs once the response is handed to the transport: work that must not delay it.
    after: Callable[[], None] | None = None


Handler = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str) -> Response:
    """The protocol's ``{"error": …}`` body."""
    return Response(status, [JSON, (b"date", http_date())], orjson.dumps({"error": message}))


_date_second = 0
_date = b""


def http_date() -> bytes:
    """The ``Date`` header value, formatted at most once a second."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date_second, _date = now, formatdate(now, usegmt=True).encode()
    return _date


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {int(s): _status_line(int(s)) for s in http.HTTPStatus}
_WATCHED = frozenset({b"content-length", b"transfer-encoding", b"expect"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# How a response ends its connection (bit flags).
_KEEP = 0
_CLOSE = 1  # connection: close, then close
_LINGER = 2  # after closing our side, keep reading (and dropping) for a moment
_KEEP_ALIVE_10 = 4  # an HTTP/1.0 client asked for keep-alive: say so


class _Stop(Exception):
    """Raised from a parser callback to stop parsing after a rejection."""


def split_target(url: bytes) -> tuple[bytes, str]:
    """``(origin-form target, decoded path)`` of a request target; an absolute-form target
    (``http://host/p?q``, as sent to proxies) is reduced to its path and query."""
    if url[:1] != b"/" and url != b"*":
        parsed = httptools.parse_url(url)
        url = parsed.path or b"/"
        if parsed.query:
            url += b"?" + parsed.query
    query = url.find(b"?")
    path = (url if query < 0 else url[:query]).decode("latin-1")
    if "%" in path:
        path = unquote(path)
    return url, path


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[tuple[Request | Response, int]] = deque()
        self.queued_bytes = 0
        #: Request bytes this connection holds (heads arriving, bodies arriving, queued or
        #: being answered); their sum over connections is ``HttpServer.buffered``.
        self.held = 0
        self.task: asyncio.Task[None] | None = None  # answering the queue
        self.partial = False  # a request has begun arriving
        self.in_head = True  # between requests, or reading a request's head
        self.head_bytes = 0
        self.stopped = False  # no more parsing: a rejection is queued, or we upgraded
        self.eof = False  # the client will send nothing more
        self.dead = False  # the transport is gone
        self.reading = True
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.last_active = server.now
        self.linger: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self._head_size = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._length = -1
        self._chunked = False
        self._expect = False

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        if self.server.closing:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self._settle()
        # The parser and this connection reference each other, so they are freed by the
        # garbage collector's next full pass, not now: release what they buffer now (a
        # client that sent most of a large body and hung up must not hold it that long).
        self._reset()
        self.queue.clear()
        self.queued_bytes = 0
        self._hold(-self.held)
        self.server.connections.discard(self)
        if self.linger is not None:
            self.linger.cancel()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        if not self.server.connections:
            self.server.all_closed.set()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.server.now
        if self.stopped:
            return  # lingering, or past an upgrade: dropped
        if self.in_head:
            # Bytes read while a head is incomplete: bounds one that never completes (the
            # parser buffers a header until its end); complete heads are measured exactly.
            self.head_bytes += len(data)
            self._hold(len(data))
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
        except httptools.HttpParserCallbackError:
            if not self.stopped:  # not our own _Stop: a bug here, not the client's mistake
                log.exception("HTTP request handling failed")
                self._reject(500, "the server failed to read the request")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")
        else:
            if self.in_head and self.head_bytes > self.server.max_head:
                self._reject(431, f"request head is over {self.server.max_head} bytes")
            elif self.in_head and self.server.buffered > self.server.max_buffered:
                # Checked once the bytes are parsed: whole requests among them are no longer
                # counted as head bytes.
                self.server.shed(self)

    def eof_received(self) -> bool:
        self.eof = True
        self._settle()  # an incomplete request will never complete
        # Answer what is queued (a rejection included), then close.
        return self.task is not None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self._update_reading()

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self.partial = True
        self.server.arriving += 1

    def _settle(self) -> None:
        """The request that began arriving is whole, refused or abandoned."""
        if self.partial:
            self.partial = False
            self.server.arriving -= 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if name in _WATCHED:
            if name == b"content-length":
                with contextlib.suppress(ValueError):  # the parser rejects it
                    self._length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = True
            else:
                self._expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._hold(-self.head_bytes)
        self.head_bytes = 0
        server = self.server
        if self._head_size > server.max_head:
            self._reject(431, f"request head is over {server.max_head} bytes")
            raise _Stop
        if self._length > server.max_body:
            self._reject(413, f"request body is over {server.max_body} bytes")
            raise _Stop
        if self.parser.get_method() == b"CONNECT":
            self._reject(405, "CONNECT is not supported")
            raise _Stop
        if (
            self._expect
            and (self._length > 0 or self._chunked)
            and self.task is None
            and self.transport is not None
        ):
            self.transport.write(_CONTINUE)  # nothing is being answered: in order

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.server.max_body:
            self._reject(413, f"request body is over {self.server.max_body} bytes")
            raise _Stop
        self._body.append(body)
        self._hold(len(body))
        if self.server.buffered > self.server.max_buffered and self.server.shed(self):
            raise _Stop

    def on_message_complete(self) -> None:
        parser = self.parser
        try:
            target, path = split_target(self._url)
        except httptools.HttpParserError:
            self._reject(400, "malformed request target")
            raise _Stop from None
        body = self._body
        request = Request(
            parser.get_method(),
            target,
            path,
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        mode = _KEEP
        if not parser.should_keep_alive():
            mode = _CLOSE
        elif parser.get_http_version() == "1.0":
            mode = _KEEP_ALIVE_10
        self._settle()
        self.in_head = True
        self._reset()
        self._enqueue(request, mode)

    # ------------------------------------------------------------------ answering
    def _enqueue(self, item: Request | Response, mode: int) -> None:
        self.queue.append((item, mode))
        if isinstance(item, Request):
            self.queued_bytes += len(item.body)
        if self.task is None:
            self.server.starting += 1
            self.task = self.server.loop.create_task(self._answer())
        elif len(self.queue) >= self.server.max_pipeline or self.queued_bytes > (1 << 20):
            self._update_reading()

    async def _answer(self) -> None:
        self.server.starting -= 1
        handler = self.server.handler
        queue = self.queue
        try:
            while queue and not self.dead:
                item, mode = queue.popleft()
                if isinstance(item, Response):
                    self._send(item, mode, head=False)
                    continue
                self.queued_bytes -= len(item.body)
                if not self.reading:
                    self._update_reading()
                try:
                    response = await handler(item)
                except Exception:
                    log.exception("handler failed on %s %r", item.method, item.target)
                    response = error_response(500, "internal error in the server")
                if not self.dead:  # else connection_lost let go of everything
                    self._hold(-len(item.body))
                self._send(response, mode, head=item.method == b"HEAD")
                if self.write_paused and not self.dead:
                    self.drained = self.server.loop.create_future()
                    await self.drained
                    self.drained = None
        finally:
            self.task = None
        if not self.dead and self.eof:
            self._close()

    def _send(self, response: Response, mode: int, *, head: bool) -> None:
        transport = self.transport
        if self.dead or transport is None:
            return
        self.last_active = self.server.now
        status = response.status
        if not mode & _CLOSE and (
            (self.server.closing or self.server.draining or self.eof)
            and not self.queue
            and not self.partial
        ):
            mode |= _CLOSE
        parts = [_STATUS_LINES.get(status) or _status_line(status)]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        body = response.body
        if status < 200 or status == 204 or status == 304:
            body = b""
        elif not head or not any(n == b"content-length" for n, _ in response.headers):
            parts.append(b"content-length: %d\r\n" % len(body))
        if mode & _CLOSE:
            parts.append(b"connection: close\r\n\r\n")
        elif mode & _KEEP_ALIVE_10:
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        if not head:
            parts.append(body)
        transport.write(b"".join(parts))
        if response.after is not None:
            try:
                response.after()
            except Exception:
                log.exception("post-response work failed")
        if mode & _LINGER:
            self._linger()
        elif mode & _CLOSE:
            self._close()

    # ------------------------------------------------------------------ flow and closing
    def _update_reading(self) -> None:
        if self.dead or self.transport is None:
            return
        want = self.stopped or (
            not self.write_paused
            and len(self.queue) < self.server.max_pipeline
            and self.queued_bytes <= (1 << 20)
        )
        if want != self.reading:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _hold(self, n: int) -> None:
        self.held += n
        self.server.buffered += n

    def arriving_bytes(self) -> int:
        """What the request still arriving holds (what refusing it frees)."""
        return self.head_bytes + self._size if self.partial and not self.stopped else 0

    def _reject(self, status: int, message: str) -> None:
        """Answer a client mistake in order after what is queued, then close."""
        if self.stopped:
            return
        self.stopped = True
        # What the refused request sent so far is let go now, not when the connection ends.
        self._hold(-(self.head_bytes + self._size))
        self.head_bytes = self._size = 0
        self._body = []
        self._settle()
        self._enqueue(error_response(status, message), _CLOSE | _LINGER)
        self._update_reading()  # keep reading: the rest is dropped

    def _upgraded(self) -> None:
        # The upgrade request itself was queued; answer it as plain HTTP, then close: what
        # follows on the connection is another protocol.
        self.stopped = True
        if self.queue:
            item, mode = self.queue[-1]
            self.queue[-1] = (item, mode | _CLOSE | _LINGER)
        self._update_reading()

    def _close(self) -> None:
        if self.transport is not None and not self.dead:
            self.transport.close()

    def _linger(self) -> None:
        transport = self.transport
        if transport is None or self.dead:
            return
        self.stopped = True
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # after the buffered response
        self._update_reading()
        self.linger = self.server.loop.call_later(self.server.linger_seconds, transport.abort)

    def idle(self) -> bool:
        return self.task is None and not self.queue and not self.partial

    def check(self, now: float) -> None:
        """Once a second: close idle keep-alive connections and reject stalled requests."""
        if self.dead or self.stopped:
            return
        quiet = now - self.last_active
        if self.idle():
            if quiet >= self.server.keep_alive_timeout or self.server.closing:
                self._close()
        elif self.partial and self.reading and quiet >= self.server.read_timeout:
            self._reject(408, f"no request data for {self.server.read_timeout:g}s")

    def abort(self) -> None:
        if self.transport is not None and not self.dead:
            self.transport.abort()


class HttpServer:
    """Serve ``handler`` over HTTP/1.1: keep-alive, pipelining, ``Content-Length`` and
    chunked bodies; ``drain`` ends each connection after its response, ``shutdown`` stops
    accepting and lets in-flight requests finish.

    What a client can make the server hold is bounded by these, whatever it sends:

    - ``max_body``: one request's body (413).
    - ``max_head``: one request's line and headers, counted as they arrive (431).
    - ``max_pipeline``: requests queued on one connection behind the one being answered
      (reading pauses; also at 1 MiB of queued bodies).
    - ``max_buffered``: request bytes held at once over all connections; past it the
      request holding most of what is still arriving gets 503. Never below one whole
      request (``max_body + max_head``).
    - ``read_timeout``: a request that has begun and then stalls gets 408.
    - ``keep_alive_timeout``: an idle connection, or one that never sends, is closed.
    - ``linger_seconds``: after a 4xx that ends a connection, how long its remaining input
      is read and dropped, so the client reads the answer rather than a reset.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = 32 << 20,
        max_head: int = 64 << 10,
        max_pipeline: int = 16,
        max_buffered: int = 96 << 20,
        keep_alive_timeout: float = 75.0,
        read_timeout: float = 60.0,
        linger_seconds: float = 2.0,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.max_head = max_head
        self.max_pipeline = max_pipeline
        self.max_buffered = max(max_buffered, max_body + max_head)  # one whole request fits
        #: Request bytes held across connections (see ``_Connection.held``).
        self.buffered = 0
        self.keep_alive_timeout = keep_alive_timeout
        self.read_timeout = read_timeout
        self.linger_seconds = linger_seconds
        self.connections: set[_Connection] = set()
        #: Requests that have begun arriving and are not yet whole...
        self.arriving = 0
        #: ...and connections with a whole request whose answering has not started yet:
        #: together, the company a batcher may wait for.
        self.starting = 0
        self.draining = False  # every response closes its connection: clients move on
        self.closing = False
        self.now = time.monotonic()  # refreshed by the once-a-second tick
        self.all_closed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.port = 0  # the bound port, once started

    async def start(self, host: str, port: int, *, backlog: int = 2048) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tick()

    def _tick(self) -> None:
        self.now = time.monotonic()
        for conn in list(self.connections):
            conn.check(self.now)
        self._tick_handle = self.loop.call_later(1.0, self._tick)

    def shed(self, current: _Connection) -> bool:
        """Over ``max_buffered``: refuse (503) the request holding most of what is still
        arriving, so one process's request memory stays bounded whatever its clients send.
        True when that was ``current``'s own request (its caller stops parsing)."""
        victim = max(self.connections, key=_Connection.arriving_bytes, default=current)
        if victim.arriving_bytes() == 0:
            victim = current
        log.warning("request bytes held over %d: refusing a request of %d bytes",
                    self.max_buffered, victim.arriving_bytes())  # fmt: skip
        victim._reject(503, "the server holds too many request bytes at once; retry")
        return victim is current

    def drain(self) -> None:
        """Keep serving, but end each connection after its current response (with
        ``connection: close``), so keep-alive clients reconnect elsewhere before we stop."""
        self.draining = True

    async def shutdown(self, *, within: float) -> None:
        """Stop accepting; close idle connections now and the others once their last
        response is written; after ``within`` seconds, close what is left."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.idle():
                conn._close()
        if self.connections:
            self.all_closed.clear()
            try:
                await asyncio.wait_for(self.all_closed.wait(), within)
            except TimeoutError:
                log.warning("%d connections still busy after %gs; closing them",
                            len(self.connections), within)  # fmt: skip
                self.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()

    def abort(self) -> None:
        """Close every connection now (a second signal)."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()

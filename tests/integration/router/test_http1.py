"""The router's HTTP/1.1 server (``serinus_serving.http1``) on a real loopback socket,
driven byte by byte: the cases a general client library would hide."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import orjson
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_serving import http1
from serinus_serving.http1 import HttpServer, Request, Response
from serinus_serving.router.app import RouterApp
from serinus_serving.router.table import parse_table

pytestmark = pytest.mark.integration

MAX_BODY = 4096


@dataclass
class Echo:
    """The handler under test: records what it was given and echoes it back."""

    seen: list[Request] = field(default_factory=list)
    special: bool = True  # /slow?MS, /big?KIB and /boom do what they say

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        path, _, query = request.target.partition(b"?")
        if not self.special:
            pass
        elif path == b"/slow":
            await asyncio.sleep(int(query or b"0") / 1000)
        elif path == b"/big":
            return Response(200, [], b"x" * (int(query) << 10))
        elif path == b"/boom":
            raise RuntimeError("a bug in the handler")
        body = orjson.dumps(
            {
                "method": request.method.decode(),
                "target": request.target.decode("latin-1"),
                "path": request.path,
                "headers": [[n.decode(), v.decode("latin-1")] for n, v in request.headers],
                "body": request.body.decode("latin-1"),
            }
        )
        return Response(200, [http1.JSON], body)


class Loop:
    """An event loop on a thread of its own, so tests can use blocking sockets."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapped() -> Any:
            return fn()

        return self.run(wrapped())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Running:
    loop: Loop
    server: HttpServer
    handler: Echo

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.port)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connections(self) -> int:
        return int(self.loop.call(lambda: len(self.server.connections)))


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    try:
        yield running
    finally:
        running.close()


@contextlib.contextmanager
def started(
    loop: Loop, *, special: bool = True, max_body: int = MAX_BODY, **options: Any
) -> Iterator[Running]:
    handler = Echo(special=special)
    server = HttpServer(handler, max_body=max_body, **options)
    loop.run(server.start("127.0.0.1", 0))
    try:
        yield Running(loop, server, handler)
    finally:
        loop.run(server.shutdown(within=2))


@pytest.fixture
def srv(loop: Loop) -> Iterator[Running]:
    with started(loop) as running:
        yield running


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Collector:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.replies.append(Reply(status, self._headers, b"".join(self._body)))
        self._headers, self._body = {}, []


def read_replies(sock: socket.socket, n: int | None = None, timeout: float = 10) -> list[Reply]:
    """Read ``n`` responses (or all until the server closes), skipping ``100 Continue``."""
    collector = _Collector()
    sock.settimeout(timeout)
    while n is None or len([r for r in collector.replies if r.status != 100]) < n:
        try:
            chunk = sock.recv(1 << 16)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        collector.parser.feed_data(chunk)
    return [r for r in collector.replies if r.status != 100]


def closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(1 << 16):
            del chunk
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def post(target: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {target} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(target: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: t", *extra]) + "\r\n\r\n").encode()


def test_keep_alive_across_many_requests_one_write_per_response(
    srv: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    made = http1._Connection.connection_made

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def write(self, data: bytes) -> None:
            writes.append(data)
            self.inner.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    def counting(self: Any, transport: Any) -> None:
        made(self, cast(asyncio.BaseTransport, Counting(transport)))

    monkeypatch.setattr(http1._Connection, "connection_made", counting)
    n = 500
    with srv.connect() as sock:
        for i in range(n):
            sock.sendall(post(f"/v2/models/m/infer?i={i}", b'{"i": %d}' % i))
            (reply,) = read_replies(sock, 1)
            assert reply.status == 200
            assert reply.json()["body"] == f'{{"i": {i}}}'
            assert "connection" not in reply.headers
    assert len(srv.handler.seen) == n
    assert len(writes) == n  # head and body in one write, every time
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"}") for w in writes)


def test_pipelined_requests_are_answered_in_order(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(
            post("/slow?200", b"first")
            + get("/fast")
            + b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nthird\r\n0\r\n\r\n" + get("/slow?50") + get("/last")
        )
        replies = read_replies(sock, 5)
    assert [r.status for r in replies] == [200] * 5
    targets = [r.json()["target"] for r in replies]
    assert targets == ["/slow?200", "/fast", "/chunked", "/slow?50", "/last"]
    assert replies[0].json()["body"] == "first" and replies[2].json()["body"] == "third"


def test_chunked_request_bodies_arrive_whole(srv: Running) -> None:
    chunks = [b"a" * 10, b"b" * 1000, b"c"]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    with srv.connect() as sock:
        sock.sendall(
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(0, len(wire), 7):  # in dribbles
            sock.sendall(wire[i : i + 7])
        (reply,) = read_replies(sock, 1)
    assert reply.status == 200 and reply.json()["body"] == b"".join(chunks).decode()
    assert reply.json()["path"] == "/v1/models/m:predict"


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_bodies_are_413_and_never_reach_the_handler(srv: Running, chunked: bool) -> None:
    body = b"x" * (MAX_BODY + 1)
    with srv.connect() as sock:
        if chunked:
            sock.sendall(
                b"POST /big-chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
        else:
            sock.sendall(post("/big-declared", body))
        (reply,) = read_replies(sock, 1)
        assert closed_by_server(sock)
    assert reply.status == 413 and reply.headers["connection"] == "close"
    assert "over 4096 bytes" in reply.json()["error"]
    assert srv.handler.seen == []


def test_expect_100_continue(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(5)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        (reply,) = read_replies(sock, 1)
        assert reply.json()["body"] == "hello"
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n"
        )
        (refused,) = read_replies(sock, 1)
        assert refused.status == 413  # without waiting for the body


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /x HTTP/9.9\r\nHost: t\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /x HTTP/1.1\r\nX: " + b"a" * (70 << 10) + b"\r\n\r\n", 431),
        (b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 405),
    ],
)
def test_malformed_requests_are_a_json_4xx_then_close(
    srv: Running, wire: bytes, status: int
) -> None:
    with srv.connect() as sock:
        sock.sendall(get("/before") + wire + get("/after"))
        replies = read_replies(sock)
    assert [r.status for r in replies] == [200, status], replies
    assert replies[1].headers["connection"] == "close"
    assert "error" in replies[1].json()
    assert [r.target for r in srv.handler.seen] == [b"/before"]


def test_a_handler_bug_is_a_500_and_the_connection_lives_on(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(get("/boom") + get("/after"))
        replies = read_replies(sock, 2)
    assert [r.status for r in replies] == [500, 200]
    assert replies[0].json() == {"error": "internal error in the server"}


def test_client_disconnect_mid_body(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(post("/half", b"0123456789")[:-5])
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while srv.connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.connections() == 0
    assert srv.handler.seen == []
    with srv.connect() as sock:  # still serving
        sock.sendall(get("/next"))
        assert read_replies(sock, 1)[0].status == 200


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_an_aborted_upload_is_released_when_the_client_leaves_not_at_the_next_gc(
    loop: Loop,
) -> None:
    """The connection and its parser reference each other: with the collector off (as it
    is, in effect, between its full passes), what a departed client sent must still be
    freed at once."""
    sent = 4 << 20
    with started(loop, max_body=64 << 20) as srv:
        gc.disable()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(4):
                with srv.connect() as sock:
                    sock.sendall(b"POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (16 << 20))
                    sock.sendall(b"x" * sent)
                    _wait_for(
                        lambda: tracemalloc.get_traced_memory()[0] > base + sent * 0.9,
                        "the server never buffered the body",
                    )
                _wait_for(lambda: srv.connections() == 0, "the connection was never closed")
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
            gc.enable()
    assert held < sent // 4, f"{held} bytes still held after 4 aborted uploads of {sent}"
    assert srv.handler.seen == []


def test_request_bytes_held_at_once_are_bounded_per_process(loop: Loop) -> None:
    """Past ``max_buffered``, the request holding most of what is still arriving gets a
    503; the others go on. Every byte counted is let go when its connection ends."""
    with started(loop, max_body=1 << 20, max_head=1024, max_buffered=0) as srv:
        budget = srv.server.max_buffered
        assert budget == (1 << 20) + 1024  # raised: one whole request always fits
        socks = [srv.connect() for _ in range(3)]
        big = b"POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (1 << 20)
        small = b"POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (300 << 10)
        socks[0].sendall(big + b"a" * (700 << 10))  # the largest: refused when over
        _wait_for(lambda: srv.loop.call(lambda: srv.server.buffered) > 600 << 10, "no body")
        socks[1].sendall(small + b"b" * (200 << 10))
        socks[2].sendall(small + b"c" * (200 << 10))
        (refused,) = read_replies(socks[0], 1)
        for sock in socks[1:]:
            sock.sendall(b"x" * (100 << 10))
        answers = [read_replies(sock, 1)[0] for sock in socks[1:]]
        for sock in socks:
            sock.close()
        _wait_for(lambda: srv.connections() == 0, "connections never closed")
        left = srv.loop.call(lambda: srv.server.buffered)
    assert refused.status == 503 and "too many request bytes" in refused.json()["error"]
    assert [a.status for a in answers] == [200, 200]
    assert [len(a.json()["body"]) for a in answers] == [300 << 10] * 2
    assert left == 0


def test_a_client_that_half_closes_still_gets_its_answers(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(get("/slow?100") + get("/two"))
        sock.shutdown(socket.SHUT_WR)
        replies = read_replies(sock)
    assert [r.json()["target"] for r in replies] == ["/slow?100", "/two"]
    assert replies[-1].headers["connection"] == "close"


def test_http_1_0_and_connection_close(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        (reply,) = read_replies(sock)  # until the server closes
    assert reply.status == 200 and reply.headers["connection"] == "close"
    with srv.connect() as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/new"))
        replies = read_replies(sock, 2)
    assert replies[0].headers["connection"] == "keep-alive" and replies[1].status == 200
    with srv.connect() as sock:
        sock.sendall(get("/bye", "Connection: close") + get("/never"))
        replies = read_replies(sock)
    assert [r.json()["target"] for r in replies] == ["/bye"]


def test_targets_and_paths(srv: Running) -> None:
    with srv.connect() as sock:
        sock.sendall(
            get("/v2/models/a%20b/infer?x=%20")
            + get("http://example.org/v2/models/m/infer?q=1")
            + b"HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n"
            + get("/after-head")
        )
        sock.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 200") < 4:
            data += sock.recv(1 << 16)
    first, absolute, head, after = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b'"path":"/v2/models/a b/infer"' in first and b'"target":"/v2/models/a%20b' in first
    assert b'"target":"/v2/models/m/infer?q=1"' in absolute
    assert head.endswith(b"\r\n\r\n") and b"content-length: " in head  # no body
    assert b'"/after-head"' in after


def test_backpressure_pauses_reading_while_the_client_does_not_read(srv: Running) -> None:
    n, kib = 200, 256  # 50 MiB of responses: far more than socket buffers hold
    with srv.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.sendall(b"".join(get(f"/big?{kib}") for _ in range(n)))
        time.sleep(0.5)
        assert len(srv.handler.seen) < 40  # paused: not all 200 were taken in
        replies = read_replies(sock, n, timeout=30)
    assert len(replies) == n and all(len(r.body) == kib << 10 for r in replies)


def test_idle_and_stalled_connections_are_closed(loop: Loop) -> None:
    with (
        started(loop, keep_alive_timeout=1, read_timeout=1) as srv,
        srv.connect() as idle,
        srv.connect() as stalled,
    ):
        idle.sendall(get("/once"))
        assert read_replies(idle, 1)[0].status == 200
        stalled.sendall(b"POST /slowloris HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        assert closed_by_server(idle, timeout=5)
        (reply,) = read_replies(stalled, timeout=5)
        assert reply.status == 408 and reply.headers["connection"] == "close"


def test_shutdown_finishes_in_flight_requests_and_closes_idle_ones(loop: Loop) -> None:
    with started(loop) as srv:
        idle, busy, partial = srv.connect(), srv.connect(), srv.connect()
        idle.sendall(get("/warm"))
        read_replies(idle, 1)
        busy.sendall(get("/slow?300"))
        partial.sendall(post("/late", b"0123456789")[:-4])
        time.sleep(0.1)
        shutdown = asyncio.run_coroutine_threadsafe(srv.server.shutdown(within=5), loop.loop)
        assert closed_by_server(idle)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(srv.address, timeout=1).close()
        partial.sendall(b"6789")
        (late,) = read_replies(partial)
        (slow,) = read_replies(busy)
        shutdown.result(5)
        for sock in (idle, busy, partial):
            sock.close()
    assert late.status == 200 and late.headers["connection"] == "close"
    assert slow.status == 200 and slow.headers["connection"] == "close"


def test_a_backend_past_the_timeout_is_a_504_and_the_next_request_is_fine(loop: Loop) -> None:
    with started(loop) as backend:
        app = RouterApp()
        table = {
            "model": "m",
            "timeoutSeconds": 0.2,
            "revisions": {"a": {"url": f"http://127.0.0.1:{backend.server.port}", "weight": 100}},
        }
        loop.call(lambda: app.apply(parse_table(orjson.dumps(table))))
        server = HttpServer(app.handle)
        loop.run(server.start("127.0.0.1", 0))
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                started_at = time.monotonic()
                sock.sendall(get("/slow?1000"))
                (late,) = read_replies(sock, 1)
                waited = time.monotonic() - started_at
                sock.sendall(get("/slow?10"))
                (fine,) = read_replies(sock, 1)
        finally:
            loop.run(server.shutdown(within=2))
            loop.run(app.shutdown(grace=0))
    assert late.status == 504 and "did not answer within 0.2s" in late.json()["error"]
    assert 0.2 <= waited < 0.9
    assert fine.status == 200 and fine.headers["x-serinus-revision"] == "a"


# ---------------------------------------------------------------------------- fuzzing
_VALID = post("/v2/models/m/infer", b'{"inputs": []}', "Content-Type: application/json")


def _mutations() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid requests with random bytes spliced in (nearer to the
    parser's edge cases than noise alone)."""
    noise = st.binary(max_size=300)

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        at = draw(st.integers(0, len(_VALID)))
        cut = draw(st.integers(0, 20))
        return _VALID[:at] + draw(noise) + _VALID[at + cut :]

    pieces = [
        b"GET", b"POST", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b":",
        b"Content-Length: ", b"Transfer-Encoding: chunked", b"0", b"5", b"ffffffffffffffff",
        b"x-serinus-revision: zz", b"Expect: 100-continue", b"Upgrade: h2c",
        b"Connection: upgrade", b"\x00", b"\xff", b"%", b"?",
    ]  # fmt: skip
    tokens = st.lists(st.sampled_from(pieces), max_size=40).map(b"".join)
    return st.one_of(noise, spliced(), tokens, st.just(_VALID + _VALID))


@pytest.fixture(scope="module")
def router_front(loop: Loop) -> Iterator[Running]:
    """A RouterApp on the server under test, in front of an echo backend."""
    with started(loop, special=False) as backend:
        app = RouterApp(max_body_bytes=MAX_BODY)
        table = {
            "model": "m",
            "revisions": {"a": {"url": f"http://127.0.0.1:{backend.server.port}", "weight": 100}},
        }
        loop.call(lambda: app.apply(parse_table(orjson.dumps(table))))
        server = HttpServer(app.handle, max_body=MAX_BODY)
        loop.run(server.start("127.0.0.1", 0))
        try:
            yield Running(loop, server, backend.handler)
        finally:
            loop.run(server.shutdown(within=2))
            loop.run(app.shutdown(grace=0))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(wire=_mutations())
def test_random_bytes_never_crash_the_server_or_get_a_5xx(
    router_front: Running, wire: bytes
) -> None:
    with router_front.connect() as sock:
        sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                received += chunk
    statuses = [int(line[9:12]) for line in received.split(b"\r\n") if line[:7] == b"HTTP/1."]
    assert all(s < 500 for s in statuses), received[:500]
    with router_front.connect() as sock:  # and it still serves
        sock.sendall(_VALID)
        assert read_replies(sock, 1)[0].status == 200

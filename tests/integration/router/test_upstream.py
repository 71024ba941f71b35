"""The router's backend client (``router/upstream.py``) against a scripted backend on a real
loopback socket: a backend that answers with interim responses, sends bytes nobody asked
for, or an endless head. What the client reads as a response must be the answer to the
request it sent, and nothing a backend sends may cost unbounded memory."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from serinus_serving.router.upstream import UpstreamError, UpstreamPool

pytestmark = pytest.mark.integration

Script = Callable[[socket.socket, int], None]


class Backend:
    """Accepts connections and runs ``script(sock, n)`` for the n-th request it reads (a
    request here is everything up to a blank line: the client sends no bodies)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buffered = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffered += chunk
                _, _, buffered = buffered.partition(b"\r\n\r\n")
                self.requests += 1
                self.script(sock, self.requests)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def backend() -> Iterator[Callable[[Script], Backend]]:
    made: list[Backend] = []

    def make(script: Script) -> Backend:
        made.append(Backend(script))
        return made[-1]

    yield make
    for b in made:
        b.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def _get(pool: UpstreamPool, target: bytes) -> tuple[int, bytes]:
    response = await pool.request(pool.encode(b"GET", target, [], b""), within=5)
    return response.status, response.body


def test_interim_responses_are_skipped_for_the_final_one(
    backend: Callable[[Script], Backend],
) -> None:
    def script(sock: socket.socket, n: int) -> None:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        sock.sendall(ok(b"final %d" % n))

    b = backend(script)

    async def run() -> list[tuple[int, bytes]]:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            return [await _get(pool, b"/a"), await _get(pool, b"/b")]
        finally:
            pool.close()

    assert asyncio.run(run()) == [(200, b"final 1"), (200, b"final 2")]
    assert b.connections == 1  # and the connection stayed usable


def test_a_backend_switching_protocols_unasked_is_a_502(
    backend: Callable[[Script], Backend],
) -> None:
    b = backend(lambda sock, n: sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\nxyz"))

    async def run() -> None:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            await _get(pool, b"/a")
        finally:
            pool.close()

    with pytest.raises(UpstreamError, match="switched protocols"):
        asyncio.run(run())


def test_late_bytes_on_an_idle_connection_never_become_the_next_answer(
    backend: Callable[[Script], Backend],
) -> None:
    """A backend answers, then (while the connection idles in the pool) sends a second,
    unasked-for response. The next request must get its own answer, from a new
    connection, never the stray one."""
    idle_now = threading.Event()

    def script(sock: socket.socket, n: int) -> None:
        sock.sendall(ok(b"answer %d" % n))
        if n == 1 and idle_now.wait(5):
            sock.sendall(ok(b"STRAY"))

    b = backend(script)

    async def run() -> list[tuple[int, bytes]]:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            first = await _get(pool, b"/1")
            (idle,) = pool._idle
            idle_now.set()
            # The stray bytes reach the idle connection (what this test is about; bytes
            # arriving in the same instant as the next request are not told apart).
            for _ in range(500):
                if idle.closed:
                    break
                await asyncio.sleep(0.01)
            assert idle.closed, "the stray bytes never closed the idle connection"
            return [first, await _get(pool, b"/2"), await _get(pool, b"/3")]
        finally:
            pool.close()

    assert asyncio.run(run()) == [(200, b"answer 1"), (200, b"answer 2"), (200, b"answer 3")]
    assert b.connections == 2


def test_bytes_after_a_response_in_the_same_packet_close_the_connection(
    backend: Callable[[Script], Backend],
) -> None:
    b = backend(lambda sock, n: sock.sendall(ok(b"answer %d" % n) + ok(b"STRAY")))

    async def run() -> list[tuple[int, bytes]]:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            return [await _get(pool, b"/1"), await _get(pool, b"/2")]
        finally:
            pool.close()

    assert asyncio.run(run()) == [(200, b"answer 1"), (200, b"answer 2")]
    assert b.connections == 2


@pytest.mark.parametrize("shape", ["one header", "many headers"])
def test_an_endless_response_head_is_refused_at_the_bound(
    backend: Callable[[Script], Backend], shape: str
) -> None:
    def script(sock: socket.socket, n: int) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nx-a: ")
        piece = b"a" * 4096 if shape == "one header" else b"a\r\nx-b: b"
        try:
            for _ in range(100_000):  # up to hundreds of MiB, unless cut off
                sock.sendall(piece * 16)
        except OSError:
            pass

    b = backend(script)

    async def run() -> None:
        pool = UpstreamPool("127.0.0.1", b.port, max_head=64 << 10)
        try:
            await _get(pool, b"/a")
        finally:
            pool.close()

    with pytest.raises(UpstreamError, match="head is over 65536 bytes"):
        asyncio.run(run())


def test_a_response_cut_short_is_released_at_once_not_at_the_next_gc(
    backend: Callable[[Script], Backend],
) -> None:
    """A connection and its parser reference each other; with the collector off, a
    response the backend abandoned half-way must still be freed when the exchange fails."""
    sent = 4 << 20

    def script(sock: socket.socket, n: int) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (16 << 20))
        sock.sendall(b"x" * sent)
        sock.shutdown(socket.SHUT_RDWR)

    b = backend(script)

    async def run() -> int:
        pool = UpstreamPool("127.0.0.1", b.port)
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            with pytest.raises(UpstreamError, match="closed the connection"):
                await _get(pool, b"/a")
        pool.close()
        return tracemalloc.get_traced_memory()[0] - base

    gc.disable()
    tracemalloc.start()
    try:
        held = asyncio.run(run())
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < sent // 4, f"{held} bytes still held after 4 responses cut short"


@pytest.mark.parametrize(
    ("head", "wire"),
    [
        (False, ok(b"ok") + b"HTTP/1.1 500 Oops\r\nx-injected: 1\r\ncontent-length: 0\r\n\r\n"),
        (
            True,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        ),
    ],
    ids=["a second response in the same packet", "a HEAD response's body and trailer"],
)
def test_what_follows_a_response_never_changes_it(
    backend: Callable[[Script], Backend], head: bool, wire: bytes
) -> None:
    b = backend(lambda sock, n: sock.sendall(wire))

    async def run() -> tuple[int, list[tuple[bytes, bytes]]]:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            method = b"HEAD" if head else b"GET"
            response = await pool.request(pool.encode(method, b"/", [], b""), within=5, head=head)
            await asyncio.sleep(0.05)  # what follows is read (and refused) meanwhile
            return response.status, response.headers
        finally:
            pool.close()

    status, headers = asyncio.run(run())
    expected = [(b"content-length", b"2")] if not head else [(b"transfer-encoding", b"chunked")]
    assert (status, headers) == (200, expected)


@pytest.mark.parametrize("status", [b"002", b"099", b"600", b"999"])
def test_a_status_outside_100_to_599_is_a_502(
    backend: Callable[[Script], Backend], status: bytes
) -> None:
    b = backend(
        lambda sock, n: sock.sendall(b"HTTP/1.1 %s X\r\ncontent-length: 0\r\n\r\n" % status)
    )

    async def run() -> None:
        pool = UpstreamPool("127.0.0.1", b.port)
        try:
            await _get(pool, b"/")
        finally:
            pool.close()

    with pytest.raises(UpstreamError, match="not HTTP"):
        asyncio.run(run())

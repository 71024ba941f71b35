"""``serinus serve`` as a real process, spoken to byte by byte as an attacker would: heads
too large or never finished, connections that send nothing, malformed HTTP after valid
pipelined requests, hundreds of hostile connections at once, and a drain."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httptools
import numpy as np
import orjson
import pytest

from support.serve import ServeProcess, serve

pytestmark = pytest.mark.integration

BODY = orjson.dumps(
    {"inputs": [{"name": "X", "shape": [1, 20], "datatype": "FP32", "data": np.ones(20).tolist()}]}
)
INFER = (
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class Replies:
    """HTTP/1.1 responses parsed off a socket (status, headers, body)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self.parser = httptools.HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.items.append((self.parser.get_status_code(), self._headers, self._body))
        self._headers, self._body = {}, b""


def read_all(sock: socket.socket, timeout: float = 10) -> tuple[Replies, bool]:
    """Every response until the server closes; and whether it did close in ``timeout``."""
    replies = Replies()
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(1 << 16):
            replies.parser.feed_data(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return replies, False
    return replies, True


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(logreg_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    args = ("--model", str(logreg_path), "--name", "m", "--read-timeout", "1",
            "--keep-alive-timeout", "2", "--max-body-bytes", str(8 << 20),
            "--max-buffered-bytes", str(32 << 20))  # fmt: skip
    with serve(*args, log_dir=tmp_path_factory.mktemp("serve-http")) as s:
        yield s


def connect(s: ServeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", s.port), timeout=10)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v2/health/live HTTP/1.1\r\nx-big: " + b"a" * (64 << 10) + b"\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nx-big: " + b"a" * (1 << 20) + b"\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\n" + b"x-h: v\r\n" * 10_000 + b"\r\n",
    ],
    ids=["64KiB header", "1MiB header", "10000 headers"],
)
def test_request_heads_over_the_limit_get_a_json_431(server: ServeProcess, head: bytes) -> None:
    with connect(server) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(head)
        replies, closed = read_all(sock)
    ((status, headers, body),) = replies.items
    assert status == 431 and closed
    assert headers[b"content-type"] == b"application/json" and b"connection" in headers
    assert "request head is over 65536 bytes" in orjson.loads(body)["error"]


def test_malformed_http_gets_a_json_400_after_the_valid_requests_before_it(
    server: ServeProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(INFER + b"GET /v2/health/ready HTTP/1.1\r\n\r\n" + b"\x00GARBAGE\r\n\r\n")
        replies, closed = read_all(sock)
    assert [status for status, _, _ in replies.items] == [200, 200, 400] and closed
    assert b'"outputs"' in replies.items[0][2]
    assert replies.items[2][1][b"content-type"] == b"application/json"
    assert "malformed HTTP request" in orjson.loads(replies.items[2][2])["error"]


def test_a_stalled_head_gets_408_and_a_silent_connection_is_closed(
    server: ServeProcess,
) -> None:
    with connect(server) as stalled, connect(server) as silent:
        stalled.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Le")
        replies, closed = read_all(stalled, timeout=6)
        assert [status for status, _, _ in replies.items] == [408] and closed
        _, closed = read_all(silent, timeout=6)
        assert closed


def test_hundreds_of_hostile_connections_leave_memory_bounded(server: ServeProcess) -> None:
    """400 connections: unfinished 1 MiB heads, bodies stopped half-way, and silent ones,
    all held open at once. The process must stay within its stated bound (request bytes
    held at once ≤ --max-buffered-bytes, 32 MiB here, plus a small cost per connection)
    and keep answering a well-behaved client meanwhile."""
    before = rss_kib(server.process.pid)
    socks: list[socket.socket] = []
    stop = threading.Event()

    def hostile(kind: int) -> None:
        sock = connect(server)
        socks.append(sock)
        with contextlib.suppress(OSError):
            if kind == 0:  # a head that never ends
                sock.sendall(b"GET / HTTP/1.1\r\nx-a: " + b"a" * (1 << 20))
            elif kind == 1:  # half a body (4 of 8 MiB)
                sock.sendall(
                    b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
                )
                sock.sendall(b"1" * (4 << 20))
            stop.wait(30)

    threads = [threading.Thread(target=hostile, args=(i % 3,)) for i in range(400)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # let them land (a wait for load, not for a result)
        peak = 0
        for _ in range(10):
            peak = max(peak, rss_kib(server.process.pid))
            with connect(server) as sock:
                sock.sendall(INFER.replace(b"HTTP/1.1", b"HTTP/1.0"))
                replies, _ = read_all(sock)
            assert [status for status, _, _ in replies.items] == [200]
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for sock in socks:
            sock.close()
    grown_mib = (peak - before) / 1024
    assert grown_mib < 32 + 48, f"grew {grown_mib:.0f} MiB under 400 hostile connections"


def test_sigterm_drain_ends_keep_alive_connections_after_their_response(
    logreg_path: Path, tmp_path: Path
) -> None:
    args = ("--model", str(logreg_path), "--name", "m", "--drain-seconds", "3")
    with serve(*args, log_dir=tmp_path) as s, connect(s) as sock:
        sock.sendall(INFER)
        sock.settimeout(10)
        assert sock.recv(1 << 16).startswith(b"HTTP/1.1 200")
        s.process.send_signal(signal.SIGTERM)
        s.wait_until("/v2/health/ready", 400, timeout=5)
        sock.sendall(INFER)  # the same keep-alive connection, while draining
        replies, closed = read_all(sock)
        assert s.process.wait(timeout=15) == 0
    ((status, headers, _),) = replies.items
    assert status == 200 and headers[b"connection"] == b"close" and closed

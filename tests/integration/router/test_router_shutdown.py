"""``serinus router`` as a real process on SIGTERM: it stops accepting, closes idle
connections, finishes what is in flight (at the backend, or still arriving from the
client), and exits 0."""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serve import router

pytestmark = pytest.mark.integration


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.8

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.delay)
        answer = json.dumps({"echo": body.decode()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def slow_backend() -> Iterator[str]:
    """A backend that takes ``_Slow.delay`` seconds per request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _read_until_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_sigterm_finishes_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    with slow_backend() as url:
        routes.write_text(
            json.dumps({"model": "m", "revisions": {"a": {"url": url, "weight": 100}}})
        )
        with router(routes, log_dir=tmp_path) as r:
            idle = socket.create_connection(("127.0.0.1", r.port))
            idle.sendall(b"GET /-/live HTTP/1.1\r\nHost: t\r\n\r\n")
            idle.settimeout(5)
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            body = b'{"inputs": []}'
            partial = socket.create_connection(("127.0.0.1", r.port))
            partial.sendall(
                b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body[:5]
            )
            at_backend: list[httpx.Response] = []
            inflight = threading.Thread(
                target=lambda: at_backend.append(
                    httpx.post(f"{r.url}/v2/models/m/infer", content=b'{"n": 1}', timeout=10)
                )
            )
            inflight.start()
            time.sleep(0.3)  # the request is now waiting on the backend

            r.process.send_signal(signal.SIGTERM)
            assert _read_until_closed(idle) == b""  # idle: closed at once
            deadline = time.monotonic() + 5
            while True:  # no new connections
                try:
                    socket.create_connection(("127.0.0.1", r.port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            partial.sendall(body[5:])  # a request still arriving is finished too
            late = _read_until_closed(partial)
            inflight.join(10)
            assert r.process.wait(timeout=10) == 0, r.logs()
            for sock in (idle, partial):
                sock.close()
    assert late.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in late
    assert late.endswith(b'{"echo": "{\\"inputs\\": []}"}')
    assert [response.status_code for response in at_backend] == [200]
    assert at_backend[0].json() == {"echo": '{"n": 1}'}

"""``bench/openloop.c``, the shadow bench's load generator, against a real HTTP server: it
sends what it is asked to, and a stall shows in every request that was due during it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).resolve().parents[3] / "bench" / "openloop.c"


@pytest.fixture(scope="module")
def openloop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the bench's load generator needs a C compiler"
    binary = tmp_path_factory.mktemp("openloop") / "openloop"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE), "-lm"],
                   check=True)  # fmt: skip
    return binary


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes
    delay = 0.0
    stall_at: float | None = None  # monotonic time after which one request stalls
    stall_for = 0.0
    seen = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        cls = type(self)
        cls.seen += 1
        pause = cls.delay
        if cls.stall_at is not None and time.monotonic() >= cls.stall_at:
            cls.stall_at = None
            pause += cls.stall_for
        time.sleep(pause)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def server(*, delay: float = 0.0, stall_after: float | None = None, stall_for: float = 0.0
           ) -> Iterator[int]:  # fmt: skip
    handler = type("Handler", (_Handler,), {"delay": delay, "stall_for": stall_for, "seen": 0})
    if stall_after is not None:
        handler.stall_at = time.monotonic() + stall_after
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(binary: Path, port: int, tmp_path: Path, *args: str) -> list[tuple[int, int]]:
    body = tmp_path / "body.json"
    body.write_text('{"inputs": []}')
    out = tmp_path / "latencies"
    subprocess.run([str(binary), "127.0.0.1", str(port), "/infer", str(body), *args, str(out)],
                   check=True, timeout=60)  # fmt: skip
    return [(int(a), int(b)) for a, b in (line.split() for line in out.read_text().splitlines())]


def test_it_sends_the_requests_due_and_times_each_one(openloop: Path, tmp_path: Path) -> None:
    with server(delay=0.002) as port:
        # rate 200/s for 1 s after a 0.5 s warm-up, on 4 connections
        rows = run(openloop, port, tmp_path, "200", "1", "4", "0.5")
    assert len(rows) == 200
    assert all(status == 200 for _, status in rows)
    assert min(latency for latency, _ in rows) >= 2000  # µs: never less than the server took


def test_a_stall_shows_in_every_request_due_during_it(openloop: Path, tmp_path: Path) -> None:
    """One connection, one 300 ms stall: a closed loop would see one slow request; here
    the ~60 requests due meanwhile wait for it and count from when they were due."""
    with server(stall_after=0.5, stall_for=0.3) as port:
        rows = run(openloop, port, tmp_path, "200", "2", "1", "0")
    slow = [latency for latency, _ in rows if latency >= 50_000]
    assert len(rows) == 400
    assert 30 <= len(slow) <= 80  # due in the stall's first 250 ms: 50 expected
    assert max(slow) >= 250_000

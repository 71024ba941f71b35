"""A big file fetched in parts (``sources/parts.py``) from a real HTTP server on 127.0.0.1
that serves ranges the way S3 and most CDNs do: ``Accept-Ranges``, ``206``, ``ETag`` and
``If-Match``. The parts are small here so that a 1 MiB file has sixteen of them."""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import Limits
from serinus_serving.sources.http import HttpSource

pytestmark = pytest.mark.unit

DATA = bytes(range(256)) * 4096  # 1 MiB
PARTS = Limits(max_bytes=1 << 30, attempts=2, workers=4, part_bytes=64 << 10, parts_from=128 << 10)


@dataclass
class Served:
    data: bytes = DATA
    ranges: bool = True
    ranges_asked: list[str] = field(default_factory=list)
    fail_once: set[str] = field(default_factory=set)  # ranges answered 503 once
    replace_after: int | None = None  # range requests before the file changes
    extra: int = 0  # bytes sent beyond the range asked for
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:16] + '"'


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def do_GET(self) -> None:
        s = self.served
        asked = self.headers.get("range")
        if asked is None or not s.ranges:
            self._send(200, s.data, ranges=s.ranges)
            return
        with s.lock:
            s.ranges_asked.append(asked)
            if asked in s.fail_once:
                s.fail_once.discard(asked)
                self.send_error(503)
                return
            if s.replace_after is not None and len(s.ranges_asked) > s.replace_after:
                s.data = bytes(reversed(s.data))
        if self.headers.get("if-match") not in (None, s.etag):
            self.send_error(412)
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", asked)
        assert match is not None
        start, end = int(match[1]), int(match[2]) + 1
        self._send(206, s.data[start : end + s.extra], ranges=True)

    def _send(self, status: int, body: bytes, *, ranges: bool) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("etag", self.served.etag)
        if ranges:
            self.send_header("accept-ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served() -> Iterator[tuple[str, Served]]:
    state = Served()
    handler = type("Handler", (_Handler,), {"served": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.onnx", state
    finally:
        server.shutdown()
        server.server_close()


def test_a_big_file_is_fetched_in_parts_and_is_the_same_file(
    served: tuple[str, Served], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri, state = served
    caplog.set_level(logging.INFO, logger="serinus_serving")
    fetched = HttpSource().fetch(uri, tmp_path, limits=PARTS)
    assert fetched.model.read_bytes() == DATA
    assert sorted(state.ranges_asked, key=lambda r: int(r[6:].split("-")[0])) == [
        f"bytes={start}-{start + (64 << 10) - 1}" for start in range(0, 1 << 20, 64 << 10)
    ]
    assert not list(tmp_path.glob("*.partial"))
    assert "fetched model.onnx: 1.0 of 1.0 MiB (100%)" in caplog.text


def test_a_small_file_or_a_server_without_ranges_is_streamed(
    served: tuple[str, Served], tmp_path: Path
) -> None:
    uri, state = served
    small = Limits(max_bytes=1 << 30, part_bytes=64 << 10, parts_from=2 << 20)
    assert HttpSource().fetch(uri, tmp_path / "a", limits=small).model.read_bytes() == DATA
    state.ranges = False
    assert HttpSource().fetch(uri, tmp_path / "b", limits=PARTS).model.read_bytes() == DATA
    assert state.ranges_asked == []


def test_a_part_that_fails_once_is_fetched_again_alone(
    served: tuple[str, Served], tmp_path: Path
) -> None:
    uri, state = served
    state.fail_once = {f"bytes={64 << 10}-{(128 << 10) - 1}"}
    assert HttpSource().fetch(uri, tmp_path, limits=PARTS).model.read_bytes() == DATA
    assert len(state.ranges_asked) == 17


def test_a_file_replaced_while_it_is_fetched_fails_the_fetch(
    served: tuple[str, Served], tmp_path: Path
) -> None:
    uri, state = served
    state.replace_after = 3
    with pytest.raises(ModelLoadError, match="changed while it was being fetched"):
        HttpSource().fetch(uri, tmp_path, limits=PARTS)
    assert list(tmp_path.iterdir()) == [], "nothing half-written is left"


def test_a_store_that_sends_more_than_asked_fails_the_fetch(
    served: tuple[str, Served], tmp_path: Path
) -> None:
    uri, state = served
    state.extra = 10
    with pytest.raises(ModelLoadError, match="sent more than bytes"):
        HttpSource().fetch(uri, tmp_path, limits=PARTS)
    assert list(tmp_path.iterdir()) == []


def test_the_size_limit_holds_before_any_part_is_asked_for(
    served: tuple[str, Served], tmp_path: Path
) -> None:
    uri, state = served
    limits = Limits(max_bytes=512 << 10, workers=4, part_bytes=64 << 10, parts_from=128 << 10)
    with pytest.raises(ModelLoadError, match="over the limit"):
        HttpSource().fetch(uri, tmp_path, limits=limits)
    assert state.ranges_asked == []

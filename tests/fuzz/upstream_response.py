"""Fuzz the router's parser of backend responses, ``serinus_serving.router.upstream``.

One input is what a backend sends back on one keep-alive connection: ``_Connection`` (an
asyncio ``Protocol`` on httptools' response parser) on an in-memory transport, with an
exchange pending, fed the input's byte stream in the chunks the input chooses (see
``harness.splits``); then the backend closes the connection. The input's first byte:

====  =================================================================================
bit   when set
====  =================================================================================
1     the request was a HEAD (a response to it has no body, whatever it says)
2     the pool reuses the connection: once an exchange is answered and the connection
      is still keep-alive, the next exchange starts on it (up to 4 in all)
4     the loop runs between chunks (otherwise chunks arrive back to back)
====  =================================================================================

Checked for every exchange: it ends once the input and ``connection_lost`` are delivered
(it never hangs); it ends with an ``UpstreamResponse`` or fails with ``UpstreamError`` or
``_Lost``, never another exception, and nothing is logged as an error; an answer is a final
response with a valid status, 200 to 599 (a ``1xx`` is not the answer to the request, and
RFC 9110 §15 has a client treat a status outside 100 to 599 as a 5xx, which for the router
is an ``UpstreamError``); its body is within ``MAX_BODY`` (empty for HEAD), and it does not
change after it was handed over (a backend's later bytes must not edit it). The parser's
allocations (tracemalloc's peak) stay within ``64 * len(input) + BASELINE``.

Run: ``python tests/fuzz/upstream_response.py [libFuzzer flags] NEW_DIR
tests/fuzz/corpus/upstream_response`` (or ``make fuzz``; docs/testing.md).
"""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from collections.abc import Iterator

import atheris
import harness
from harness import FakeTransport, frame, settle

with atheris.instrument_imports(include=["serinus_serving"]):
    from serinus_serving.router import upstream
    from serinus_serving.router.upstream import UpstreamError

MAX_BODY = 1024
MAX_HEAD = 1024
MAX_EXCHANGES = 4
PER_BYTE = 64
#: The fixed part: the exchange's task and future, the parser's exceptions and messages.
#: Measured on every seed, each first in a fresh process: at most 10 KiB.
BASELINE = 256 << 10
REQUEST = b"POST /v2/models/m/infer HTTP/1.1\r\nhost: b:8080\r\ncontent-length: 0\r\n\r\n"

LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
PROBLEMS = harness.Problems()
PROBLEMS.attach(LOOP, "serinus_serving")
tracemalloc.start()


class Spied(upstream._Connection):
    """Keeps a copy of each answer as it is handed over (the parser may go on parsing in
    the same ``feed_data`` call, before the router reads the answer)."""

    def __init__(self) -> None:
        super().__init__(MAX_BODY, MAX_HEAD)
        self.handed: dict[int, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    def on_message_complete(self) -> None:
        waiter = self._waiter
        pending = waiter is not None and not waiter.done()
        super().on_message_complete()
        if pending and waiter is not None and waiter.done() and waiter.exception() is None:
            response = waiter.result()
            self.handed[id(response)] = (response.status, list(response.headers), response.body)


class Exchange:
    """One request on the connection."""

    def __init__(self, conn: Spied, head: bool) -> None:
        self.conn = conn
        self.head = head
        self.task = LOOP.create_task(conn.exchange(REQUEST, head=head))

    def check(self) -> None:
        assert self.task.done(), "the exchange never ended"
        exc = self.task.exception()
        if exc is not None:
            if not isinstance(exc, UpstreamError | upstream._Lost):
                raise AssertionError(f"the exchange failed with {exc!r}") from exc
            return
        response = self.task.result()
        assert 200 <= response.status <= 599, f"answered with a {response.status}"
        assert len(response.body) <= MAX_BODY, f"a body of {len(response.body)} bytes"
        assert not self.head or not response.body, "a body in the answer to HEAD"
        now = (response.status, list(response.headers), response.body)
        handed = self.conn.handed.get(id(response))
        assert now == handed, f"the answer changed after it was handed over: {handed} -> {now}"


def drive(data: bytes) -> None:
    flags, chunks = harness.splits(data)
    LOOP.run_until_complete(_drive(flags, chunks))
    settle(LOOP)


async def _drive(flags: int, chunks: Iterator[bytes]) -> None:
    conn = Spied()
    transport = FakeTransport(LOOP, conn)
    conn.connection_made(transport)
    exchanges = [Exchange(conn, head=bool(flags & 1))]
    await asyncio.sleep(0)  # the request is written; the backend answers
    for chunk in chunks:
        if transport.closed:
            break  # nothing is delivered to a closed transport
        conn.data_received(chunk)
        if flags & 4:
            await asyncio.sleep(0)
        if flags & 2 and len(exchanges) < MAX_EXCHANGES:
            await asyncio.sleep(0)
            if exchanges[-1].task.done() and not conn.closed and conn.keep_alive:
                exchanges.append(Exchange(conn, head=bool(flags & 1)))
                await asyncio.sleep(0)
    if not transport.lost:
        transport.close()  # the backend closes the connection
        transport._lose()
    for _ in range(3):
        await asyncio.sleep(0)
    for exchange in exchanges:
        exchange.check()
    PROBLEMS.check()


def test_one_input(data: bytes) -> None:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    drive(data)
    peak = tracemalloc.get_traced_memory()[1] - before
    budget = PER_BYTE * len(data) + BASELINE
    if peak > budget:
        raise AssertionError(f"{len(data)} bytes of response took {peak} bytes (budget {budget})")


def _resp(status: str, *headers: str, body: bytes = b"", length: bool = True) -> bytes:
    head = [f"HTTP/1.1 {status}", *headers]
    if length:
        head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def seeds() -> dict[str, bytes]:
    """The hand-made seed corpus (``--write-seeds DIR``)."""
    ok = _resp("200 OK", "content-type: application/json", body=b'{"outputs":[]}')
    chunked = (
        _resp("200 OK", "transfer-encoding: chunked", length=False)
        + b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    return {
        "ok": frame(0, ok),
        "ok-byte-by-byte": frame(4, ok, (1,)),
        "ok-split-head-body": frame(0, ok, (len(ok) - 14,)),
        "error-json": frame(0, _resp("422 Unprocessable Entity", body=b'{"error":"bad input"}')),
        "server-error": frame(0, _resp("503 Service Unavailable", "retry-after: 1")),
        "no-content": frame(0, _resp("204 No Content", length=False)),
        "chunked": frame(0, chunked),
        "chunked-split": frame(4, chunked, (3, 11)),
        "read-until-close": frame(0, _resp("200 OK", length=False) + b"body until EOF"),
        "connection-close": frame(0, _resp("200 OK", "connection: close", body=b"x")),
        "http10": frame(0, b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        "head": frame(
            1,
            _resp("200 OK", "content-type: application/json").replace(
                b"content-length: 0", b"content-length: 42"
            ),
        ),
        "body-over-limit": frame(0, _resp("200 OK", body=b"x" * 1100)),
        "chunked-over-limit": frame(
            0,
            _resp("200 OK", "transfer-encoding: chunked", length=False) + b"800\r\n" + b"x" * 1100,
        ),
        "head-over-limit": frame(0, _resp("200 OK", "x-big: " + "a" * 1100)),
        "head-never-ends": frame(0, b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 1100, (200,)),
        "truncated-body": frame(0, _resp("200 OK", body=b"0123456789")[:-4]),
        "truncated-head": frame(0, b"HTTP/1.1 200 OK\r\ncontent-le"),
        "empty": frame(0, b""),
        "garbage": frame(0, b"SSH-2.0-OpenSSH_9.6\r\n"),
        "bad-content-length": frame(0, b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"),
        "reuse-split": frame(2 | 4, ok + ok, (len(ok),)),
        "continue-then-ok": frame(0, b"HTTP/1.1 100 Continue\r\n\r\n" + ok),
        "early-hints-then-ok": frame(0, b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok),
        "extra-bytes-after-response": frame(0, ok + b"HTTP/1.1 200 OK\r\nx-late: 1\r\n"),
        # Found by this target: what followed a response changed its headers; a status
        # outside 100-599 was passed on.
        "second-response-edits-first": frame(
            0, ok + b"HTTP/1.1 500 Oops\r\nx-injected: 1\r\ncontent-length: 0\r\n\r\n"
        ),
        "head-with-chunked-trailer": frame(1, chunked),
        "status-002": frame(0, b"HTTP/1.1 002 OK\r\ncontent-length: 0\r\n\r\n"),
        "status-999": frame(0, b"HTTP/1.1 999 Nope\r\ncontent-length: 0\r\n\r\n"),
    }


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
    sys.exit(0)

"""Fuzz the request side of ``serinus_serving.http1``, the HTTP/1.1 server of both
``serinus router`` and ``serinus serve``.

One input is one client connection: ``http1._Connection`` on an in-memory transport under
an asyncio loop, fed the input's byte stream in the chunks the input chooses (see
``harness.splits``), answered by a trivial handler. The input's option bits (its first
byte, and the high bits of the second) choose how the client and the server behave:

====  =================================================================================
bit   when set
====  =================================================================================
1     the client half-closes after its last byte (``eof_received``)
2     the client reads slowly: every write fills the transport's buffer until the next
      loop iteration (``pause_writing`` / ``resume_writing``)
4     the handler yields to the loop before it answers (requests pile up behind it)
8     at most 2 pipelined requests are queued before reading pauses (16 otherwise)
16    the server starts shutting down after the first chunk
32    the client stalls after the first chunk, past the read timeout (``check`` runs)
64    the loop runs between chunks (otherwise chunks arrive back to back; reading that
      the server paused is always honoured)
256   the server drains after the first chunk (``drain()``: each response closes its
      connection)
512   request memory is tight: ``max_buffered`` at its floor (``max_body + max_head``),
      so a ``503`` from the server shedding load is an answer, not a finding
====  =================================================================================

Checked for every input: no exception escapes the protocol, nothing is logged as an error;
what the server wrote parses as a sequence of well-formed HTTP/1.1 responses (status line,
``name: value`` headers, a ``content-length`` that matches the body, none for 204 and
HEAD bodies left out); no status is 5xx (a 500 is the server's own bug); the server's own
answers (4xx) are a JSON ``{"error": "..."}`` with ``connection: close`` and are the last
thing written; the handler's answers come in request order, one per request; and once the
client goes quiet the connection is closed or closing.

Run: ``python tests/fuzz/http1_request.py [libFuzzer flags] NEW_DIR
tests/fuzz/corpus/http1_request`` (or ``make fuzz``; docs/testing.md).
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass

import atheris
import harness
import orjson
from harness import FakeTransport, frame, settle

with atheris.instrument_imports(include=["serinus_serving"]):
    from serinus_serving import http1
    from serinus_serving.http1 import HttpServer, Request, Response

MAX_BODY = 1024
MAX_HEAD = 1024

_STATUS = re.compile(rb"HTTP/1\.1 ([1-9][0-9][0-9]) ([^\r\n]*)\r\n")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ([\t\x20-\x7e\x80-\xff]*)\r\n")

LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
PROBLEMS = harness.Problems()
PROBLEMS.attach(LOOP, "serinus_serving")


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def seq(self) -> int | None:
        raw = self.headers.get(b"x-seq")
        return None if raw is None else int(raw)


class Echo:
    """The trivial handler: answers each request with its sequence number (``x-seq``)."""

    def __init__(self, slow: bool) -> None:
        self.slow = slow
        self.seen: list[Request] = []
        self.wrong: list[str] = []

    async def __call__(self, request: Request) -> Response:
        seq = len(self.seen)
        self.seen.append(request)
        if len(request.body) > MAX_BODY:
            self.wrong.append(f"a body of {len(request.body)} bytes reached the handler")
        if any(name != name.lower() for name, _ in request.headers):
            self.wrong.append(f"header names not lower-cased: {request.headers!r}")
        if self.slow:
            for _ in range(seq % 3 + 1):
                await asyncio.sleep(0)
        status = 204 if request.path == "/204" else 200
        body = orjson.dumps({"seq": seq, "path": request.path, "size": len(request.body)})
        return Response(status, [http1.JSON, (b"x-seq", b"%d" % seq)], body)


def parse_replies(out: bytes, requests: list[Request]) -> list[Reply]:
    """Every response in ``out``, strictly: anything that is not a well-formed response
    is an AssertionError."""
    replies: list[Reply] = []
    at = 0
    while at < len(out):
        end = out.find(b"\r\n\r\n", at)
        assert end >= 0, f"incomplete response head: {out[at : at + 300]!r}"
        head = out[at : end + 2]
        status_line = _STATUS.match(head)
        assert status_line, f"bad status line: {head[:100]!r}"
        headers: dict[bytes, bytes] = {}
        pos = status_line.end()
        while pos < len(head):
            line = _HEADER.match(head, pos)
            assert line, f"bad header line: {head[pos : pos + 100]!r}"
            name = line[1].lower()
            assert name not in headers, f"header {name!r} twice in {head!r}"
            headers[name] = line[2]
            pos = line.end()
        at = end + 4
        status = int(status_line[1])
        reply = Reply(status, headers, b"")
        if status < 200:
            assert status == 100 and not headers, f"unexpected interim response {head!r}"
        elif status in (204, 304):
            assert b"content-length" not in headers, f"{status} with a content-length"
        else:
            raw = headers.get(b"content-length")
            assert raw is not None and raw.isdigit(), f"no valid content-length: {head!r}"
            seq = reply.seq
            to_head = seq is not None and requests[seq].method == b"HEAD"
            if not to_head:
                reply.body = out[at : at + int(raw)]
                assert len(reply.body) == int(raw), f"body shorter than content-length {raw!r}"
                at += int(raw)
        replies.append(reply)
    return replies


def check_replies(
    replies: list[Reply], handler: Echo, transport: FakeTransport, *, shedding: bool
) -> None:
    finals = [r for r in replies if r.status >= 200]
    for reply in finals:
        shed = shedding and reply.status == 503 and reply.seq is None
        assert reply.status < 500 or shed, f"answered {reply.status}: {reply.body!r}"
        if reply.seq is None:  # the server's own answer to a client mistake (or shedding)
            assert reply.headers.get(b"content-type") == b"application/json", reply.headers
            error = orjson.loads(reply.body)
            assert isinstance(error, dict) and isinstance(error.get("error"), str), reply.body
            assert reply.headers.get(b"connection") == b"close", reply.headers
        if reply.headers.get(b"connection") == b"close":
            assert reply is replies[-1], "wrote more after a connection: close response"
            assert transport.closed or transport.eof_written, "connection: close, but open"
    seqs = [r.seq for r in finals if r.seq is not None]
    assert seqs == list(range(len(seqs))), f"responses out of request order: {seqs}"
    closed = any(r.headers.get(b"connection") == b"close" for r in finals)
    if not closed:
        assert len(seqs) == len(handler.seen), (
            f"{len(handler.seen)} requests handled, {len(seqs)} answered"
        )


def drive(data: bytes) -> None:
    flags, chunks = harness.splits(data)
    handler = Echo(slow=bool(flags & 4))
    server = HttpServer(
        handler,
        max_body=MAX_BODY,
        max_head=MAX_HEAD,
        max_pipeline=2 if flags & 8 else 16,
        max_buffered=0 if flags & 512 else 96 << 20,  # 0: raised to its floor
    )
    server.loop = LOOP
    conn = http1._Connection(server)
    transport = FakeTransport(LOOP, conn, pause_writes=bool(flags & 2))
    conn.connection_made(transport)
    for n, chunk in enumerate(chunks):
        if transport.closed:
            break  # nothing is delivered to a closed transport
        if not transport.reading:
            settle(LOOP)  # the server answers what it has, then reads on
            assert transport.reading or transport.closed, "reading paused and never resumed"
            if transport.closed:
                break
        conn.data_received(chunk)
        if n == 0 and flags & 16:
            server.closing = True
        if n == 0 and flags & 256:
            server.drain()
        if n == 0 and flags & 32:
            settle(LOOP)
            server.now += server.read_timeout + 1
            conn.check(server.now)
        if flags & 64:
            settle(LOOP)
    if flags & 1 and not transport.closed and not conn.eof_received():
        transport.close()  # what asyncio does when eof_received() returns false
    settle(LOOP)
    for _ in range(2):  # the client goes quiet: the server's once-a-second tick, much later
        server.now += server.keep_alive_timeout + server.read_timeout
        conn.check(server.now)
        settle(LOOP)
    assert transport.closed or transport.eof_written, "the connection was left open"
    transport._lose()  # the peer goes (or the linger timer fires)
    settle(LOOP)
    assert conn.task is None and not server.connections
    # What the server counts across connections returns to zero with the connection.
    for counter in ("buffered", "arriving"):
        assert getattr(server, counter, 0) == 0, f"server.{counter} is {getattr(server, counter)}"
    PROBLEMS.check()
    assert not handler.wrong, handler.wrong
    replies = parse_replies(transport.output(), handler.seen)
    check_replies(replies, handler, transport, shedding=bool(flags & 512))


def test_one_input(data: bytes) -> None:
    drive(data)


def _req(method: str, target: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    head = [f"{method} {target} HTTP/{version}", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailer + b"\r\n"


def seeds() -> dict[str, bytes]:
    """The hand-made seed corpus (``--write-seeds DIR``)."""
    infer = b'{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'
    get = _req("GET", "/v2/health/ready", "Host: r")
    post = _req(
        "POST", "/v2/models/m/infer", "Host: r", "Content-Type: application/json", body=infer
    )
    te = ("Host: r", "Transfer-Encoding: chunked")
    chunked = _req("POST", "/v2/models/m/infer", *te) + _chunked(infer[:20], infer[20:])
    return {
        "get": frame(0, get),
        "get-byte-by-byte": frame(0, get, (1,)),
        "post-json": frame(0, post),
        "post-split-head-body": frame(0, post, (len(post) - len(infer),)),
        "pipelined-3": frame(0, get + post + get),
        "pipelined-uneven-splits": frame(64, get + post + get, (5, 17, 3)),
        "pipelined-slow-handler-slow-reader": frame(2 | 4, get + post + get + post),
        "pipelined-20-small-queue": frame(4 | 8, get * 20),
        "chunked": frame(0, chunked),
        "chunked-7-byte-splits": frame(64, chunked, (7,)),
        "chunked-trailer": frame(
            0, _req("POST", "/p", *te) + _chunked(b"ab", trailer=b"X-Checksum: 1\r\n")
        ),
        "chunked-extension": frame(0, _req("POST", "/p", *te) + b"2;ext=1\r\nab\r\n0\r\n\r\n"),
        "expect-continue": frame(
            64,
            _req("POST", "/p", "Host: r", "Expect: 100-continue", "Content-Length: 4") + b"body",
            (len(_req("POST", "/p", "Host: r", "Expect: 100-continue", "Content-Length: 4")),),
        ),
        "head": frame(0, _req("HEAD", "/v2/health/ready", "Host: r") + get),
        "status-204": frame(0, _req("GET", "/204", "Host: r") + get),
        "http10": frame(1, _req("GET", "/", version="1.0")),
        "http10-keep-alive": frame(
            0, _req("GET", "/", "Connection: keep-alive", version="1.0") * 2
        ),
        "connection-close-then-more": frame(0, _req("GET", "/", "Connection: close") + get),
        "half-close-after-pipeline": frame(1 | 4, get + post),
        "absolute-form-target": frame(0, _req("GET", "http://r:8080/v2/models?x=1", "Host: r")),
        "percent-encoded-path": frame(0, _req("GET", "/v2/models/a%2Fb%20c/ready?q=%41")),
        "options-asterisk": frame(0, _req("OPTIONS", "*", "Host: r")),
        "body-over-limit": frame(0, _req("POST", "/p", "Content-Length: 5000") + b"x" * 64),
        "chunked-over-limit": frame(0, _req("POST", "/p", *te) + _chunked(b"x" * 600, b"y" * 600)),
        "head-over-limit": frame(0, _req("GET", "/", "X-Big: " + "a" * 1100)),
        "head-never-ends": frame(0, b"GET / HTTP/1.1\r\nX: " + b"a" * 1100, (200,)),
        "malformed": frame(0, b"GARBAGE\r\n\r\n"),
        "bad-content-length": frame(0, _req("POST", "/p", "Content-Length: abc") + b"abc"),
        "content-length-and-chunked": frame(
            0, _req("POST", "/p", "Content-Length: 3", "Transfer-Encoding: chunked") + b"abc"
        ),
        "upgrade": frame(
            0, _req("GET", "/ws", "Connection: Upgrade", "Upgrade: websocket") + b"\x81\x00"
        ),
        "connect": frame(0, _req("CONNECT", "r:443", "Host: r:443")),
        "incomplete-then-eof": frame(1, post[:-5]),
        "incomplete-then-stall": frame(32, post[:-5]),
        "shutdown-while-pipelined": frame(16, get + get, (len(get),)),
        "drain-while-pipelined": frame(256, get + get, (len(get),)),
        "tight-memory-pipelined-posts": frame(4 | 512, _req("POST", "/p", body=b"x" * 700) * 4),
        "tight-memory-large-body": frame(
            512, _req("POST", "/p", "Content-Length: 1000") + b"x" * 1000, (256,)
        ),
        "many-headers": frame(0, _req("GET", "/", *(f"X-H{i}: v{i}" for i in range(30)))),
    }


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
    sys.exit(0)

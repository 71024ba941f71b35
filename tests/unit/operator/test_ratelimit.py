"""Client-side pacing: the token bucket's arithmetic, Retry-After parsing, and the real
client against a real HTTP server on 127.0.0.1 that answers 429 before it answers 200."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_operator.cli import build_parser
from serinus_operator.platforms.kubernetes import ApiError, Credentials, KubeClient
from serinus_operator.platforms.ratelimit import MAX_RETRY_AFTER, TokenBucket, retry_after

pytestmark = pytest.mark.unit


def test_the_worked_example() -> None:
    bucket = TokenBucket(qps=10, burst=2)
    assert [round(bucket.reserve(0.0), 3) for _ in range(4)] == [0.0, 0.0, 0.1, 0.2]


def test_tokens_come_back_at_qps_up_to_burst() -> None:
    bucket = TokenBucket(qps=10, burst=2)
    bucket.reserve(0.0)
    bucket.reserve(0.0)
    assert bucket.reserve(0.1) == 0.0  # one came back in 0.1 s
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) > 0  # never more than burst banked


@given(
    qps=st.floats(0.5, 1000),
    burst=st.integers(1, 200),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=300),
)
def test_no_window_sends_more_than_burst_plus_qps_times_its_length(
    qps: float, burst: int, gaps: list[float]
) -> None:
    bucket, now, sent = TokenBucket(qps=qps, burst=burst), 0.0, []
    for gap in gaps:
        now += gap
        sent.append(now + bucket.reserve(now))
    start = sent[0]
    for i, t in enumerate(sent):
        assert i + 1 <= burst + (t - start) * qps + 1e-6


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), (None, 1.0), ("soon", 1.0), ("-3", 1.0), ("nan", 1.0),
     ("3600", MAX_RETRY_AFTER), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0)],
)  # fmt: skip
def test_retry_after(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


def test_the_flags_refuse_nonsense() -> None:
    parser = build_parser("serinus")
    for bad in (["--kube-api-qps", "0"], ["--kube-api-qps", "-1"], ["--kube-api-burst", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["operator", *bad])
    args = parser.parse_args(["operator", "--kube-api-qps", "5", "--kube-api-burst", "7"])
    assert (args.kube_api_qps, args.kube_api_burst) == (5.0, 7)


class _Busy(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 0.05) to the first ``busy`` requests, then 200."""

    busy = 0
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        if type(self).seen <= type(self).busy:
            self.send_response(429)
            self.send_header("Retry-After", "0.05")
            body = b'{"message": "too many requests"}'
        else:
            self.send_response(200)
            body = json.dumps({"seen": type(self).seen}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, busy: int) -> object:
    _Busy.busy, _Busy.seen = busy, 0

    async def go() -> object:
        client = KubeClient(Credentials(server=url), limiter=TokenBucket(qps=100, burst=5))
        try:
            return await client.get("/api/v1/namespaces/ml/configmaps/x")
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_429_is_retried_after_its_retry_after(busy_server: str) -> None:
    assert _get(busy_server, busy=2) == {"seen": 3}


def test_a_server_that_stays_busy_is_an_error_after_three_retries(busy_server: str) -> None:
    with pytest.raises(ApiError) as err:
        _get(busy_server, busy=10)
    assert err.value.status == 429
    assert _Busy.seen == 4

"""Analysis against a real Prometheus scraping an exporter that behaves as a good and then
a bad candidate would; and the provider against degenerate HTTP answers."""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram

from serinus_operator.analysis.providers.prometheus import PrometheusConfig, PrometheusProvider
from serinus_operator.analysis.run import measure, variables_for
from serinus_operator.analysis.templates import BUILTIN, render
from serinus_operator.analysis.verdict import Verdict, combine
from serinus_operator.api import AnalysisSpec, MetricSpec
from serinus_serving.metrics import LATENCY_BUCKETS
from support.exporter import exported
from support.prometheus import prometheus
from support.serve import free_port

pytestmark = pytest.mark.integration

INTERVAL = timedelta(seconds=5)
VARS = {"namespace": "ml", "name": "fraud", "stable": "v1", "candidate": "v2"}


class Candidate:
    """Emits, 50 times a second, what serinus serve and the router export for a candidate:
    good (no errors, 2 ms, always agreeing) or bad (20% errors, 800 ms, agreeing 80%)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "serinus_requests", "", ["model", "version", "revision", "protocol", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "serinus_request_duration_seconds", "", ["model", "version", "revision", "protocol"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.shadow = Counter(
            "serinus_shadow_requests", "", ["model", "primary", "shadow", "result"],
            registry=self.registry,
        )  # fmt: skip
        self.bad = False
        self.stop = threading.Event()
        self.tick = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.tick += 1
            failing = self.bad and self.tick % 5 == 0
            outcome = "server_error" if failing else "success"
            self.requests.labels("fraud", "2", "v2", "v2", outcome).inc()
            self.latency.labels("fraud", "2", "v2", "v2").observe(0.8 if self.bad else 0.002)
            agree = not (self.bad and self.tick % 5 == 1)
            self.shadow.labels("fraud", "v1", "v2", "agree" if agree else "disagree").inc()
            time.sleep(0.02)


@pytest.fixture
def candidate() -> Iterator[tuple[Candidate, str]]:
    source = Candidate()
    with exported(source) as target:
        yield source, target


def test_good_then_bad_candidate_pass_then_fail(
    candidate: tuple[Candidate, str], tmp_path: Path
) -> None:
    source, target = candidate
    spec = AnalysisSpec(
        metrics=(
            MetricSpec("error-rate", max=0.01),
            MetricSpec("latency-p99", max=0.25),
            MetricSpec("agreement", min=0.97),
        ),
        interval=INTERVAL,
    )
    variables = variables_for(
        namespace="ml", name="fraud", stable="v1", candidate="v2", analysis=spec
    )

    async def scenario(url: str) -> tuple[list[str], float, list[str]]:
        provider = PrometheusProvider(PrometheusConfig(url))
        try:
            good: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # first scrapes take a few seconds
                m = await measure(spec, provider, variables=variables, at=datetime.now(UTC))
                good = [f"{r.name}={r.verdict}:{r.message}" for r in m.results]
                if combine(r.verdict for r in m.results) is Verdict.PASS:
                    assert m.requests is not None and m.requests > 20
                    break
                await asyncio.sleep(1)
            else:
                raise AssertionError(f"the good candidate never passed: {good}")
            source.bad = True
            switched = time.monotonic()
            while True:
                m = await measure(spec, provider, variables=variables, at=datetime.now(UTC))
                if combine(r.verdict for r in m.results) is Verdict.FAIL:
                    failed = [r.name for r in m.results if r.verdict is Verdict.FAIL]
                    return good, time.monotonic() - switched, failed
                assert time.monotonic() - switched < 3 * INTERVAL.total_seconds(), m.results
                await asyncio.sleep(1)
        finally:
            await provider.aclose()

    with prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom:
        _good, took, failed = asyncio.run(scenario(prom.url))
    assert took < 3 * INTERVAL.total_seconds()
    assert "error-rate" in failed or "latency-p99" in failed or "agreement" in failed


def test_prometheus_down_is_inconclusive_within_the_deadline() -> None:
    spec = AnalysisSpec(metrics=(MetricSpec("error-rate"),), interval=timedelta(seconds=2))
    provider = PrometheusProvider(PrometheusConfig(f"http://127.0.0.1:{free_port()}"))
    variables = {**VARS, "interval": "2s"}

    async def run() -> tuple[float, object]:
        started = time.monotonic()
        try:
            m = await measure(spec, provider, variables=variables, at=datetime.now(UTC))
        finally:
            await provider.aclose()
        return time.monotonic() - started, m

    took, m = asyncio.run(run())
    assert took <= 2.0  # never outlasts the interval
    (result,) = m.results  # type: ignore[attr-defined]
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "Prometheus unavailable" in result.message
    assert m.requests is None  # type: ignore[attr-defined]


class _Crafted(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, object]] = []
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("authorization", ""))
        status, body = self.answers.pop(0) if self.answers else (200, {"status": "success"})
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crafted() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Crafted)
    _Crafted.answers, _Crafted.seen_auth = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _vector(*values: str) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [0, v]} for v in values],
        },
    }


@pytest.mark.parametrize(
    ("answers", "values", "error"),
    [
        ([(200, _vector("0.5"))], (0.5,), None),
        ([(503, b"busy"), (500, b"oops"), (200, _vector("1"))], (1.0,), None),  # retried
        ([(200, _vector("NaN", "+Inf"))], None, None),
        (
            [(200, {"status": "success", "data": {"resultType": "scalar", "result": [0, "2"]}})],
            (2.0,),
            None,
        ),
        (
            [(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})],
            None,
            "refused the query: bad_data",
        ),
        (
            [(200, {"status": "success", "data": {"resultType": "matrix", "result": []}})],
            None,
            "vector or scalar",
        ),
        ([(200, b"<html>")], None, "not JSON"),
    ],
)
def test_provider_decodes_every_answer(
    crafted: str,
    answers: list[tuple[int, object]],
    values: tuple[float, ...] | None,
    error: str | None,
) -> None:
    _Crafted.answers = list(answers)
    provider = PrometheusProvider(PrometheusConfig(crafted))

    async def run() -> object:
        try:
            return await provider.query("up", deadline_seconds=5)
        finally:
            await provider.aclose()

    result = asyncio.run(run())
    if error is None:
        assert result.error is None  # type: ignore[attr-defined]
        if values is not None:
            assert result.values == values  # type: ignore[attr-defined]
    else:
        assert error in result.error  # type: ignore[attr-defined]


def test_bearer_token_file_is_reread_when_it_changes(crafted: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    provider = PrometheusProvider(PrometheusConfig(crafted, bearer_token_file=token))

    async def run() -> None:
        try:
            await provider.query("up", deadline_seconds=2)
            await asyncio.sleep(0.01)
            token.write_text("second-and-longer\n")
            await provider.query("up", deadline_seconds=2)
        finally:
            await provider.aclose()

    asyncio.run(run())
    assert _Crafted.seen_auth == ["Bearer first", "Bearer second-and-longer"]


def test_every_builtin_query_parses_in_promtool(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "serinus-builtins",
                "rules": [
                    {
                        "record": f"serinus:check:{name.replace('-', '_')}",
                        "expr": render(c.query, {**VARS, "interval": "30s"}),
                    }
                    for name, c in BUILTIN.items()
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

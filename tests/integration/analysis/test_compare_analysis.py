"""Compare-to-baseline checks against a real Prometheus: the exporter counts what serinus
serve and the router export for a stable and a candidate revision, and the check judges
the candidate against the stable on counts cumulated since the analysis started
(``{{ since }}``), with the sequential test of analysis/sequential.py."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from serinus_operator.analysis.providers.prometheus import PrometheusConfig, PrometheusProvider
from serinus_operator.analysis.run import measure, variables_for
from serinus_operator.analysis.templates import STABLE_LATENCY_BEFORE, render
from serinus_operator.analysis.verdict import MetricResult, Verdict
from serinus_operator.api import AnalysisSpec, CompareSpec, MetricSpec
from support.exporter import exported
from support.prometheus import prometheus

pytestmark = pytest.mark.integration


class Pair:
    """200 requests a second each for stable (v1) and candidate (v2), with the given error
    shares; labelled answers (correct/labelled) and the router's paired cells too."""

    def __init__(
        self, *, stable_errors: float, candidate_errors: float, outcome: str = "server_error"
    ) -> None:
        self.outcome = outcome
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "serinus_requests", "", ["model", "revision", "outcome"], registry=self.registry
        )
        self.paired = Counter(
            "serinus_feedback_paired", "", ["model", "primary", "shadow", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = {"v1": stable_errors, "v2": candidate_errors}
        self.stop = threading.Event()
        self.random = random.Random(7)

    def run(self) -> None:
        while not self.stop.is_set():
            for revision, share in self.errors.items():
                failed = sum(self.random.random() < share for _ in range(20))
                self.requests.labels("fraud", revision, self.outcome).inc(failed)
                self.requests.labels("fraud", revision, "success").inc(20 - failed)
            # A shadow that is right exactly when the stable is, but 30% more often wrong
            # alone: clearly worse on the same labelled requests.
            cells = {"both_right": 14, "only_primary_right": 4, "only_shadow_right": 1}
            for outcome, count in cells.items():
                self.paired.labels("fraud", "v1", "v2", outcome).inc(count)
            time.sleep(0.1)


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Pair, str]]:
    stable, candidate, *outcome = request.param
    source = Pair(
        stable_errors=stable, candidate_errors=candidate, outcome=(outcome or ["server_error"])[0]
    )
    with exported(source) as target:
        yield source, target


def _until_decided(
    url: str,
    spec: AnalysisSpec,
    *,
    paired: bool = False,
    timeout: float = 40,
    started: datetime | None = None,
) -> list[MetricResult]:
    started = started or datetime.now(UTC)

    async def run() -> list[MetricResult]:
        provider = PrometheusProvider(PrometheusConfig(url))
        seen: list[MetricResult] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                now = datetime.now(UTC)
                variables = variables_for(
                    namespace="ml", name="fraud", stable="v1", candidate="v2",
                    analysis=spec, since=now - started + timedelta(seconds=30),
                    started_at=started,
                )  # fmt: skip
                m = await measure(spec, provider, variables=variables, at=now, paired=paired)
                seen.extend(m.results)
                if m.results[0].verdict in (Verdict.PASS, Verdict.FAIL):
                    return seen
                await asyncio.sleep(1)
            return seen
        finally:
            await provider.aclose()

    return asyncio.run(run())


def _error_rate(margin: float) -> AnalysisSpec:
    compare = CompareSpec(max_degradation=margin, confidence=0.95, min_samples=200)
    return AnalysisSpec(metrics=(MetricSpec("error-rate", compare=compare),))


@pytest.mark.parametrize("pair", [(0.01, 0.20)], indirect=True)
def test_a_candidate_much_worse_than_stable_fails_with_its_numbers(
    pair: tuple[Pair, str], tmp_path: Path
) -> None:
    _source, target = pair
    with prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom:
        seen = _until_decided(prom.url, _error_rate(0.01))
    last = seen[-1]
    assert last.verdict == Verdict.FAIL, [r.message for r in seen]
    assert last.value is not None and last.value > 0.1
    assert last.baseline is not None and last.baseline < 0.05
    assert last.samples is not None and last.samples >= 200
    assert last.p_value is not None and last.p_value < 0.05
    assert "always-valid interval" in last.message
    assert all(r.verdict == Verdict.INCONCLUSIVE for r in seen[:-1]), "nothing else first"


@pytest.mark.parametrize("pair", [(0.0, 0.0)], indirect=True)
def test_a_candidate_as_good_as_stable_passes_once_there_is_enough_evidence(
    pair: tuple[Pair, str], tmp_path: Path
) -> None:
    _source, target = pair
    with prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom:
        seen = _until_decided(prom.url, _error_rate(0.05))
    assert seen[-1].verdict == Verdict.PASS, [r.message for r in seen]
    early = [r for r in seen if r.samples is not None and r.samples < 200]
    assert all(r.verdict == Verdict.INCONCLUSIVE for r in early), "minSamples holds"


@pytest.mark.parametrize("pair", [(0.0, 0.0)], indirect=True)
def test_a_shadow_worse_on_the_same_labelled_requests_fails_the_paired_test(
    pair: tuple[Pair, str], tmp_path: Path
) -> None:
    _source, target = pair
    compare = CompareSpec(max_degradation=0.02, confidence=0.95, min_samples=100)
    spec = AnalysisSpec(metrics=(MetricSpec("accuracy", compare=compare),))
    with prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom:
        seen = _until_decided(prom.url, spec, paired=True)
    assert seen[-1].verdict == Verdict.FAIL, [r.message for r in seen]
    assert seen[-1].baseline is not None and seen[-1].value is not None
    assert seen[-1].value < seen[-1].baseline


class Latencies:
    """serinus serve's request-duration histogram for a stable (v1) and, once ``started``
    is set, a candidate (v2): 200 requests a second each, fast (20 ms) but for the given
    share of slow ones (200 ms)."""

    def __init__(self, *, stable_slow: float, candidate_slow: float) -> None:
        self.registry = CollectorRegistry()
        self.durations = Histogram(
            "serinus_request_duration_seconds", "", ["model", "revision"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=self.registry,
        )  # fmt: skip
        self.slow = {"v1": stable_slow, "v2": candidate_slow}
        self.started = threading.Event()
        self.stop = threading.Event()
        self.random = random.Random(11)

    def run(self) -> None:
        while not self.stop.is_set():
            for revision in ("v1", "v2") if self.started.is_set() else ("v1",):
                for _ in range(20):
                    slow = self.random.random() < self.slow[revision]
                    self.durations.labels("fraud", revision).observe(0.2 if slow else 0.02)
            time.sleep(0.1)


def _stable_history(url: str, *, requests: float) -> datetime:
    """Wait until Prometheus holds ``requests`` of the stable's before now; now, in whole
    seconds, as the analysis's start (what ``{{ start }}`` reads back)."""

    async def wait() -> datetime:
        provider = PrometheusProvider(PrometheusConfig(url))
        try:
            for _ in range(100):
                now = datetime.now(UTC).replace(microsecond=0)
                query = render(STABLE_LATENCY_BEFORE, {
                    "namespace": "ml", "name": "fraud", "stable": "v1",
                    "start": str(int(now.timestamp())),
                })  # fmt: skip
                answer = await provider.query(query, deadline_seconds=5)
                pairs = zip(answer.values, answer.labels, strict=True)
                inf = [value for value, labels in pairs if labels.get("le") == "+Inf"]
                if inf and inf[0] >= requests:
                    return now
                await asyncio.sleep(0.3)
            raise AssertionError("Prometheus never held the stable's history")
        finally:
            await provider.aclose()

    return asyncio.run(wait())


@pytest.mark.parametrize(
    ("check", "candidate_slow", "threshold", "verdict"),
    [
        # The stable's p90 before the run is the 25 ms bucket (0.5% are slow), so 10% of the
        # candidate's requests above it is 9.5 points worse: rolled back.
        ("latency-p90", 0.10, None, Verdict.FAIL),
        # As slow as the stable, judged above a fixed 50 ms: promoted once there is evidence.
        ("latency-p99", 0.005, 0.05, Verdict.PASS),
    ],
)
def test_latency_is_judged_as_the_share_of_requests_slower_than_a_fixed_threshold(
    check: str, candidate_slow: float, threshold: float | None, verdict: Verdict, tmp_path: Path
) -> None:
    source = Latencies(stable_slow=0.005, candidate_slow=candidate_slow)
    compare = CompareSpec(max_degradation=0.02, min_samples=300, threshold_seconds=threshold)
    spec = AnalysisSpec(metrics=(MetricSpec(check, compare=compare),))
    with (
        exported(source) as target,
        prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom,
    ):
        started = _stable_history(prom.url, requests=300)
        source.started.set()
        seen = _until_decided(prom.url, spec, started=started)
    last = seen[-1]
    assert last.verdict == verdict, [r.message for r in seen]
    said = "0.05s:" if threshold else "0.025s (the stable's p90 before the run):"
    assert f"share slower than {said}" in last.message, last.message
    assert all(r.slower_than == (threshold or 0.025) for r in seen if r.samples), "kept"
    assert last.value is not None and last.baseline is not None and last.samples is not None
    assert last.baseline < 0.02 and last.samples >= 300
    if verdict == Verdict.FAIL:
        assert last.value > 0.05


@pytest.mark.parametrize("pair", [(0.02, 0.5, "client_error")], indirect=True)
def test_a_candidate_refusing_what_the_stable_accepts_fails_on_client_errors(
    pair: tuple[Pair, str], tmp_path: Path
) -> None:
    """A changed input signature: the candidate answers 400 to half the requests the stable
    serves. No 5xx, so error-rate sees nothing; client-error-rate against the stable fails."""
    _source, target = pair
    compare = CompareSpec(max_degradation=0.02, confidence=0.95, min_samples=200)
    spec = AnalysisSpec(metrics=(
        MetricSpec("client-error-rate", compare=compare),
        MetricSpec("error-rate", compare=compare),
    ))  # fmt: skip
    with prometheus([target], workdir=tmp_path, labels={"namespace": "ml"}) as prom:
        seen = _until_decided(prom.url, spec)
    client, server = seen[-2:]
    assert client.verdict == Verdict.FAIL, [r.message for r in seen]
    assert client.value is not None and client.value > 0.3
    assert server.verdict != Verdict.FAIL and server.value == 0, server.message

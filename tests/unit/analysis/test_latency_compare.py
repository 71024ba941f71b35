"""A latency check compared with the stable's, from the queries it sends to what it
decides when the answers cannot support a verdict. The provider here answers from a table
of histograms in Prometheus's shape (one series per ``le``); the real Prometheus path is
tests/integration/analysis/test_compare_analysis.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from serinus_operator.analysis.evaluate import QueryResult
from serinus_operator.analysis.run import measure
from serinus_operator.analysis.verdict import MetricResult, Verdict
from serinus_operator.api import AnalysisSpec, CompareSpec, MetricSpec

FAST = {0.025: 995.0, 0.25: 1000.0, math.inf: 1000.0}  # p99 within 25 ms
VARIABLES = {
    "namespace": "ml", "name": "fraud", "stable": "v1", "candidate": "v2",
    "interval": "30s", "since": "5m", "start": "1764931200",
}  # fmt: skip


class Histograms:
    """Answers a revision's histogram query with ``now[revision]``, and the stable's
    before-the-run query with ``before``; ``labels=False`` answers as a provider without
    labels (the webhook provider) does."""

    def __init__(
        self,
        now: Mapping[str, Mapping[float, float]],
        before: Mapping[float, float],
        *,
        labels: bool = True,
    ) -> None:
        self.now, self.before, self.labels = now, before, labels
        self.queries: list[str] = []

    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        self.queries.append(promql)
        if "serinus_requests_total" in promql:
            return QueryResult((2000.0,))
        revision = "v1" if 'revision="v1"' in promql else "v2"
        buckets = self.before if " @ " in promql else self.now[revision]
        les = [("+Inf" if le == math.inf else f"{le:g}") for le in buckets]
        return QueryResult(
            tuple(buckets.values()), labels=tuple({"le": le} for le in les) if self.labels else ()
        )

    async def is_online(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def _judge(provider: Histograms, compare: CompareSpec) -> MetricResult:
    spec = AnalysisSpec(metrics=(MetricSpec("latency-p99", compare=compare),))
    m = asyncio.run(measure(spec, provider, variables=VARIABLES, at=datetime.now(UTC)))
    return m.results[0]


SLOW = {0.025: 900.0, 0.25: 1000.0, math.inf: 1000.0}
DERIVED = CompareSpec(max_degradation=0.01, min_samples=100)


def test_the_threshold_is_the_stables_p99_bucket_read_at_the_start_of_the_run() -> None:
    provider = Histograms({"v1": FAST, "v2": SLOW}, before=FAST)
    result = _judge(provider, DERIVED)
    assert result.verdict == Verdict.FAIL, result.message
    assert (result.value, result.baseline) == (pytest.approx(0.1), pytest.approx(0.005))
    assert "share slower than 0.025s (the stable's p99 before the run)" in result.message
    [before] = [q for q in provider.queries if " @ " in q]
    assert before.endswith('revision="v1"}[1h] @ 1764931200))')


def test_the_threshold_an_earlier_look_chose_is_kept_whatever_prometheus_says_now() -> None:
    """The first look chooses the threshold and the status keeps it (``slowerThan``); a
    later look that gets it back asks nothing about the past, so a Prometheus whose answer
    for that hour changed (an HA replica, late remote writes) cannot move it."""
    first = _judge(Histograms({"v1": FAST, "v2": SLOW}, before=FAST), DERIVED)
    assert first.slower_than == 0.025
    later = Histograms({"v1": FAST, "v2": SLOW}, before={0.25: 1000.0, math.inf: 1000.0})
    spec = AnalysisSpec(metrics=(MetricSpec("latency-p99", compare=DERIVED),))
    m = asyncio.run(
        measure(spec, later, variables=VARIABLES, at=datetime.now(UTC),
                thresholds={"latency-p99": first.slower_than})
    )  # fmt: skip
    assert not [q for q in later.queries if " @ " in q]
    assert m.results[0].slower_than == 0.025
    assert "share slower than 0.025s" in m.results[0].message


def test_a_fixed_threshold_asks_nothing_about_the_past() -> None:
    provider = Histograms({"v1": FAST, "v2": FAST}, before={})
    result = _judge(provider, CompareSpec(max_degradation=0.02, threshold_seconds=0.25))
    assert result.verdict == Verdict.PASS, result.message
    assert not [q for q in provider.queries if " @ " in q]


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (
            Histograms({"v1": FAST, "v2": SLOW}, before={0.025: 10.0, math.inf: 10.0}),
            "the stable served 10 requests in the hour before",
        ),
        (  # minSamples is 100, but a p99 cannot be placed on fewer than 1,000
            Histograms({"v1": FAST, "v2": SLOW}, before={0.025: 999.0, math.inf: 999.0}),
            "fewer than the 1000 its p99 needs",
        ),
        (
            Histograms({"v1": FAST, "v2": {0.025: math.nan, 0.25: 5.0, math.inf: 9.0}}, FAST),
            "NaN bucket",
        ),
        (
            Histograms({"v1": FAST, "v2": SLOW}, before={0.25: 100.0, math.inf: 1000.0}),
            "above the largest histogram bucket",
        ),
        (Histograms({"v1": FAST, "v2": SLOW}, before=FAST, labels=False), "needs Prometheus"),
        (Histograms({"v1": FAST, "v2": {}}, before=FAST), "no data yet"),
        (
            Histograms({"v1": FAST, "v2": {0.025: 9.0, 0.25: 5.0, math.inf: 9.0}}, before=FAST),
            "not cumulative",
        ),
    ],
    ids=[
        "no-stable-history",
        "too-few-for-a-p99",
        "nan-bucket",
        "p99-past-last-bucket",
        "no-labels",
        "no-series",
        "not-a-histogram",
    ],
)
def test_answers_that_cannot_support_a_verdict_are_inconclusive_with_the_reason(
    provider: Histograms, message: str
) -> None:
    result = _judge(provider, DERIVED)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert message in result.message


def test_a_missing_start_costs_only_the_check_that_reads_the_past() -> None:
    spec = AnalysisSpec(metrics=(
        MetricSpec("latency-p99", compare=DERIVED),
        MetricSpec("latency-p50", compare=CompareSpec(max_degradation=0.05, threshold_seconds=1)),
    ))  # fmt: skip
    provider = Histograms({"v1": FAST, "v2": SLOW}, before=FAST)
    without_start = {k: v for k, v in VARIABLES.items() if k != "start"}
    m = asyncio.run(measure(spec, provider, variables=without_start, at=datetime.now(UTC)))
    derived, fixed = m.results
    assert derived.verdict == Verdict.INCONCLUSIVE and "{{ start }}" in derived.message
    assert fixed.verdict == Verdict.PASS, fixed.message


def test_a_bound_written_two_ways_is_one_bucket() -> None:
    """Prometheus 3 writes ``le="1.0"`` where 2.x wrote ``le="1"``: across an upgrade the
    same bucket comes back as two series, whose counts add up."""
    from serinus_operator.analysis.compare import _histogram

    answer = QueryResult((3.0, 2.0, 6.0), labels=({"le": "1"}, {"le": "1.0"}, {"le": "+Inf"}))
    assert _histogram(answer) == {1.0: 5.0, math.inf: 6.0}

"""A count compare (error-rate, accuracy) from its answers to a verdict, where the answers
look like a tie but are not evidence. The provider answers each count query from a table
(the real Prometheus path is tests/integration/analysis/test_compare_analysis.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from serinus_operator.analysis.evaluate import QueryResult
from serinus_operator.analysis.run import measure
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import AnalysisSpec, CompareSpec, MetricSpec

VARIABLES = {
    "namespace": "ml", "name": "fraud", "stable": "v1", "candidate": "v2",
    "interval": "30s", "since": "5m", "start": "1764931200",
}  # fmt: skip


class Counts:
    def __init__(self, correct: float, labelled: float) -> None:
        self.correct, self.labelled = correct, labelled

    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        if "serinus_feedback_correct_total" in promql:
            return QueryResult((self.correct,))
        if "serinus_feedback_labelled_total" in promql:
            return QueryResult((self.labelled,))
        return QueryResult((5000.0,))  # requests

    async def is_online(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("correct", "verdict"),
    [(0.0, Verdict.INCONCLUSIVE), (480.0, Verdict.PASS)],
    ids=["a-regressor-nothing-right", "a-classifier-tie"],
)
def test_accuracy_with_nothing_right_on_either_side_is_no_tie(
    correct: float, verdict: Verdict
) -> None:
    compare = CompareSpec(max_degradation=0.05)
    spec = AnalysisSpec(metrics=(MetricSpec("accuracy", compare=compare),))
    provider = Counts(correct=correct, labelled=500.0)
    m = asyncio.run(measure(spec, provider, variables=VARIABLES, at=datetime.now(UTC)))
    assert m.results[0].verdict == verdict, m.results[0].message
    if verdict == Verdict.INCONCLUSIVE:
        assert "needs a classifier" in m.results[0].message

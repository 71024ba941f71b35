"""A compare-to-baseline check measured: its counts for candidate and stable, cumulated
since the analysis run started, queried and handed to the sequential test
(``sequential.py``). The only I/O is the provider's.

Each count is one query that yields one number; a query that fails, or yields no series
or NaN, makes the check Inconclusive with the reason — never a Pass, and never a crash.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from serinus_operator.analysis.evaluate import QueryResult
from serinus_operator.analysis.providers.base import MetricProvider
from serinus_operator.analysis.sequential import (
    Comparison,
    Counts,
    Paired,
    Settings,
    as_metric_result,
    compare_paired,
    compare_rates,
)
from serinus_operator.analysis.templates import (
    COUNTS,
    PAIRED_OUTCOMES,
    for_revision,
    paired_accuracy,
    render,
)
from serinus_operator.analysis.verdict import MetricResult, Verdict
from serinus_operator.api import MetricSpec


async def compare(
    metric: MetricSpec,
    provider: MetricProvider,
    variables: Mapping[str, str],
    *,
    deadline: float,
    paired: bool,
) -> MetricResult:
    spec = metric.compare
    assert spec is not None
    settings = Settings(
        max_degradation=spec.max_degradation,
        confidence=spec.confidence,
        min_samples=spec.min_samples,
    )
    if paired and metric.name == "accuracy":
        queries = [render(paired_accuracy(o), variables) for o in PAIRED_OUTCOMES]
    else:
        counted = COUNTS[metric.name]
        queries = [
            render(for_revision(template, role), variables)
            for role in ("candidate", "stable")
            for template in (counted.events, counted.total)
        ]
    answers = await asyncio.gather(*(provider.query(q, deadline_seconds=deadline) for q in queries))
    numbers = [_one(answer) for answer in answers]
    problems = [n for n in numbers if isinstance(n, str)]
    if problems:
        return MetricResult(metric.name, Verdict.INCONCLUSIVE, message=problems[0])
    a, b, c, d = (float(n) for n in numbers)
    if paired and metric.name == "accuracy":
        comparison = compare_paired(Paired(a, b, c, d), settings=settings)
    else:
        comparison = compare_rates(
            Counts(a, b),
            Counts(c, d),
            settings=settings,
            higher_is_better=COUNTS[metric.name].higher_is_better,
        )
    return _result(metric.name, comparison)


def _one(answer: QueryResult) -> float | str:
    """The one number of a count query, or why there is none."""
    if answer.error is not None:
        return answer.error
    numbers = [v for v in answer.values if not math.isnan(v)]
    if not numbers:
        return "no data yet (no series, or NaN)"
    return float(sum(numbers))


def _result(name: str, comparison: Comparison) -> MetricResult:
    base = as_metric_result(name, comparison)
    return MetricResult(
        base.name,
        base.verdict,
        base.value,
        base.threshold,
        base.message,
        baseline=comparison.baseline,
        samples=comparison.candidate_n,
        p_value=comparison.p_value,
    )

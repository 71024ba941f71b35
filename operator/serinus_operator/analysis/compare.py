"""A compare-to-baseline check measured: its counts for candidate and stable, cumulated
since the analysis run started, queried and handed to the sequential test
(``sequential.py``; a latency check as its share of slow requests, ``latency.py``). The
only I/O is the provider's.

Each count is one query that yields one number; a query that fails, or yields no series
or NaN, makes the check Inconclusive with the reason — never a Pass, and never a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping

from serinus_operator.analysis.evaluate import QueryResult
from serinus_operator.analysis.latency import compare_latency, threshold_for_quantile
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
    LATENCY_BUCKETS,
    PAIRED_OUTCOMES,
    STABLE_LATENCY_BEFORE,
    for_revision,
    paired_accuracy,
    render,
)
from serinus_operator.analysis.verdict import MetricResult, Verdict
from serinus_operator.api import LATENCY_QUANTILES, CompareSpec, MetricSpec


async def compare(
    metric: MetricSpec,
    provider: MetricProvider,
    variables: Mapping[str, str],
    *,
    deadline: float,
    paired: bool,
    kept: float | None = None,
) -> MetricResult:
    """``kept``: a latency compare's threshold from an earlier look of the run."""
    spec = metric.compare
    assert spec is not None
    settings = Settings(
        max_degradation=spec.max_degradation,
        confidence=spec.confidence,
        min_samples=spec.min_samples,
    )
    if metric.name.startswith("latency-"):
        return await _latency(
            metric.name, spec, settings, provider, variables, deadline=deadline, kept=kept
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
    if metric.name == "accuracy" and not paired and a == c == 0 and b > 0 and d > 0:
        return MetricResult(metric.name, Verdict.INCONCLUSIVE, message=_NOTHING_RIGHT)
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


#: A regressor's labels are counted, but as errors, never as right answers: 0 of n on
#: both sides is a regressor (or two revisions always wrong), never a tie to pass.
_NOTHING_RIGHT = (
    "no verdict: not one labelled answer was right on either side; accuracy needs a "
    "classifier (a regressor's labels count absolute errors: docs/drift.md)"
)


async def _latency(
    name: str,
    spec: CompareSpec,
    settings: Settings,
    provider: MetricProvider,
    variables: Mapping[str, str],
    *,
    deadline: float,
    kept: float | None,
) -> MetricResult:
    """The share of the candidate's requests slower than a threshold fixed for the whole
    run, against the stable's: ``thresholdSeconds``; else the one an earlier look of the
    run chose (``kept``, from the status); else the stable's quantile (the check's pNN) in
    the hour before the analysis started, chosen now and kept from then on."""
    threshold = spec.threshold_seconds or kept
    templates = [for_revision(LATENCY_BUCKETS, role) for role in ("candidate", "stable")]
    if threshold is None:
        templates.append(STABLE_LATENCY_BEFORE)
    queries = [render(t, variables) for t in templates]  # all, before any is sent
    answers = await asyncio.gather(*(provider.query(q, deadline_seconds=deadline) for q in queries))
    histograms = [_histogram(answer) for answer in answers]
    if threshold is None:
        before = histograms.pop()
        derived = before if isinstance(before, str) else _stable_quantile(name, before, spec)
        if isinstance(derived, str):
            return MetricResult(name, Verdict.INCONCLUSIVE, message=derived)
        threshold = derived
    problems = [h for h in histograms if isinstance(h, str)]
    if problems:
        return MetricResult(name, Verdict.INCONCLUSIVE, message=problems[0], slower_than=threshold)
    candidate, stable = (h for h in histograms if not isinstance(h, str))
    comparison = compare_latency(candidate, stable, threshold=threshold, settings=settings)
    if spec.threshold_seconds is None:
        said = f"share slower than {threshold:g}s"
        origin = f"{said} (the stable's {name.removeprefix('latency-')} before the run)"
        message = comparison.message.replace(said, origin, 1)
        comparison = dataclasses.replace(comparison, message=message)
    return dataclasses.replace(_result(name, comparison), slower_than=threshold)


def _stable_quantile(name: str, before: Mapping[float, float], spec: CompareSpec) -> float | str:
    """The bucket bound at or above the stable's pNN before the run, or why there is none.
    It needs at least ``minSamples`` requests, and enough to place the quantile at all: ten
    above it (1,000 for a p99)."""
    suffix = name.removeprefix("latency-")
    quantile = LATENCY_QUANTILES[suffix]
    needed = max(spec.min_samples, math.ceil(10 / (1 - quantile)))
    served = before.get(math.inf, 0.0)
    if served < needed:
        return (
            f"no verdict: the stable served {served:.0f} requests in the hour before the "
            f"analysis started, fewer than the {needed} its {suffix} needs; set "
            "compare.thresholdSeconds"
        )
    bound = threshold_for_quantile(before, quantile)
    if bound is None:
        return (
            f"no verdict: the stable's {suffix} before the analysis is above the largest "
            "histogram bucket; set compare.thresholdSeconds"
        )
    return bound


def _histogram(answer: QueryResult) -> dict[float, float] | str:
    """Cumulative buckets (``le`` -> count; ``+Inf`` as ``math.inf``), or why there are none."""
    if answer.error is not None:
        return answer.error
    if not answer.values:
        return "no data yet (no latency histogram series)"
    if len(answer.labels) != len(answer.values):
        return "the metric provider gave no le labels; a latency compare needs Prometheus"
    buckets: dict[float, float] = {}
    for labels, value in zip(answer.labels, answer.values, strict=True):
        try:
            le = float(labels["le"])
        except (KeyError, ValueError):
            return f"a histogram series has no numeric le label: {dict(labels)}"
        if math.isnan(value) or math.isnan(le):
            return f"the histogram has a NaN bucket (le={labels['le']})"
        # "1" and "1.0" are one bound (Prometheus 3 rewrites le): their counts add up.
        buckets[le] = buckets.get(le, 0.0) + value
    return buckets


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

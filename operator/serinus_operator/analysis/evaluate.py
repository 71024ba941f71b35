"""From a query's answer and a metric's bounds to a verdict. Pure.

Every degenerate answer is decided explicitly, and none of them passes:

- Prometheus unreachable, timing out or refusing the query → Inconclusive.
- An empty vector (no series) or NaN (0/0: no traffic in the window) → NoData, which the
  spec's ``noData`` policy then resolves.
- Several series where one was expected → the worst of them is judged (the largest
  against ``max``, the smallest against ``min``) and the message says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from serinus_operator.analysis.verdict import MetricResult, Verdict


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One evaluation of a query: a value per series, or why there is none."""

    values: tuple[float, ...] = ()
    #: Set when the provider could not answer (unreachable, timeout, bad query).
    error: str | None = None
    #: Each series' labels, beside ``values`` (a histogram's ``le``); empty when the
    #: provider has none to give.
    labels: tuple[Mapping[str, str], ...] = ()


def verdict_of(
    name: str, result: QueryResult, *, min: float | None = None, max: float | None = None
) -> MetricResult:
    threshold = max if max is not None else min
    if result.error is not None:
        return MetricResult(name, Verdict.INCONCLUSIVE, None, threshold, result.error)
    if not result.values:
        return MetricResult(name, Verdict.NO_DATA, None, threshold, "query returned no series")
    numbers = [v for v in result.values if not math.isnan(v)]
    if not numbers:
        return MetricResult(
            name, Verdict.NO_DATA, None, threshold, "query returned NaN (no traffic in window?)"
        )
    note = f" (worst of {len(numbers)} series)" if len(numbers) > 1 else ""
    if max is not None:
        worst = numbers[0] if len(numbers) == 1 else _largest(numbers)
        if worst > max:
            return _finite(
                MetricResult(name, Verdict.FAIL, worst, max, f"{worst:.6g} > max {max:g}{note}")
            )
    if min is not None:
        worst = numbers[0] if len(numbers) == 1 else _smallest(numbers)
        if worst < min:
            return _finite(
                MetricResult(name, Verdict.FAIL, worst, min, f"{worst:.6g} < min {min:g}{note}")
            )
    shown = _largest(numbers) if max is not None else _smallest(numbers)
    return _finite(
        MetricResult(
            name, Verdict.PASS, shown, threshold, _pass_message(shown, min=min, max=max, note=note)
        )
    )


def _pass_message(shown: float, *, min: float | None, max: float | None, note: str) -> str:
    bounds = " and ".join(
        part
        for part in (
            f"<= max {max:g}" if max is not None else "",
            f">= min {min:g}" if min is not None else "",
        )
        if part
    )
    return f"{shown:.6g} {bounds}{note}" if bounds else f"{shown:.6g} (no bound: recorded only)"


def _finite(result: MetricResult) -> MetricResult:
    """Status is JSON, which has no infinity: an infinite value (a quantile past the last
    histogram bucket) is kept in the message and the verdict, and recorded as null."""
    if result.value is None or math.isfinite(result.value):
        return result
    return MetricResult(result.name, result.verdict, None, result.threshold, result.message)


def _largest(values: list[float]) -> float:
    return float(max(values))


def _smallest(values: list[float]) -> float:
    return float(min(values))

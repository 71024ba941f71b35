"""One analysis measurement: render every check, query the provider concurrently, turn
each answer into a verdict. The only I/O is the provider's; the rest is pure."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from serinus_operator.analysis.compare import compare
from serinus_operator.analysis.evaluate import verdict_of
from serinus_operator.analysis.providers.base import MetricProvider
from serinus_operator.analysis.templates import BUILTIN, TemplateError, prometheus_duration, render
from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict
from serinus_operator.api import AnalysisSpec, MetricSpec

#: A measurement must finish well inside its interval, leaving time to act on it.
DEADLINE_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class ResolvedCheck:
    name: str
    query: str
    min: float | None
    max: float | None


def resolve(metric: MetricSpec, variables: Mapping[str, str]) -> ResolvedCheck:
    """A metric of the spec as a concrete query and bounds (built-in defaults filled in)."""
    if metric.query is not None:
        return ResolvedCheck(metric.name, render(metric.query, variables), metric.min, metric.max)
    builtin = BUILTIN.get(metric.name)
    if builtin is None:
        raise TemplateError(
            f"metric {metric.name!r} is not a built-in check ({', '.join(BUILTIN)}) and has no "
            "query"
        )
    explicit = metric.min is not None or metric.max is not None
    return ResolvedCheck(
        metric.name,
        render(builtin.query, variables),
        metric.min if explicit else builtin.min,
        metric.max if explicit else builtin.max,
    )


def variables_for(
    *,
    namespace: str,
    name: str,
    stable: str,
    candidate: str,
    analysis: AnalysisSpec,
    since: timedelta | None = None,
    started_at: datetime | None = None,
) -> dict[str, str]:
    """``since``: how long the analysis run has been going (``{{ since }}``; the interval
    when unknown). ``started_at``: when it started (``{{ start }}``; absent when unknown,
    and a check that needs it is then Inconclusive)."""
    elapsed = analysis.interval if since is None else max(since, analysis.interval)
    start = {} if started_at is None else {"start": str(math.floor(started_at.timestamp()))}
    return {
        **start,
        "namespace": namespace,
        "name": name,
        "stable": stable,
        "candidate": candidate,
        "interval": prometheus_duration(analysis.interval.total_seconds()),
        "since": prometheus_duration(elapsed.total_seconds()),
    }


async def measure(
    analysis: AnalysisSpec,
    provider: MetricProvider,
    *,
    variables: Mapping[str, str],
    at: datetime,
    paired: bool = False,
    thresholds: Mapping[str, float] | None = None,
) -> Measurement:
    """``paired``: the candidate is a shadow, so accuracy compares are judged on the same
    labelled requests as the stable's (the router's paired counts). ``thresholds``: latency
    compares' thresholds from the run's earlier looks, by check."""
    deadline = analysis.interval.total_seconds() * DEADLINE_SHARE
    count_query = render(BUILTIN["request-count"].query, variables)
    count, results = await asyncio.gather(
        provider.query(count_query, deadline_seconds=deadline),
        asyncio.gather(
            *(
                _measure_one(
                    metric,
                    provider,
                    variables,
                    deadline=deadline,
                    paired=paired,
                    threshold=(thresholds or {}).get(metric.name),
                )
                for metric in analysis.metrics
            )
        ),
    )
    requests = None
    if count.error is None and count.values and not math.isnan(count.values[0]):
        requests = round(sum(v for v in count.values if not math.isnan(v)))
    return Measurement(
        at=at, revision=variables["candidate"], results=tuple(results), requests=requests
    )


async def _measure_one(
    metric: MetricSpec,
    provider: MetricProvider,
    variables: Mapping[str, str],
    *,
    deadline: float,
    paired: bool,
    threshold: float | None,
) -> MetricResult:
    """One check; a template it cannot fill makes that check Inconclusive, not the run."""
    try:
        if metric.compare is not None:
            return await compare(
                metric, provider, variables, deadline=deadline, paired=paired, kept=threshold
            )
        check = resolve(metric, variables)
    except TemplateError as exc:
        return MetricResult(metric.name, Verdict.INCONCLUSIVE, message=str(exc))
    answer = await provider.query(check.query, deadline_seconds=deadline)
    return verdict_of(check.name, answer, min=check.min, max=check.max)

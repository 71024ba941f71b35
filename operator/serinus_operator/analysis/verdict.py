"""Verdicts: the plain data the analysis providers hand to the rollout engine.

Providers (Prometheus, webhooks) fill these in; the engine only counts them. ``NO_DATA`` is
kept distinct from ``INCONCLUSIVE`` so that the ``noData`` policy is applied in one place,
explicitly, and never silently turns into a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from serinus_operator.api import NoDataPolicy


class Verdict(StrEnum):
    PASS = "Pass"  # noqa: S105 - a verdict, not a password
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class MetricResult:
    """One metric's value against its threshold in one measurement."""

    name: str
    verdict: Verdict
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    #: A compare-to-baseline check's baseline value, candidate sample size and always-valid
    #: p-value (None for a fixed-bound check).
    baseline: float | None = None
    samples: float | None = None
    p_value: float | None = None
    #: A latency compare's threshold (seconds), fixed for its analysis run.
    slower_than: float | None = None


@dataclass(frozen=True)
class Measurement:
    """All metrics measured for one candidate revision at one instant.

    ``requests`` is how many requests the candidate served (or, in a shadow, received as
    copies) over the window; ``None`` when unknown. Below ``analysis.minRequests`` no metric
    gets a verdict: the measurement counts as no data.
    """

    at: datetime
    revision: str
    results: tuple[MetricResult, ...]
    requests: int | None = None


def apply_no_data(verdict: Verdict, policy: NoDataPolicy) -> Verdict:
    """Resolve ``NO_DATA`` by the spec's explicit policy; other verdicts pass through."""
    if verdict != Verdict.NO_DATA:
        return verdict
    return Verdict(policy.value)


def gate_on_traffic(measurement: Measurement, min_requests: int) -> tuple[MetricResult, ...]:
    """Replace every verdict by ``NO_DATA`` when the candidate saw too little traffic."""
    if min_requests <= 0:
        return measurement.results
    seen = measurement.requests
    if seen is not None and seen >= min_requests:
        return measurement.results
    why = (
        "request count unknown" if seen is None else f"{seen} requests < minRequests {min_requests}"
    )
    return tuple(
        MetricResult(r.name, Verdict.NO_DATA, r.value, r.threshold, f"no verdict: {why}")
        for r in measurement.results
    )


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """One failing metric fails the measurement; else any doubt makes it inconclusive."""
    seen = set(verdicts)
    if Verdict.FAIL in seen:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in seen or Verdict.NO_DATA in seen or not seen:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS

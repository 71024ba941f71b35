"""What a rollout measures, and what makes a measurement pass."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from serinus_operator.api.enums import Baseline, NoDataPolicy
from serinus_operator.api.errors import SpecError
from serinus_operator.api.names import BUILTIN_CHECKS, COMPARABLE_CHECKS
from serinus_operator.api.wire import refines, wire

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ONE_METRIC = "add at least one metric, or remove analysis"


@dataclass(frozen=True)
class CompareSpec:
    """Judge the candidate against the baseline on counts since the analysis started, with
    a sequential test whose error rates hold however often it looks (docs/analysis.md)."""

    #: How much worse than the baseline, in the metric's units, is still acceptable.
    max_degradation: float = field(
        metadata=wire(minimum=0, maximum=1, required="set maxDegradation, e.g. 0.005")
    )
    baseline: Baseline = Baseline.STABLE
    #: 1 - confidence bounds each false decision (a false rollback, a false promotion).
    confidence: float = field(default=0.95, metadata=wire(minimum=0.5, maximum=0.9999))
    #: Below this many requests on either side: Inconclusive, "not enough data yet".
    min_samples: int = field(default=100, metadata=wire(minimum=1, maximum=1_000_000_000))
    #: Latency checks only: judge the share of requests slower than this many seconds.
    #: Unset: the stable revision's quantile (p99 for ``latency-p99``) in the hour before
    #: the analysis started, so the threshold stays fixed for the whole run.
    threshold_seconds: float | None = field(
        default=None, metadata=wire(minimum=0, exclusive_minimum=True, maximum=3600)
    )


@dataclass(frozen=True)
class MetricSpec:
    name: str
    query: str | None = None
    min: float | None = None
    max: float | None = None
    compare: CompareSpec | None = None
    #: Measured and shown, never gating (Argo Rollouts' dry-run): a new gate, tried safely.
    dry_run: bool = False


@refines(MetricSpec)
def _check_metric(metric: MetricSpec, _: Mapping[str, Any], path: str) -> MetricSpec:
    name, lo, hi = metric.name, metric.min, metric.max
    if not DNS_LABEL.match(name) or len(name) > 63:
        raise SpecError(f"{path}.name", "use lowercase letters, digits and '-', e.g. 'error-rate'")
    if metric.compare is not None:
        return _check_compare(metric, path)
    if metric.query is None and name not in BUILTIN_CHECKS:
        raise SpecError(
            f"{path}.query",
            f"{name!r} is not a built-in metric ({', '.join(BUILTIN_CHECKS)}): "
            "add a PromQL query or use a built-in name",
        )
    if lo is None and hi is None:
        raise SpecError(path, "set min, max or both: the threshold that makes a verdict")
    if lo is not None and hi is not None and lo > hi:
        raise SpecError(f"{path}.min", f"min ({lo}) is greater than max ({hi}); swap them")
    return metric


def _check_compare(metric: MetricSpec, path: str) -> MetricSpec:
    if metric.name not in COMPARABLE_CHECKS or metric.query is not None:
        raise SpecError(
            f"{path}.compare",
            f"compare works with the built-in {', '.join(COMPARABLE_CHECKS)} (no query)",
        )
    if metric.min is not None or metric.max is not None:
        raise SpecError(f"{path}.compare", "use compare or min/max, not both")
    threshold = metric.compare.threshold_seconds if metric.compare is not None else None
    if threshold is not None and not metric.name.startswith("latency-"):
        raise SpecError(
            f"{path}.compare.thresholdSeconds", "thresholdSeconds is for latency-pNN checks only"
        )
    return metric


@dataclass(frozen=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...] = field(metadata=wire(required=_ONE_METRIC))
    interval: timedelta = field(
        default=timedelta(seconds=30), metadata=wire(minimum=timedelta(seconds=1))
    )
    failure_limit: int = field(default=1, metadata=wire(minimum=0, maximum=100))
    inconclusive_limit: int = field(default=3, metadata=wire(minimum=0, maximum=100))
    no_data: NoDataPolicy = NoDataPolicy.INCONCLUSIVE
    min_requests: int = field(default=1, metadata=wire(minimum=0, maximum=1_000_000_000))
    resume_on_pass: bool = False  # an InconclusiveAnalysis pause ends on the next pass


@refines(AnalysisSpec)
def _check_analysis(analysis: AnalysisSpec, _: Mapping[str, Any], path: str) -> AnalysisSpec:
    if not analysis.metrics:
        raise SpecError(f"{path}.metrics", _ONE_METRIC)
    seen: set[str] = set()
    for i, metric in enumerate(analysis.metrics):
        if metric.name in seen:
            raise SpecError(f"{path}.metrics[{i}].name", f"{metric.name!r} is listed twice")
        seen.add(metric.name)
    return analysis

"""The analysis metrics that only the serinus router can feed."""

from __future__ import annotations

from serinus_operator.api import AnalysisSpec

#: Metric family written by the router's shadow comparison (agree / disagree counters).
SHADOW_METRIC = "serinus_shadow_"


def needs_router(analysis: AnalysisSpec | None) -> str | None:
    """The first metric that reads the router's shadow comparison, if any."""
    if analysis is None:
        return None
    for metric in analysis.metrics:
        if metric.name == "agreement" or (metric.query and SHADOW_METRIC in metric.query):
            return metric.name
    return None

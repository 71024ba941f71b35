"""Latency compared with the baseline as a share of slow requests. Pure.

A share of requests slower than a fixed threshold is a proportion, so
:func:`~serinus_operator.analysis.sequential.compare_rates` tests it with its always-valid
guarantee intact; a quantile interpolated inside a histogram bucket has no such test, and a
threshold recomputed from the data at every look would void it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping

from serinus_operator.analysis.sequential import (
    Comparison,
    Counts,
    Settings,
    compare_rates,
    finite,
)
from serinus_operator.analysis.verdict import Verdict


def compare_latency(
    candidate: Mapping[float, float],
    baseline: Mapping[float, float],
    *,
    threshold: float,
    settings: Settings,
    previous: Comparison | None = None,
) -> Comparison:
    """Decide on the fraction of requests slower than ``threshold`` seconds.

    Histograms are Prometheus's cumulative buckets (``le`` -> count, ``math.inf`` for
    ``+Inf``). A fraction of requests is a proportion, so it has an exact sequential test;
    a quantile estimated by interpolating buckets has none. ``threshold`` is snapped down to
    the largest bucket bound both revisions share. It must be fixed for the whole rollout
    (e.g. :func:`threshold_for_quantile` of the stable revision, once, at the start): a
    threshold moving with the data would void the guarantee.
    """
    bounds = {b for b in candidate.keys() & baseline.keys() if finite(b) and b <= threshold}
    if not bounds:
        why = f"no verdict: no histogram bucket bound shared by both revisions <= {threshold:g}s"
        return Comparison(Verdict.INCONCLUSIVE, why)
    le = max(bounds)
    slow = [_slow(h, le) for h in (candidate, baseline)]
    for who, counts in zip(("candidate", "baseline"), slow, strict=True):
        if isinstance(counts, str):
            return Comparison(Verdict.INCONCLUSIVE, f"no verdict: {who} histogram {counts}")
    cand, base = (c for c in slow if isinstance(c, Counts))
    result = compare_rates(cand, base, settings=settings, higher_is_better=False, previous=previous)
    return dataclasses.replace(result, message=f"share slower than {le:g}s: {result.message}")


def _slow(buckets: Mapping[float, float], le: float) -> Counts | str:
    """Requests above bucket ``le``, of all; or why the buckets are not a histogram."""
    total = buckets.get(math.inf)
    if total is None:
        return "has no +Inf bucket (the total)"
    ordered = sorted((b, c) for b, c in buckets.items() if finite(b) or b == math.inf)
    counts = [c for _, c in ordered]
    if not all(finite(c) for c in counts):
        return "has counts that are not finite numbers"
    if any(later < earlier for earlier, later in itertools.pairwise(counts)):
        return "is not cumulative (a count falls as le grows)"
    return Counts(events=total - buckets[le], total=total)


def threshold_for_quantile(buckets: Mapping[float, float], quantile: float) -> float | None:
    """The bucket bound at or above the ``quantile`` (0..1) of a histogram, or None.

    Used once, on the stable revision, to turn "p99 latency" into a fixed threshold that
    :func:`compare_latency` can test as a share of slow requests.
    """
    total = buckets.get(math.inf)
    if not (0.0 < quantile < 1.0) or total is None or not finite(total) or total <= 0:
        return None
    for bound, count in sorted((b, c) for b, c in buckets.items() if finite(b)):
        if finite(count) and count >= quantile * total:
            return float(bound)
    return None

"""What the operator exports per analysis check: the numbers behind each verdict (value,
baseline, bound, samples, p-value) and which verdict is the last one, for the rollout
dashboard's Compare checks table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict
from serinus_operator.telemetry import Telemetry

LABELS = {"namespace": "ml", "name": "fraud", "metric": "accuracy", "revision": "v2"}


def _measure(t: Telemetry, result: MetricResult) -> None:
    at = datetime(2026, 12, 5, tzinfo=UTC)
    t.observe_measurement("ml", "fraud", Measurement(at, "v2", (result,)), bounds=())


def _sample(t: Telemetry, metric: str, **extra: str) -> float | None:
    return t.registry.get_sample_value(metric, {**LABELS, **extra})


def test_a_compare_checks_numbers_and_its_last_verdict_are_exported() -> None:
    t = Telemetry()
    _measure(t, MetricResult("accuracy", Verdict.INCONCLUSIVE, 0.91, 0.93, "", 0.94, 80, 0.4))
    _measure(t, MetricResult("accuracy", Verdict.FAIL, 0.77, 0.93, "", 0.94, 336, 0.0015))
    assert [_sample(t, f"serinus_analysis_{m}") for m in ("value", "bound", "baseline")] == [
        0.77, 0.93, 0.94
    ]  # fmt: skip
    assert _sample(t, "serinus_analysis_samples") == 336
    assert _sample(t, "serinus_analysis_p_value") == pytest.approx(0.0015)
    last = {
        v: _sample(t, "serinus_analysis_verdict", verdict=v)
        for v in ("pass", "fail", "inconclusive", "no_data")
    }
    assert last == {"pass": 0, "fail": 1, "inconclusive": 0, "no_data": 0}


def test_a_fixed_bound_check_exports_its_bound_and_no_compare_numbers() -> None:
    t = Telemetry()
    _measure(t, MetricResult("accuracy", Verdict.PASS, 0.95, 0.9, "0.95 >= min 0.9"))
    assert _sample(t, "serinus_analysis_bound") == 0.9
    assert _sample(t, "serinus_analysis_samples") is None
    assert _sample(t, "serinus_analysis_verdict", verdict="pass") == 1


def _series(t: Telemetry, metric: str) -> set[tuple[str, ...]]:
    return {
        tuple(s.labels[k] for k in ("metric", "revision", "verdict") if k in s.labels)
        for family in t.registry.collect()
        for s in family.samples
        if s.name == metric
    }


def test_nothing_outlives_what_it_shows() -> None:
    """A number not measured this time, a revision whose analysis the status no longer
    shows (kept after a rollback, to explain it; gone after a promotion or a new candidate),
    a deleted ModelDeployment: their series go, so no stale p-value sits beside a new
    verdict and no old revision's Fail stays at 1."""
    from serinus_operator.rollout.status import RolloutStatus

    t = Telemetry()
    _measure(t, MetricResult("accuracy", Verdict.FAIL, 0.77, 0.93, "", 0.94, 336, 0.0015))
    _measure(t, MetricResult("accuracy", Verdict.INCONCLUSIVE, message="Prometheus down"))
    assert _series(t, "serinus_analysis_p_value") == set()
    assert _sample(t, "serinus_analysis_verdict", verdict="inconclusive") == 1

    at = datetime(2026, 12, 5, tzinfo=UTC)
    newer = Measurement(at, "v3", (MetricResult("accuracy", Verdict.PASS, 0.95, 0.9),))
    t.observe_measurement("ml", "fraud", newer, bounds=[("accuracy", 0.9, None)])
    assert {s[1] for s in _series(t, "serinus_analysis_verdict")} == {"v3"}
    assert _series(t, "serinus_analysis_value") == {("accuracy", "v3")}

    # Rolled back: the status keeps the failed revision's analysis, and so do the gauges.
    from serinus_operator import api
    from serinus_operator.rollout.status import AnalysisStatus, RevisionRef, RolledBackStatus

    ref = RevisionRef(
        "v3", "3", api.ModelSpec("https://m.example.com/v3.onnx", "3"), api.ServingSpec()
    )
    rolled_back = RolloutStatus(
        rolled_back=RolledBackStatus(ref, "AnalysisFailed", "accuracy", at),
        analysis=AnalysisStatus(started_at=at),
    )
    t.observe_status("ml", "fraud", RolloutStatus(), rolled_back)
    assert {s[1] for s in _series(t, "serinus_analysis_verdict")} == {"v3"}
    t.observe_status("ml", "fraud", rolled_back, RolloutStatus())  # promoted: no analysis
    assert _series(t, "serinus_analysis_verdict") == set()
    assert _series(t, "serinus_analysis_threshold") == {("accuracy",)}  # the spec's bound
    t.forget("ml", "fraud")
    assert _series(t, "serinus_analysis_threshold") == set()

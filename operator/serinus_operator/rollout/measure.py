"""Counting analysis verdicts: failureLimit rolls back, inconclusiveLimit pauses.

A measurement counts once: only those for the current candidate, taken strictly after the
current analysis run started and after the last one counted, are read. That makes feeding the same
measurements twice harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from serinus_operator.analysis.verdict import (
    Measurement,
    MetricResult,
    Verdict,
    apply_no_data,
    combine,
    gate_on_traffic,
)
from serinus_operator.api import AnalysisSpec
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.status import AnalysisStatus, MetricStatus, PauseReason
from serinus_operator.rollout.work import Work


def _fmt(value: float | None) -> str:
    return "no value" if value is None else f"{value:.4g}"


def _resolve(spec: AnalysisSpec, m: Measurement) -> tuple[MetricStatus, ...]:
    """One status per configured metric; a metric missing from the results is no data."""
    by_name = {r.name: r for r in gate_on_traffic(m, spec.min_requests)}
    out = []
    for metric in spec.metrics:
        r = by_name.get(metric.name) or MetricResult(
            metric.name, Verdict.NO_DATA, message="not measured"
        )
        verdict = apply_no_data(r.verdict, spec.no_data)
        message = r.message
        if r.verdict == Verdict.NO_DATA:
            message = f"{message or 'no data'} (noData: {spec.no_data})"
        status = MetricStatus(
            metric.name,
            verdict,
            m.at,
            r.value,
            r.threshold,
            message,
            baseline=r.baseline,
            samples=r.samples,
            p_value=r.p_value,
            slower_than=r.slower_than,
        )
        out.append(replace(status, dry_run=True) if metric.dry_run else status)
    return tuple(out)


def gating_verdict(metrics: Sequence[MetricStatus]) -> Verdict:
    """The measurement's verdict from the checks that gate; with none (all dry-run), it
    passes: a dry-run check is never what holds a rollout back."""
    gating = [m.result for m in metrics if not m.dry_run]
    return combine(gating) if gating else Verdict.PASS


def summary(metrics: Sequence[MetricStatus], verdict: Verdict) -> str:
    parts = []
    for m in metrics:
        if m.result != verdict or m.dry_run:
            continue
        bound = "" if m.threshold is None else f" (threshold {_fmt(m.threshold)})"
        note = f": {m.message}" if m.message else ""
        parts.append(f"{m.name} {_fmt(m.value)}{bound}{note}")
    return "; ".join(parts)


def _fresh(w: Work, a: AnalysisStatus, verdicts: Sequence[Measurement]) -> list[Measurement]:
    c = w.candidate
    assert c is not None
    return sorted(
        (
            m
            for m in verdicts
            if m.revision == c.ref.revision
            and m.at > a.started_at
            and (a.last_measured_at is None or m.at > a.last_measured_at)
        ),
        key=lambda m: m.at,
    )


def _resume_on_pass(w: Work, spec: AnalysisSpec, metrics: Sequence[MetricStatus]) -> None:
    """``resumeOnPass``: an InconclusiveAnalysis pause ends when a measurement passes."""
    c = w.candidate
    if not spec.resume_on_pass or c is None or c.pause is None:
        return
    if c.pause.reason != PauseReason.INCONCLUSIVE:
        return  # a person's pause, or a promotion that waits for a person, stays
    w.unpause()
    values = "; ".join(f"{m.name} {_fmt(m.value)}" for m in metrics)
    w.emit(Reason.RESUMED, f"analysis passed again ({values}): resumed (resumeOnPass)")


def _tell_dry_run(w: Work, metrics: Sequence[MetricStatus]) -> None:
    """What a dry-run check would have done, as an Event: how a new gate is judged."""
    for m in metrics:
        if m.dry_run and m.result in (Verdict.FAIL, Verdict.INCONCLUSIVE):
            bound = "" if m.threshold is None else f" (threshold {_fmt(m.threshold)})"
            note = f": {m.message}" if m.message else ""
            w.emit(
                Reason.DRY_RUN,
                f"{m.name} {_fmt(m.value)}{bound}{note}: {m.result} (dryRun: not gating)",
            )


def consume(w: Work, verdicts: Sequence[Measurement]) -> None:
    spec, c = w.spec.analysis, w.candidate
    if spec is None and c is not None:
        w.set(analysis=None)  # analysis was removed from the spec mid-rollout
    if spec is None or c is None or c.ready_since is None or c.not_ready_since is not None:
        return  # not ready: it has no traffic, so a measurement says nothing about it
    a = w.status.analysis or AnalysisStatus(started_at=w.now)
    for m in _fresh(w, a, verdicts):
        metrics = _resolve(spec, m)
        verdict = gating_verdict(metrics)
        _tell_dry_run(w, metrics)
        a = replace(
            a,
            last_measured_at=m.at,
            measurements=a.measurements + 1,
            failures=a.failures + (verdict == Verdict.FAIL),
            inconclusive=a.inconclusive + (verdict == Verdict.INCONCLUSIVE),
            result=verdict,
            metrics=metrics,
        )
        w.set(analysis=a)
        w.set_candidate(passed_at=m.at if verdict == Verdict.PASS else None)
        if verdict == Verdict.PASS:
            _resume_on_pass(w, spec, metrics)
            a = w.status.analysis or a  # a resume starts the inconclusive count afresh
        elif verdict == Verdict.FAIL:
            why = summary(metrics, Verdict.FAIL)
            count = f"{a.failures} of failureLimit {spec.failure_limit}"
            w.emit(Reason.ANALYSIS_FAILED, f"{why} ({count})", warning=True)
            if a.failures > spec.failure_limit:
                w.roll_back("AnalysisFailed", f"analysis failed: {why}")
                return
        elif verdict == Verdict.INCONCLUSIVE:
            why = summary(metrics, Verdict.INCONCLUSIVE)
            count = f"{a.inconclusive} of inconclusiveLimit {spec.inconclusive_limit}"
            w.emit(Reason.ANALYSIS_INCONCLUSIVE, f"{why} ({count})", warning=True)
            current = w.candidate
            if a.inconclusive > spec.inconclusive_limit and current and current.pause is None:
                w.pause(PauseReason.INCONCLUSIVE, f"analysis inconclusive: {why}")
    w.set(analysis=a)

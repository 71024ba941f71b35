"""From the decided status to the desired world: traffic, revisions, analysis, wake-up time.

Traffic is derived here, in one place, so that its invariants hold by construction: weights
are 0-100 and sum to 100, and a candidate that is not ready gets neither live nor mirrored
traffic whatever stage the rollout is in.
"""

from __future__ import annotations

from datetime import datetime

from serinus_operator.rollout import hooks, strategies
from serinus_operator.rollout.actions import (
    Action,
    EnsureRevision,
    RemoveRevision,
    Role,
    RunAnalysis,
    ScaleDown,
    SetTraffic,
)
from serinus_operator.rollout.status import Outcome, Traffic
from serinus_operator.rollout.work import GRACE, Work


def traffic(w: Work) -> Traffic:
    c = w.candidate
    if c is None or c.ready_since is None or not w.observed.ready(c.ref.revision):
        return Traffic()
    if not hooks.pre_rollout_open(w):
        return Traffic()
    return strategies.of(w).traffic(w, c)


def analysis_due(w: Work) -> datetime | None:
    a, c, spec = w.status.analysis, w.candidate, w.spec.analysis
    if a is None or c is None or spec is None or c.ready_since is None:
        return None
    if c.not_ready_since is not None:
        return None  # no traffic, nothing to measure; the window restarts on recovery
    if not hooks.pre_rollout_open(w):
        return None  # no traffic before the PreRollout hooks pass
    return (a.last_measured_at or a.started_at) + spec.interval


_ENDED = (Outcome.ROLLED_BACK, Outcome.ABORTED, Outcome.SUPERSEDED)


def _in_grace(w: Work) -> dict[str, datetime]:
    """Candidates that ended less than ``GRACE`` ago, and when their grace ends."""
    return {
        h.revision: h.finished_at + GRACE
        for h in w.status.history
        if h.outcome in _ENDED and w.now < h.finished_at + GRACE
    }


def resource_actions(w: Work) -> list[Action]:
    s, replicas = w.status, w.spec.replicas
    actions: list[Action] = []
    keep: set[str] = set()
    if s.stable is not None:
        actions.append(EnsureRevision(s.stable.ref, Role.STABLE, replicas))
        keep.add(s.stable.ref.revision)
    if s.candidate is not None:
        size = strategies.candidate_size(w, s.candidate)
        actions.append(EnsureRevision(s.candidate.ref, Role.CANDIDATE, size))
        keep.add(s.candidate.ref.revision)
    if s.previous is not None:
        actions.append(EnsureRevision(s.previous.ref, Role.PREVIOUS, replicas))
        keep.add(s.previous.ref.revision)
    if s.stable is not None:
        c = s.candidate
        actions.append(
            SetTraffic(
                stable=s.stable.ref.revision,
                candidate=None if c is None else c.ref.revision,
                candidate_weight=s.traffic.candidate,
                mirror_percent=s.traffic.mirror,
            )
        )
    keep |= set(_in_grace(w))  # just lost its traffic: left alone a moment longer
    if s.rolled_back is not None and s.rolled_back.ref.revision not in keep:
        actions.append(ScaleDown(s.rolled_back.ref.revision))
        keep.add(s.rolled_back.ref.revision)
    actions.extend(RemoveRevision(rev) for rev in sorted(w.observed.revisions) if rev not in keep)
    return actions


def analysis_action(w: Work) -> RunAnalysis | None:
    due, a, c, spec = analysis_due(w), w.status.analysis, w.candidate, w.spec.analysis
    if due is None or due > w.now or a is None or c is None or spec is None:
        return None
    stable = w.status.stable
    return RunAnalysis(
        candidate=c.ref.revision,
        baseline=stable.ref.revision if stable is not None else "",
        stage=c.stage,
        metrics=spec.metrics,
        min_requests=spec.min_requests,
        interval=spec.interval,
        window_start=a.last_measured_at or a.started_at,
        since=a.started_at,
        thresholds=tuple((m.name, m.slower_than) for m in a.metrics if m.slower_than is not None),
    )


def wake_at(w: Work) -> datetime | None:
    """The earliest moment at which time alone could change the decision."""
    times: list[datetime] = []
    c, deadline = w.candidate, w.spec.progress_deadline
    if c is not None:
        if c.ready_since is None:
            times.append(c.started_at + deadline)
        elif c.not_ready_since is not None:
            times.append(c.not_ready_since + deadline)
        elif c.not_complete_since is not None:
            times.append(c.not_complete_since + deadline)
        end = strategies.step_deadline(w, c)
        if end is not None:
            times.append(end)
        due = analysis_due(w)
        if due is not None and w.spec.analysis is not None:
            times.append(due if due > w.now else w.now + w.spec.analysis.interval)
    if w.status.previous is not None:
        times.append(w.status.previous.scale_down_at)
    times.extend(_in_grace(w).values())
    times.extend(hooks.wake_times(w))
    future = [t for t in times if t > w.now]
    return min(future) if future else None

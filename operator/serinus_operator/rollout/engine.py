"""``decide``: the rollout engine, one pure function from what is known to what to do next.

It reads the spec, the previous status, what the platform observed, fresh analysis
measurements and the current time, and returns the next status and the actions that realise
it. It does no I/O and reads no clock, so it is tested by tables and properties, and an
operator restarted from the status alone decides exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from serinus_operator.analysis.verdict import Measurement
from serinus_operator.api import ModelDeploymentSpec, SpecError
from serinus_operator.rollout import (
    conditions,
    desired,
    evidence,
    hooks,
    manual,
    measure,
    progress,
    strategies,
)
from serinus_operator.rollout.actions import (
    Action,
    Decision,
    EventType,
    Notify,
    Reason,
    SetTraffic,
)
from serinus_operator.rollout.observed import Observed, WebhookResult
from serinus_operator.rollout.status import Phase, RolloutStatus, Traffic
from serinus_operator.rollout.work import Work

_EXPLAINS_TRAFFIC = {
    Reason.PROMOTED,
    Reason.ROLLED_BACK,
    Reason.ABORTED,
    Reason.SUPERSEDED,
    Reason.TRAFFIC_SWITCHED,
    Reason.REVERTED,
    Reason.ROLLOUT_RESTARTED,
    Reason.CANDIDATE_NOT_READY,
}


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("decide() needs a timezone-aware 'now' (e.g. datetime.now(UTC))")


def _reconcile_revision(w: Work) -> None:
    """Compare the spec's revision with the status: start, restart, supersede or revert."""
    s, target = w.status, w.spec.revision
    if s.stable is None:
        w.initialize()
        return
    c = s.candidate
    if c is not None and c.ref.revision == target:
        if c.ref != w.target:
            w.set_candidate(ref=w.target)  # same bytes, new location: see _moved
        strategy = strategies.of(w)
        if c.strategy != w.spec.strategy.type or not strategy.fits(c.stage, w.spec.strategy):
            w.supersede(f"strategy changed to {w.spec.strategy.type}")
            strategies.start(w, w.target, Reason.ROLLOUT_RESTARTED)
            return
        strategy.edited(w)
        return
    if target == s.stable.ref.revision:
        _moved(w)
        if c is not None:
            w.supersede("the spec went back to the stable revision")
        w.set(rolled_back=None)
        return
    if c is None and s.stable.ready_at is None and not w.observed.ready(s.stable.ref.revision):
        w.replace_first()  # nothing ever served: a rollout would send traffic to a dud
        return
    if c is not None:
        w.supersede(f"replaced by {w.spec.model.version} ({target})")
    if s.rolled_back is not None and s.rolled_back.ref.revision == target:
        return  # stays rolled back until the spec changes or a retry
    prev = s.previous
    if prev is not None and prev.ref.revision == target and w.complete(target):
        w.revert()
        return
    strategies.start(w, w.target)


def _moved(w: Work) -> None:
    """The spec names the stable revision's bytes (same ``sha256``) by a new URL — a
    re-signed one: no rollout, but its pods fetch with the new URL from now on (a
    Deployment rolling update), so one restarted after the old URL expired still finds
    its model."""
    stable = w.status.stable
    if stable is not None and stable.ref != w.target:
        w.set(stable=replace(stable, ref=w.target))
        w.emit(
            Reason.MODEL_MOVED,
            f"{w.target.version} ({w.target.revision}) is now fetched "
            "with a new URL; same sha256, no rollout",
        )


def _restart_clocks(w: Work) -> None:
    """Leaving Degraded: nothing was analysed meanwhile, so the current step's timer and the
    measurement window start again rather than counting the invalid time as passed."""
    c = w.candidate
    if c is None or c.ready_since is None:
        return
    w.set_candidate(step_started_at=w.now)
    a = w.status.analysis
    if a is not None:
        w.set(analysis=replace(a, last_measured_at=w.now))


def _traffic_events(w: Work, before: RolloutStatus) -> None:
    if any(e.reason in _EXPLAINS_TRAFFIC for e in w.events):
        return
    old, new = before.traffic, w.status.traffic
    if old.candidate != new.candidate:
        w.emit(Reason.WEIGHT_CHANGED, f"candidate weight {old.candidate}% -> {new.candidate}%")
    if old.mirror != new.mirror:
        w.emit(Reason.MIRROR_CHANGED, f"mirrored to candidate {old.mirror}% -> {new.mirror}%")


def _observe(w: Work, before: RolloutStatus) -> None:
    """What the spec asks for, what the world shows, and what a person asked.

    A manual ``retry`` may start a candidate that is already running, so the candidate is
    tracked again after the request: that second look is what lets a retried candidate
    count as ready in the same decision."""
    _reconcile_revision(w)
    w.set(revision=w.spec.revision)
    if before.phase == Phase.DEGRADED:
        _restart_clocks(w)
    progress.track_stable(w)
    progress.track_candidate(w)
    manual.apply_request(w)
    progress.track_candidate(w)


def _judge_and_step(w: Work, verdicts: Sequence[Measurement]) -> None:
    """Gates first (PreRollout hooks, measurements, a hook's rollback), then the strategy's
    steps, which read what the gates decided."""
    hooks.pre_rollout(w, w.hook_results)
    measure.consume(w, verdicts)
    hooks.rollback_requested(w, w.hook_results)
    progress.advance(w)
    progress.scale_down_previous(w)


def _stable_replicas(w: Work) -> int:
    stable = w.status.stable
    obs = None if stable is None else w.observed.revisions.get(stable.ref.revision)
    return 0 if obs is None else obs.replicas


def _publish(w: Work, before: RolloutStatus) -> None:
    """Traffic from the decided state, then what people see: Events, phase, conditions."""
    w.set(traffic=desired.traffic(w), replicas=_stable_replicas(w))
    if evidence.grew(before, w.status):
        evidence.record_growth(w)  # also a return to traffic after readiness or Degraded
    hooks.ask_rollback(w)
    _traffic_events(w, before)
    phase = conditions.phase_of(w)
    if before.phase == Phase.DEGRADED:
        w.emit(Reason.SPEC_FIXED, f"the spec is valid again: {phase}")
    w.set(
        phase=phase,
        message=conditions.message_of(w, phase),
        conditions=conditions.conditions_of(w, phase),
    )
    hooks.post_rollout(w, before.history)


def decide(
    spec: ModelDeploymentSpec,
    status: RolloutStatus,
    observed: Observed,
    verdicts: Sequence[Measurement],
    now: datetime,
    hook_results: Sequence[WebhookResult] = (),
) -> Decision:
    """The next status and actions; feeding the result back with nothing new is a no-op."""
    _require_aware(now)
    w = Work(spec, observed, now, replace(status, observed_generation=observed.generation))
    w.hook_results = tuple(hook_results)
    _observe(w, status)
    _judge_and_step(w, verdicts)
    _publish(w, status)
    actions: list[Action] = desired.resource_actions(w)
    analysis = desired.analysis_action(w)
    if analysis is not None:
        actions.append(analysis)
    actions.extend(w.calls)
    actions.extend(w.events)
    return Decision(w.status, tuple(actions), desired.wake_at(w))


def invalid(status: RolloutStatus, error: SpecError, generation: int, now: datetime) -> Decision:
    """An invalid spec freezes the rollout where it is (phase Degraded) and says why.

    Nothing can be analysed or advanced without a valid spec, so the candidate keeps its
    Deployment but loses its live and mirrored traffic: all of it goes to stable until the
    spec is fixed, when the next decision derives the traffic again. After a switch (the
    candidate already serves everything) the switch stays; only the mirror stops.
    """
    _require_aware(now)
    message = str(error)
    actions: list[Action] = []
    traffic = Traffic()
    if status.stable is not None:
        c = status.candidate
        # After a switch (blue-green, post-promotion) the candidate is what serves and the
        # old stable may be cold: keep the switch, stop only the mirror.
        switched = c is not None and status.traffic.stable == 0 and status.traffic.candidate > 0
        if switched:
            traffic = replace(status.traffic, mirror=0)
        actions.append(
            SetTraffic(
                stable=status.stable.ref.revision,
                candidate=None if c is None else c.ref.revision,
                candidate_weight=traffic.candidate if switched else 0,
                mirror_percent=0,
            )
        )
    if status.phase != Phase.DEGRADED or status.message != message:
        actions.append(Notify(Reason.INVALID_SPEC, message, EventType.WARNING))
    new = replace(
        status,
        phase=Phase.DEGRADED,
        message=message,
        observed_generation=generation,
        traffic=traffic,
        conditions=conditions.degrade(status, message, now),
    )
    return Decision(new, tuple(actions), None)

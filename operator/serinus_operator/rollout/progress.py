"""Moving a rollout forward: readiness, the progress deadline, steps and stage timers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from serinus_operator.api import CanaryStep, ShadowThen, format_duration
from serinus_operator.rollout import evidence, hooks
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.manual import to_canary
from serinus_operator.rollout.status import CandidateStatus, PauseReason, Stage
from serinus_operator.rollout.work import Work

DEADLINE = "ProgressDeadlineExceeded"


def track_stable(w: Work) -> None:
    stable = w.status.stable
    if stable is not None and stable.ready_at is None and w.observed.ready(stable.ref.revision):
        w.set(stable=replace(stable, ready_at=w.now))
        w.emit(
            Reason.STABLE_AVAILABLE,
            f"{stable.ref.version} ({stable.ref.revision}) is available and serves all traffic",
        )


def track_candidate(w: Work) -> None:
    """Start timers once the candidate runs at full size; roll back if it never does."""
    c = w.candidate
    if c is None:
        return
    rev, deadline = c.ref.revision, w.spec.progress_deadline
    if w.observed.deadline_exceeded(rev, c.started_at, w.now):
        w.roll_back(DEADLINE, "its Deployment reports ProgressDeadlineExceeded")
        return
    if c.ready_since is None:
        if w.complete(rev):
            w.set_candidate(ready_since=w.now, step_started_at=w.now, not_ready_since=None)
            w.set(analysis=w.fresh_analysis())
            w.emit(Reason.CANDIDATE_READY, f"{c.ref.version} ({rev}) is available")
        elif w.now - c.started_at >= deadline:
            w.roll_back(
                DEADLINE, f"not available within progressDeadline {format_duration(deadline)}"
            )
        return
    if w.observed.ready(rev):
        _track_full_size(w)
        if w.candidate is None:  # rolled back for staying below full size
            return
        if c.not_ready_since is not None:
            w.set_candidate(not_ready_since=None)
            a = w.status.analysis
            if a is not None:  # what was measured while it had no traffic says nothing
                w.set(analysis=replace(a, last_measured_at=w.now))
            w.emit(Reason.CANDIDATE_READY, f"{c.ref.version} ({rev}) is available again")
    elif c.not_ready_since is None:
        w.set_candidate(not_ready_since=w.now)
        w.emit(
            Reason.CANDIDATE_NOT_READY,
            f"{c.ref.version} ({rev}) lost readiness: no traffic until it recovers",
            warning=True,
        )
    elif w.now - c.not_ready_since >= deadline:
        w.roll_back(
            DEADLINE, f"not ready again within progressDeadline {format_duration(deadline)}"
        )


def full_size(w: Work, revision: str) -> str:
    """ "1/2": ready replicas of the revision out of the spec's."""
    obs = w.observed.revisions.get(revision)
    return f"{0 if obs is None else obs.ready_replicas}/{w.spec.replicas}"


def _track_full_size(w: Work) -> None:
    """A candidate that takes traffic but stays below full size may not wait forever."""
    c = w.candidate
    assert c is not None
    rev = c.ref.revision
    if w.complete(rev):
        if c.not_complete_since is not None:
            w.set_candidate(not_complete_since=None)
    elif c.not_complete_since is None:
        w.set_candidate(not_complete_since=w.now)
    elif w.now - c.not_complete_since >= w.spec.progress_deadline:
        deadline = format_duration(w.spec.progress_deadline)
        w.roll_back(
            DEADLINE,
            f"not back to full size ({full_size(w, rev)} ready) within progressDeadline {deadline}",
        )


def steps_of(w: Work) -> tuple[CanaryStep, ...]:
    canary = w.spec.strategy.canary
    return canary.steps if canary is not None else ()


def step_deadline(w: Work, c: CandidateStatus) -> datetime | None:
    """When the current step or stage timer ends, if it is timed and running."""
    if c.step_started_at is None or c.pause is not None:
        return None
    strategy = w.spec.strategy
    length: timedelta | None = None
    if c.stage == Stage.SHADOW and strategy.shadow is not None:
        length = strategy.shadow.duration
    elif c.stage == Stage.PREVIEW and strategy.blue_green is not None:
        length = strategy.blue_green.preview_duration
    elif c.stage == Stage.POST_PROMOTION and strategy.blue_green is not None:
        length = strategy.blue_green.post_promotion_duration
    elif c.stage == Stage.CANARY:
        steps = steps_of(w)
        if c.step < len(steps) and steps[c.step].pause:
            length = steps[c.step].duration
    return None if length is None else c.step_started_at + length


def _due(w: Work, c: CandidateStatus) -> bool:
    end = step_deadline(w, c)
    return end is not None and w.now >= end


def _measured(w: Work) -> bool:
    """Promotions and switches need evidence (see :mod:`evidence`): with analysis
    configured, the latest measurement passed and was taken at today's exposure. A failure
    still under failureLimit, or an inconclusive answer, waits for the next interval."""
    if evidence.proven(w):
        return True
    w.held = "waiting for a passing measurement"
    return False


def canary_weight(w: Work, step: int) -> int:
    """The weight set by the last ``setWeight`` before ``step``."""
    weight = 0
    for s in steps_of(w)[:step]:
        if s.set_weight is not None:
            weight = s.set_weight
    return weight


def _canary_step(w: Work, c: CandidateStatus) -> bool:
    """Take one canary step if it can be taken now; False when the rollout must wait."""
    steps = steps_of(w)
    if c.step >= len(steps):
        if not w.complete(c.ref.revision) or not _measured(w):
            return False
        if not hooks.confirmed(w, w.hook_results):
            return False
        w.promote(f"all {len(steps)} canary steps passed")
        return True
    step = steps[c.step]
    if step.set_weight is not None and step.set_weight > canary_weight(w, c.step):
        if not evidence.may_grow(w):
            w.held = f"setWeight {step.set_weight} waits for a passing measurement"
            return False
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        evidence.record_growth(w)
        return True
    if step.set_weight is not None or _due(w, c):
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        if step.pause:
            w.emit(Reason.STEP_ADVANCED, f"step {c.step + 1} ({_describe(step)}) done")
        return True
    if step.duration is None:
        w.pause(PauseReason.AWAITING_PROMOTION, f"step {c.step + 1} pauses until promoted")
    return False


def _describe(step: CanaryStep) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    return "pause" if step.duration is None else f"pause {format_duration(step.duration)}"


def _stage_step(w: Work, c: CandidateStatus) -> bool:
    """Advance a shadow, preview or post-promotion stage whose timer ran out."""
    if not _due(w, c):
        return False
    strategy = w.spec.strategy
    if c.stage == Stage.SHADOW:
        if strategy.shadow is not None and strategy.shadow.then == ShadowThen.CANARY:
            to_canary(w)
            return True
        if not w.complete(c.ref.revision) or not _measured(w):
            return False
        if not hooks.confirmed(w, w.hook_results):
            return False
        w.promote("shadow analysis passed")
        return True
    if not w.complete(c.ref.revision) or not _measured(w):
        return False
    if c.stage == Stage.PREVIEW:
        if strategy.blue_green is not None and not strategy.blue_green.auto_promote:
            w.pause(PauseReason.AWAITING_PROMOTION, "preview finished: waiting for promote")
            return False
        if not hooks.confirmed(w, w.hook_results):
            return False
        w.switch()
        return True
    w.promote("post-promotion analysis passed")
    return True


def advance(w: Work) -> None:
    """Take every step that is due now, stopping at the first one that has to wait."""
    for _ in range(len(steps_of(w)) + 4):
        c = w.candidate
        if c is None or c.ready_since is None or c.pause is not None:
            return
        if not w.observed.ready(c.ref.revision):
            return  # hold while it cannot take traffic; the deadline is watched elsewhere
        if not hooks.pre_rollout_open(w):
            return  # no traffic before the PreRollout hooks pass
        took = _canary_step(w, c) if c.stage == Stage.CANARY else _stage_step(w, c)
        if not took:
            return


def scale_down_previous(w: Work) -> None:
    prev = w.status.previous
    if prev is not None and w.now >= prev.scale_down_at:
        w.set(previous=None)
        w.emit(Reason.REVISION_REMOVED, f"{prev.ref.version} ({prev.ref.revision}) removed")

"""Moving a rollout forward: readiness, the progress deadline, and the strategy's steps."""

from __future__ import annotations

from dataclasses import replace

from serinus_operator.api import CandidateScale, format_duration
from serinus_operator.rollout import hooks, strategies
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.sizing import share
from serinus_operator.rollout.status import PauseReason
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
    """Start timers once the candidate runs at its size; roll back if it never does."""
    c = w.candidate
    if c is None:
        return
    rev, deadline = c.ref.revision, w.spec.progress_deadline
    if w.observed.deadline_exceeded(rev, c.started_at, w.now):
        w.roll_back(DEADLINE, "its Deployment reports ProgressDeadlineExceeded")
        return
    if c.ready_since is None:
        if w.observed.complete(rev, strategies.candidate_size(w, c)):
            w.set_candidate(ready_since=w.now, step_started_at=w.now, not_ready_since=None)
            w.set(analysis=w.fresh_analysis())
            w.emit(Reason.CANDIDATE_READY, f"{c.ref.version} ({rev}) is available")
        elif w.now - c.started_at >= deadline:
            problem = w.observed.problem(rev)
            why = "" if problem is None else f": {problem}"
            w.roll_back(
                DEADLINE, f"not available within progressDeadline {format_duration(deadline)}{why}"
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


def size_of(w: Work, revision: str) -> int:
    """The replicas a revision runs now: the candidate's are sized to its traffic."""
    c = w.candidate
    if c is not None and c.ref.revision == revision:
        return strategies.candidate_size(w, c)
    return w.spec.replicas


def _needed_now(w: Work) -> int:
    """The pods the candidate's current traffic needs (all of them unless right-sized)."""
    if w.spec.strategy.candidate_scale == CandidateScale.FULL:
        return w.spec.replicas
    t = w.status.traffic
    return share(w.spec.replicas, max(t.candidate, t.mirror))


def full_size(w: Work, revision: str) -> str:
    """ "1/2": ready replicas of the revision out of the size it runs at."""
    obs = w.observed.revisions.get(revision)
    return f"{0 if obs is None else obs.ready_replicas}/{size_of(w, revision)}"


def _track_full_size(w: Work) -> None:
    """A candidate that takes traffic but stays below the size that traffic needs may not
    wait forever (scaling up for a step still to come is not that: the step waits)."""
    c = w.candidate
    assert c is not None
    rev = c.ref.revision
    if w.observed.complete(rev, _needed_now(w)):
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


# More steps than any one decision can take (canary steps are at most 20, plus the stage
# changes around them): the loop ends when a step must wait, this only bounds a faulty one.
_MOST_STEPS = 64


def advance(w: Work) -> None:
    """Take every step that is due now, stopping at the first one that has to wait."""
    for _ in range(_MOST_STEPS):
        c = w.candidate
        if c is None or c.ready_since is None:
            return
        # A person's promote-full skips analysis, so only their own pause holds it.
        held = c.pause is not None and (
            c.promote_full_at is None or c.pause.reason == PauseReason.MANUAL
        )
        if held or not w.observed.ready(c.ref.revision):
            return  # hold while it cannot take traffic; the deadline is watched elsewhere
        if not hooks.pre_rollout_open(w):
            return  # no traffic before the PreRollout hooks pass
        if c.promote_full_at is not None:
            if w.complete(c.ref.revision):
                w.promote("promoted by request, remaining steps and analysis skipped")
            return  # scaling up to full size first
        if not strategies.of(w).step(w, c):
            return


def scale_down_previous(w: Work) -> None:
    prev = w.status.previous
    if prev is not None and w.now >= prev.scale_down_at:
        w.set(previous=None)
        w.emit(Reason.REVISION_REMOVED, f"{prev.ref.version} ({prev.ref.revision}) removed")

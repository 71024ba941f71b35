"""Gates the strategies share: stage timers, evidence, and finishing a rollout."""

from __future__ import annotations

from datetime import datetime, timedelta

from serinus_operator.rollout import evidence, hooks
from serinus_operator.rollout.status import CandidateStatus
from serinus_operator.rollout.strategies.base import Result
from serinus_operator.rollout.work import Work


def deadline(c: CandidateStatus, length: timedelta | None) -> datetime | None:
    """When a timer of ``length`` started at the current step ends, if it runs (a pause
    stops it)."""
    if length is None or c.step_started_at is None or c.pause is not None:
        return None
    return c.step_started_at + length


def due(w: Work, c: CandidateStatus, length: timedelta | None) -> bool:
    end = deadline(c, length)
    return end is not None and w.now >= end


def measured(w: Work) -> bool:
    """Promotions and switches need evidence (see :mod:`evidence`): with analysis
    configured, the latest measurement passed and was taken at today's exposure. A failure
    still under failureLimit, or an inconclusive answer, waits for the next interval."""
    if evidence.proven(w):
        return True
    w.held = "waiting for a passing measurement"
    return False


def may_finish(w: Work, c: CandidateStatus) -> bool:
    """At full size, with evidence: what a promotion or a switch needs before its hooks."""
    return w.complete(c.ref.revision) and measured(w)


def confirmed(w: Work) -> bool:
    """The ConfirmPromotion hooks approve (asked for, and waited on, if they have not)."""
    return hooks.confirmed(w, w.hook_results)


def not_full_size(w: Work, revision: str) -> str:
    obs = w.observed.revisions.get(revision)
    ready = 0 if obs is None else obs.ready_replicas
    return f"the candidate is not at full size yet ({ready}/{w.spec.replicas} ready)"


def promote_by_request(w: Work, c: CandidateStatus) -> Result:
    """A person's ``promote`` where it means "make it stable now": only at full size."""
    if not w.complete(c.ref.revision):
        return False, not_full_size(w, c.ref.revision)
    w.promote("promoted by request")
    return True, "promoted"

"""Webhook gates, in the Flagger sense (docs/analysis.md), as pure decisions.

- ``PreRollout``: once the candidate is available and before it gets any traffic or mirror,
  every PreRollout hook must answer 2xx. A failed round counts as an analysis failure
  (rolled back past ``failureLimit``; at once without analysis) and is retried each pace.
- ``ConfirmPromotion``: before traffic moves for good (the canary's or shadow's promotion,
  the blue-green switch) every hook must answer 2xx; until then the rollout waits, asking
  again each pace. Not a failure. Manual ``promote-full`` does not wait for it.
- ``Rollback``: asked each pace while the candidate has traffic or mirror; a 2xx from any
  rolls back at once.
- ``PostRollout``: told once when a rollout ends, whatever the outcome; answers are only
  reported.

The engine asks for calls with ``CallWebhooks`` actions and reads the answers back as
``WebhookResult``s; a result not newer than the call it answers is ignored, so a restart
between the two just asks again at the next pace, and answers already counted (the call
time moves to the decision that counted them) are never counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from serinus_operator.api import WebhookSpec, WebhookType
from serinus_operator.rollout.actions import CallWebhooks, Reason
from serinus_operator.rollout.observed import WebhookResult
from serinus_operator.rollout.status import AnalysisStatus, CandidateStatus, HistoryEntry, ts
from serinus_operator.rollout.work import Work

#: How often hooks are asked again without an analysis interval to follow.
DEFAULT_PACE = timedelta(seconds=10)


def pace(w: Work) -> timedelta:
    return w.spec.analysis.interval if w.spec.analysis is not None else DEFAULT_PACE


def payload(w: Work, kind: WebhookType, *, entry: HistoryEntry | None = None) -> dict[str, Any]:
    """What a hook is told; the platform adds ``name`` and ``namespace``."""
    s, c = w.status, w.candidate
    out: dict[str, Any] = {
        "type": kind.value,
        "phase": s.phase.value,
        "stable": None
        if s.stable is None
        else {"revision": s.stable.ref.revision, "version": s.stable.ref.version},
        "candidate": None
        if c is None
        else {
            "revision": c.ref.revision,
            "version": c.ref.version,
            "strategy": str(c.strategy),
            "stage": c.stage.value,
            "step": c.step,
        },
        "weights": s.traffic.to_dict(),
    }
    if entry is not None:
        out["candidate"] = {"revision": entry.revision, "version": entry.version}
        out["outcome"] = {
            "result": entry.outcome.value,
            "reason": entry.reason,
            "message": entry.message,
            "finishedAt": ts(entry.finished_at),
        }
    return out


def _call(w: Work, kind: WebhookType, hooks: tuple[WebhookSpec, ...]) -> None:
    w.calls.append(CallWebhooks(kind, hooks, payload(w, kind)))


def _answers(
    c: CandidateStatus,
    kind: WebhookType,
    hooks: tuple[WebhookSpec, ...],
    results: Sequence[WebhookResult],
    since: datetime | None,
) -> dict[str, WebhookResult] | None:
    """The latest answer of every hook to the current call, or None if one is missing."""
    if since is None:
        return None
    latest: dict[str, WebhookResult] = {}
    for r in sorted(results, key=lambda r: r.at):
        if r.kind == kind and r.revision == c.ref.revision and r.at > since:
            latest[r.name] = r
    if any(h.name not in latest for h in hooks):
        return None
    return latest


def _failures(answers: dict[str, WebhookResult]) -> str:
    return "; ".join(f"{r.name}: {r.message or 'failed'}" for r in answers.values() if not r.ok)


def pre_rollout_open(w: Work) -> bool:
    """The candidate may get traffic: no PreRollout hooks, or they all passed."""
    c = w.candidate
    if c is None or not w.spec.hooks(WebhookType.PRE_ROLLOUT):
        return True
    return c.pre_rollout_passed_at is not None


def pre_rollout(w: Work, results: Sequence[WebhookResult]) -> None:
    hooks = w.spec.hooks(WebhookType.PRE_ROLLOUT)
    c = w.candidate
    if not hooks or c is None or c.ready_since is None or c.pre_rollout_passed_at is not None:
        return
    answers = _answers(c, WebhookType.PRE_ROLLOUT, hooks, results, c.pre_rollout_called_at)
    if answers is not None:
        failed = _failures(answers)
        if not failed:
            w.set_candidate(pre_rollout_passed_at=w.now, step_started_at=w.now)
            w.emit(Reason.WEBHOOK_PASSED, f"PreRollout hooks passed for {c.ref.version}")
            return
        spec = w.spec.analysis
        a = w.status.analysis or AnalysisStatus(started_at=w.now)
        a = replace(a, failures=a.failures + 1)
        if spec is not None:
            w.set(analysis=a)
        limit = spec.failure_limit if spec is not None else 0
        w.emit(
            Reason.WEBHOOK_FAILED,
            f"PreRollout {failed} ({a.failures} of failureLimit {limit})",
            warning=True,
        )
        if a.failures > limit:
            w.roll_back("PreRolloutFailed", f"PreRollout webhook failed: {failed}")
            return
        # Counted: answers older than now are stale from here on, and the next round is
        # one pace away.
        w.set_candidate(pre_rollout_called_at=w.now)
        return
    last = c.pre_rollout_called_at
    if last is None or w.now >= last + pace(w):
        w.set_candidate(pre_rollout_called_at=w.now)
        _call(w, WebhookType.PRE_ROLLOUT, hooks)


def confirmed(w: Work, results: Sequence[WebhookResult]) -> bool:
    """Traffic may move for good: no ConfirmPromotion hooks, or all answered 2xx to the
    latest call. Otherwise ask (again, at the pace) and wait."""
    hooks = w.spec.hooks(WebhookType.CONFIRM_PROMOTION)
    c = w.candidate
    if not hooks or c is None:
        return True
    answers = _answers(c, WebhookType.CONFIRM_PROMOTION, hooks, results, c.confirm_called_at)
    if answers is not None and not _failures(answers):
        return True
    last = c.confirm_called_at
    if last is None:
        w.emit(Reason.AWAITING_CONFIRMATION, f"{c.ref.version} waits for ConfirmPromotion hooks")
    if last is None or w.now >= last + pace(w):
        w.set_candidate(confirm_called_at=w.now)
        _call(w, WebhookType.CONFIRM_PROMOTION, hooks)
    return False


def rollback_requested(w: Work, results: Sequence[WebhookResult]) -> None:
    """A 2xx from any Rollback hook to the latest call rolls back at once."""
    hooks = w.spec.hooks(WebhookType.ROLLBACK)
    c = w.candidate
    if not hooks or c is None:
        return
    if c.rollback_called_at is not None:
        for r in results:
            if (
                r.kind == WebhookType.ROLLBACK
                and r.revision == c.ref.revision
                and r.at > c.rollback_called_at
                and r.ok
            ):
                w.roll_back("RollbackWebhook", f"Rollback webhook {r.name} asked for it")
                return


def ask_rollback(w: Work) -> None:
    """Ask the Rollback hooks again if the pace is up and the candidate has traffic (called
    once the decision's traffic is known)."""
    hooks = w.spec.hooks(WebhookType.ROLLBACK)
    c = w.candidate
    if not hooks or c is None:
        return
    has_traffic = w.status.traffic.candidate > 0 or w.status.traffic.mirror > 0
    last = c.rollback_called_at
    if has_traffic and (last is None or w.now >= last + pace(w)):
        w.set_candidate(rollback_called_at=w.now)
        _call(w, WebhookType.ROLLBACK, hooks)


def post_rollout(w: Work, before: tuple[HistoryEntry, ...]) -> None:
    """Tell PostRollout hooks about every rollout that ended in this decision."""
    hooks = w.spec.hooks(WebhookType.POST_ROLLOUT)
    if not hooks:
        return
    seen = {(h.revision, ts(h.finished_at)) for h in before}
    for entry in w.status.history:
        if (entry.revision, ts(entry.finished_at)) in seen or entry.reason == "FirstRevision":
            continue
        w.calls.append(
            CallWebhooks(
                WebhookType.POST_ROLLOUT,
                hooks,
                payload(w, WebhookType.POST_ROLLOUT, entry=entry),
            )
        )


def wake_times(w: Work) -> list[datetime]:
    """When a paced call is due again."""
    c = w.candidate
    if c is None:
        return []
    out = []
    for last in (c.pre_rollout_called_at, c.confirm_called_at, c.rollback_called_at):
        if last is not None:
            out.append(last + pace(w))
    if (
        w.spec.hooks(WebhookType.PRE_ROLLOUT)
        and c.pre_rollout_passed_at is None
        and c.pre_rollout_called_at is None
        and c.ready_since is not None
    ):
        out.append(w.now + pace(w))
    return out

"""Manual actions: promote, promote-full, abort, pause, resume, retry.

A request arrives with a nonce (see ``api.parse_action``); the status remembers the last
``HANDLED_LIMIT`` handled, so a request is applied exactly once however often the operator
reconciles, and an old annotation put back (a GitOps re-sync, an undo) is not applied again.
A request that makes no sense in the current state is recorded as ignored, with why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from serinus_operator.api import ManualAction, ShadowThen
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.status import HANDLED_LIMIT, LastAction, PauseReason, Stage
from serinus_operator.rollout.work import Work, steps_hash

Result = tuple[bool, str]


def _not_full_size(w: Work, revision: str) -> str:
    obs = w.observed.revisions.get(revision)
    ready = 0 if obs is None else obs.ready_replicas
    return f"the candidate is not at full size yet ({ready}/{w.spec.replicas} ready)"


def _promote(w: Work) -> Result:
    c = w.candidate
    if c is None:
        return False, "no rollout in progress" + (
            "; use retry to roll the failed revision out again" if w.status.rolled_back else ""
        )
    if c.ready_since is None:
        return False, "the candidate is not ready yet"
    rev = c.ref.revision
    if c.stage == Stage.CANARY:
        steps = w.spec.strategy.canary.steps if w.spec.strategy.canary else ()
        on_pause_step = c.step < len(steps) and steps[c.step].pause
        if c.pause is None and not on_pause_step:
            return False, f"step {c.step + 1} is not a pause: nothing to skip"
        if c.pause is not None:
            w.unpause()
        w.set_candidate(approved_at=w.now)  # a person's word stands in for evidence, once
        if on_pause_step:
            w.set_candidate(step=c.step + 1, step_started_at=w.now)
            w.emit(Reason.STEP_ADVANCED, f"step {c.step + 1} skipped by request")
        return True, "continuing with the next step"
    if c.stage == Stage.SHADOW:
        shadow = w.spec.strategy.shadow
        if shadow is not None and shadow.then == ShadowThen.CANARY:
            if c.pause is not None:
                w.unpause()
            to_canary(w)
            w.set_candidate(approved_at=w.now)
            return True, "shadow ended by request; canary steps follow"
    if not w.complete(rev):
        return False, _not_full_size(w, rev)
    if c.stage == Stage.PREVIEW:
        w.switch()
        return True, "switched by request"
    w.promote("promoted by request")
    return True, "promoted"


def to_canary(w: Work) -> None:
    """End a shadow with ``then: Canary``: the canary steps start from step 1."""
    w.set_candidate(
        stage=Stage.CANARY,
        step=0,
        step_started_at=w.now,
        pause=None,
        steps_hash=steps_hash(w.spec.strategy),
    )
    w.set(analysis=w.fresh_analysis())
    w.emit(Reason.STAGE_CHANGED, "shadow finished: continuing as a canary")


def _promote_full(w: Work) -> Result:
    c = w.candidate
    if c is None:
        return False, "no rollout in progress"
    if c.ready_since is None or not w.complete(c.ref.revision):
        return False, _not_full_size(w, c.ref.revision)
    w.promote("promoted by request, remaining steps and analysis skipped")
    return True, "promoted"


def _abort(w: Work) -> Result:
    if w.candidate is None:
        return False, "no rollout in progress"
    w.roll_back("Aborted", "aborted by request", aborted=True)
    return True, "aborted; traffic back on stable"


def _pause(w: Work) -> Result:
    c = w.candidate
    if c is None:
        return False, "no rollout in progress"
    if c.pause is not None:
        return False, f"already paused ({c.pause.reason})"
    w.pause(PauseReason.MANUAL, "paused by request")
    return True, "paused"


def _resume(w: Work) -> Result:
    c = w.candidate
    if c is None or c.pause is None:
        return False, "not paused"
    if c.pause.reason == PauseReason.AWAITING_PROMOTION:
        return False, "this pause waits for a promote, not a resume"
    w.unpause()
    w.emit(Reason.RESUMED, "resumed by request")
    return True, "resumed"


def _retry(w: Work) -> Result:
    failed = w.status.rolled_back
    if w.candidate is not None or failed is None:
        return False, "nothing was rolled back"
    if failed.ref.revision != w.spec.revision:
        return False, "the spec asks for another revision now"
    w.start(failed.ref, Reason.RETRIED)
    return True, "rolling out again from the first step"


_HANDLERS: dict[ManualAction, Callable[[Work], Result]] = {
    ManualAction.PROMOTE: _promote,
    ManualAction.PROMOTE_FULL: _promote_full,
    ManualAction.ABORT: _abort,
    ManualAction.PAUSE: _pause,
    ManualAction.RESUME: _resume,
    ManualAction.RETRY: _retry,
}


def _ignore_invalid(w: Work) -> None:
    """A malformed annotation: one warning event, remembered like a handled request."""
    bad = w.observed.invalid_request
    if bad is None:
        return
    key = _bounded(bad.value)
    if key in w.status.handled:
        return
    w.set(handled=(*w.status.handled, key)[-HANDLED_LIMIT:])
    w.emit(Reason.ACTION_IGNORED, f"request ignored: {_clip(bad.error)}", warning=True)


_KEEP = 100


def _bounded(value: str) -> str:
    """An annotation can hold 256 kB; status keeps a bounded stand-in for a long one."""
    if len(value) <= _KEEP:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[:40]}...sha256:{digest}"


def _clip(text: str) -> str:
    return text if len(text) <= 2 * _KEEP else text[: 2 * _KEEP] + "..."


def apply_request(w: Work) -> None:
    """Apply the observed request unless it was already handled."""
    _ignore_invalid(w)
    req = w.observed.request
    if req is None:
        return
    key = f"{req.action.value}:{req.nonce}"
    last = w.status.last_action
    if key in w.status.handled or (last is not None and f"{last.action}:{last.nonce}" == key):
        return
    applied, message = _HANDLERS[req.action](w)
    w.set(
        last_action=LastAction(req.action.value, req.nonce, w.now, applied, message),
        handled=(*w.status.handled, key)[-HANDLED_LIMIT:],
    )
    if not applied:
        w.emit(Reason.ACTION_IGNORED, f"{req.action} ignored: {message}", warning=True)

"""Manual actions: promote, promote-full, abort, pause, resume, retry.

A request arrives with a nonce (see ``api.parse_action``); the status remembers the last
``HANDLED_LIMIT`` handled, so a request is applied exactly once however often the operator
reconciles, and an old annotation put back (a GitOps re-sync, an undo) is not applied again.
A request that makes no sense in the current state is recorded as ignored, with why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from serinus_operator.api import ManualAction
from serinus_operator.rollout import strategies
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.status import HANDLED_LIMIT, LastAction, PauseReason
from serinus_operator.rollout.strategies import Result, gates
from serinus_operator.rollout.work import Work


def _promote(w: Work) -> Result:
    c = w.candidate
    if c is None:
        return False, "no rollout in progress" + (
            "; use retry to roll the failed revision out again" if w.status.rolled_back else ""
        )
    if c.ready_since is None:
        return False, "the candidate is not ready yet"
    return strategies.of(w).promote(w, c)


def _promote_full(w: Work) -> Result:
    c = w.candidate
    if c is None:
        return False, "no rollout in progress"
    if c.ready_since is None:
        return False, gates.not_full_size(w, c.ref.revision)
    if not w.complete(c.ref.revision):
        # Right-sized below full: scale up first; ``progress.advance`` promotes at full size.
        if c.pause is not None:
            w.unpause()
        w.set_candidate(promote_full_at=w.now)
        return True, f"scaling to {w.spec.replicas} replicas, then promoting"
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
    strategies.start(w, failed.ref, Reason.RETRIED)
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

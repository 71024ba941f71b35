"""Phase, message and conditions: what ``kubectl get`` and ``kubectl describe`` show.

All three are derived from the rest of the status on every decision, never stored as
independent state, so they cannot drift from it (``Degraded`` is the one exception: it is
set only while the spec is invalid, and the next valid decision derives the phase again).
"""

from __future__ import annotations

from datetime import datetime

from serinus_operator.rollout import strategies
from serinus_operator.rollout.progress import full_size
from serinus_operator.rollout.status import Condition, Phase, RolloutStatus, Stage
from serinus_operator.rollout.work import Work

AVAILABLE = "Available"
PROGRESSING = "Progressing"
READY = "Ready"
ANALYSIS = "Analysis"
ORDER = (AVAILABLE, PROGRESSING, READY, ANALYSIS)


def phase_of(w: Work) -> Phase:
    s, c = w.status, w.candidate
    if c is not None:
        if c.pause is not None:
            return Phase.PAUSED
        return Phase.PROMOTING if c.stage == Stage.POST_PROMOTION else Phase.PROGRESSING
    if s.rolled_back is not None:
        return Phase.ROLLED_BACK
    if s.stable is None or s.stable.ready_at is None:
        return Phase.INITIALIZING
    return Phase.STABLE


def message_of(w: Work, phase: Phase) -> str:
    s, c = w.status, w.candidate
    stable = f"{s.stable.ref.version}" if s.stable is not None else "nothing"
    if c is not None:
        where = strategies.of(w).where(w, c)
        if c.ready_since is None:
            where = "waiting for the candidate to become available"
        elif _waiting_for_full_size(w):
            where += f"; waiting for full size ({full_size(w, c.ref.revision)} ready)"
        elif w.held is not None and c.pause is None:
            where += f"; {w.held}"
        t = s.traffic
        head = f"{c.ref.version} vs {stable}: {where}; weight {t.candidate}%, mirror {t.mirror}%"
        return head if c.pause is None else f"{head}; paused: {c.pause.message}"
    if s.rolled_back is not None:
        rb = s.rolled_back
        return f"{rb.ref.version} rolled back ({rb.reason}): {rb.message}; {stable} serves"
    if phase == Phase.INITIALIZING:
        return f"waiting for {stable} to become available"
    return f"{stable} serves all traffic"


def _waiting_for_full_size(w: Work) -> bool:
    c = w.candidate
    return c is not None and c.not_complete_since is not None and c.not_ready_since is None


def _available(w: Work) -> tuple[str, str, str]:
    stable = w.status.stable
    if stable is None:
        return "False", "NoStableRevision", "no revision yet"
    obs = w.observed.revisions.get(stable.ref.revision)
    ready = 0 if obs is None else obs.ready_replicas
    counts = f"{stable.ref.version}: {ready}/{w.spec.replicas} replicas ready"
    if w.observed.ready(stable.ref.revision):
        return "True", "StableAvailable", counts
    return "False", "StableUnavailable", counts


def _progressing(w: Work, phase: Phase) -> tuple[str, str, str]:
    s, c = w.status, w.candidate
    if c is not None and c.pause is not None:
        return "Unknown", c.pause.reason.value, c.pause.message
    if c is not None:
        reason = "Promoting" if phase == Phase.PROMOTING else "RolloutInProgress"
        if _waiting_for_full_size(w):
            size = full_size(w, c.ref.revision)
            return "True", "WaitingForFullSize", f"waiting for full size ({size} ready)"
        return "True", reason, f"{c.ref.version} at stage {c.stage}"
    if s.rolled_back is not None:
        return "False", s.rolled_back.reason, s.rolled_back.message
    if phase == Phase.INITIALIZING:
        return "True", "Initializing", "first revision starting"
    return "False", "RolloutComplete", "no rollout in progress"


def _ready(w: Work, phase: Phase, available: str) -> tuple[str, str, str]:
    if phase == Phase.STABLE and available == "True":
        return "True", "Stable", "all traffic on a ready stable revision"
    if phase == Phase.STABLE:
        return "False", "StableUnavailable", "the stable revision has no ready replicas"
    return "False", phase.value, f"phase is {phase}"


def _analysis(w: Work) -> tuple[str, str, str] | None:
    a, c = w.status.analysis, w.candidate
    if a is None or c is None:
        return None
    counts = f"{a.measurements} measurements, {a.failures} failed, {a.inconclusive} inconclusive"
    if a.result is None:
        return "Unknown", "AwaitingMeasurement", counts
    status = {"Pass": "True", "Fail": "False"}.get(a.result.value, "Unknown")
    return status, {"True": "Passing", "False": "Failing"}.get(status, "Inconclusive"), counts


def merge(
    old: tuple[Condition, ...], new: dict[str, tuple[str, str, str]], now: datetime
) -> tuple[Condition, ...]:
    """Keep ``lastTransitionTime`` unless the condition's status changed."""
    before = {c.type: c for c in old}
    out = []
    for kind in sorted(new, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        status, reason, message = new[kind]
        prior = before.get(kind)
        since = prior.last_transition_time if prior and prior.status == status else now
        out.append(Condition(kind, status, reason, message, since))
    return tuple(out)


def conditions_of(w: Work, phase: Phase) -> tuple[Condition, ...]:
    available = _available(w)
    new = {
        AVAILABLE: available,
        PROGRESSING: _progressing(w, phase),
        READY: _ready(w, phase, available[0]),
    }
    analysis = _analysis(w)
    if analysis is not None:
        new[ANALYSIS] = analysis
    return merge(w.status.conditions, new, w.now)


def degrade(status: RolloutStatus, message: str, now: datetime) -> tuple[Condition, ...]:
    """The same conditions, with Ready False because of the invalid spec."""
    current = {c.type: (c.status, c.reason, c.message) for c in status.conditions}
    current[READY] = ("False", "InvalidSpec", message)
    return merge(status.conditions, current, now)

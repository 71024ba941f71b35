"""Phase, message and conditions: what ``kubectl get`` and ``kubectl describe`` show.

All three are derived from the rest of the status on every decision, never stored as
independent state, so they cannot drift from it (``Degraded`` is the one exception: it is
set only while the spec is invalid, and the next valid decision derives the phase again).

GitOps tools read the conditions as kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) does
(docs/gitops.md): with ``status.observedGeneration`` equal to ``metadata.generation``,

- ``Reconciling=True`` (kstatus: InProgress) while the operator still works toward the spec
  on its own: the first revision starting, a rollout's steps, timers and analysis;
- ``Stalled=True`` (kstatus: Failed) when it cannot get there without a person: rolled
  back, paused for a promote or a resume, an invalid spec, a first revision whose
  Deployment gave up;
- ``Ready=True`` (kstatus: Current) only when the spec's revision is stable, available and
  no rollout runs.

Exactly one of the three holds in every status the engine writes. ``Reconciling`` and
``Stalled`` follow kstatus' "abnormal-true" convention: present only while true, removed
otherwise.
"""

from __future__ import annotations

from datetime import datetime

from serinus_operator.rollout import strategies
from serinus_operator.rollout.progress import DEADLINE, full_size
from serinus_operator.rollout.status import (
    Condition,
    Pause,
    PauseReason,
    Phase,
    RolloutStatus,
    Stage,
)
from serinus_operator.rollout.work import Work

AVAILABLE = "Available"
PROGRESSING = "Progressing"
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ANALYSIS = "Analysis"
ORDER = (AVAILABLE, PROGRESSING, READY, RECONCILING, STALLED, ANALYSIS)
INVALID_SPEC = "InvalidSpec"

#: What a person does to move a rollout on, by what it waits for.
_NEXT_STEP = {
    PauseReason.AWAITING_PROMOTION: "`kubectl serinus promote` to continue, or abort",
    PauseReason.MANUAL: "`kubectl serinus resume` to continue, or promote or abort",
    PauseReason.INCONCLUSIVE: "`kubectl serinus resume` to measure again, or promote or abort",
}


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
            where = "waiting for the candidate to become available" + _why(w, c.ref.revision)
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
        why = "" if s.stable is None else _why(w, s.stable.ref.revision)
        return f"waiting for {stable} to become available{why}"
    return f"{stable} serves all traffic"


def _why(w: Work, revision: str) -> str:
    problem = w.observed.problem(revision)
    return "" if problem is None else f" ({problem})"


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


def _ready(phase: Phase, available: str, message: str) -> tuple[str, str, str]:
    if phase == Phase.STABLE and available == "True":
        return "True", "Stable", "all traffic on a ready stable revision"
    if phase == Phase.STABLE:
        return "False", "StableUnavailable", "the stable revision has no ready replicas"
    return "False", phase.value, message


def _waits_for_a_person(w: Work, pause: Pause) -> bool:
    """An InconclusiveAnalysis pause under ``resumeOnPass`` ends on the next passing
    measurement; every other pause ends only when someone acts."""
    analysis = w.spec.analysis
    resumes = analysis is not None and analysis.resume_on_pass
    return not (pause.reason == PauseReason.INCONCLUSIVE and resumes)


def _stalled(w: Work, phase: Phase, message: str) -> tuple[str, str, str] | None:
    """kstatus' ``Stalled``: the operator cannot reach the spec's desired state on its own."""
    s, c = w.status, w.candidate
    if c is not None:
        if c.pause is None or not _waits_for_a_person(w, c.pause):
            return None
        return "True", c.pause.reason.value, f"{message}; {_NEXT_STEP[c.pause.reason]}"
    if s.rolled_back is not None:
        hint = "change spec.model or `kubectl serinus retry`"
        return "True", s.rolled_back.reason, f"{message}; {hint}"
    stable = s.stable
    if phase == Phase.INITIALIZING and stable is not None:
        rev = stable.ref.revision
        if w.observed.deadline_exceeded(rev, stable.since, w.now):
            why = f"{stable.ref.version} ({rev}): its Deployment reports {DEADLINE}"
            return "True", DEADLINE, f"{why}; nothing serves until it becomes available"
    return None


def _reconciling(
    phase: Phase, progressing: tuple[str, str, str], available: str, message: str
) -> tuple[str, str, str] | None:
    """kstatus' ``Reconciling``: the operator is on its way to the spec's desired state."""
    if phase == Phase.STABLE:
        if available == "True":
            return None
        return "True", "StableUnavailable", message
    status, reason, _ = progressing
    if phase == Phase.PAUSED:  # a pause that resumes on the next passing measurement
        return "True", reason, f"{message}; resumes on the next passing measurement"
    return "True", reason if status == "True" else phase.value, message


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


def conditions_of(w: Work, phase: Phase, message: str | None = None) -> tuple[Condition, ...]:
    """Every condition, from the decided state; ``message`` is the status message."""
    text = message_of(w, phase) if message is None else message
    available = _available(w)
    progressing = _progressing(w, phase)
    new = {
        AVAILABLE: available,
        PROGRESSING: progressing,
        READY: _ready(phase, available[0], text),
    }
    stalled = _stalled(w, phase, text)
    if stalled is not None:
        new[STALLED] = stalled
    else:
        reconciling = _reconciling(phase, progressing, available[0], text)
        if reconciling is not None:
            new[RECONCILING] = reconciling
    analysis = _analysis(w)
    if analysis is not None:
        new[ANALYSIS] = analysis
    return merge(w.status.conditions, new, w.now)


def degrade(status: RolloutStatus, message: str, now: datetime) -> tuple[Condition, ...]:
    """The same conditions, with Ready False and Stalled True because of the invalid spec:
    nothing moves until a person fixes it."""
    current = {c.type: (c.status, c.reason, c.message) for c in status.conditions}
    current[READY] = ("False", INVALID_SPEC, message)
    current[STALLED] = ("True", INVALID_SPEC, message)
    current.pop(RECONCILING, None)
    return merge(status.conditions, current, now)

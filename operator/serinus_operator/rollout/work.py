"""One decision's scratch state, and the transitions every strategy shares.

``Work`` is created and discarded inside one ``decide`` call, so the engine stays a pure
function while its steps read as plain assignments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import ModelDeploymentSpec
from serinus_operator.rollout.actions import CallWebhooks, EventType, Notify, Reason
from serinus_operator.rollout.observed import Observed, WebhookResult
from serinus_operator.rollout.status import (
    HISTORY_LIMIT,
    AnalysisStatus,
    CandidateStatus,
    HistoryEntry,
    Outcome,
    Pause,
    PauseReason,
    PreviousStatus,
    RevisionRef,
    RolledBackStatus,
    RolloutStatus,
    StableStatus,
    Stage,
)

# A revision that carried traffic is not scaled down or removed in the same decision that
# moves the traffic away: routers and in-flight requests need a moment to follow.
GRACE = timedelta(seconds=10)


@dataclass
class Work:
    spec: ModelDeploymentSpec
    observed: Observed
    now: datetime
    status: RolloutStatus
    events: list[Notify] = field(default_factory=list)
    calls: list[CallWebhooks] = field(default_factory=list)
    hook_results: Sequence[WebhookResult] = ()
    held: str | None = None  # why exposure could not grow in this decision, if it could not

    # --- small helpers -------------------------------------------------------------------

    @property
    def target(self) -> RevisionRef:
        """The revision the spec asks for."""
        spec = self.spec
        return RevisionRef(spec.revision, spec.model.version, spec.model, spec.serving)

    @property
    def candidate(self) -> CandidateStatus | None:
        return self.status.candidate

    def emit(self, reason: Reason, message: str, *, warning: bool = False) -> None:
        kind = EventType.WARNING if warning else EventType.NORMAL
        self.events.append(Notify(reason, message, kind))

    def set(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)

    def set_candidate(self, **changes: Any) -> None:
        assert self.status.candidate is not None
        self.set(candidate=replace(self.status.candidate, **changes))

    def complete(self, revision: str) -> bool:
        return self.observed.complete(revision, self.spec.replicas)

    def fresh_analysis(self) -> AnalysisStatus | None:
        return None if self.spec.analysis is None else AnalysisStatus(started_at=self.now)

    def _record(self, ref: RevisionRef, outcome: Outcome, reason: str, message: str) -> None:
        c = self.status.candidate
        entry = HistoryEntry(
            revision=ref.revision,
            version=ref.version,
            outcome=outcome,
            reason=reason,
            started_at=c.started_at if c is not None else self.now,
            finished_at=self.now,
            strategy=c.strategy if c is not None else None,
            message=message,
        )
        self.set(history=(*self.status.history, entry)[-HISTORY_LIMIT:])

    # --- transitions ---------------------------------------------------------------------

    def initialize(self) -> None:
        """The first revision goes straight to stable: there is nothing to compare it with."""
        ref = self.target
        self.set(stable=StableStatus(ref, self.now))
        self._record(ref, Outcome.PROMOTED, "FirstRevision", "first revision, no rollout")
        self.emit(Reason.INITIALIZED, f"first revision {ref.version} ({ref.revision}) is stable")

    def replace_first(self) -> None:
        """The first revision never became available: the new one takes its place outright."""
        old = self.status.stable
        assert old is not None
        new = self.target
        message = f"never available; replaced by {new.version} ({new.revision})"
        self._record(old.ref, Outcome.SUPERSEDED, "Superseded", message)
        self.emit(Reason.SUPERSEDED, f"{old.ref.version} ({old.ref.revision}) {message}")
        self.initialize()

    def start(self, ref: RevisionRef, *, stage: Stage, reason: Reason) -> None:
        """A new candidate at ``stage`` (``strategies.start`` picks it and sets the rest)."""
        strategy = self.spec.strategy
        previous = self.status.previous
        if previous is not None and previous.ref.revision == ref.revision:
            previous = None  # the same Deployment now serves as the candidate
        self.set(
            candidate=CandidateStatus(
                ref=ref,
                strategy=strategy.type,
                stage=stage,
                started_at=self.now,
            ),
            analysis=None,
            rolled_back=None,
            previous=previous,
        )
        stable = self.status.stable
        base = f" from {stable.ref.version}" if stable is not None else ""
        self.emit(reason, f"{strategy.type} rollout of {ref.version} ({ref.revision}){base}")

    def _end(self, outcome: Outcome, reason: str, message: str) -> CandidateStatus:
        c = self.status.candidate
        assert c is not None
        self._record(c.ref, outcome, reason, message)
        self.set(candidate=None)
        return c

    def roll_back(self, reason: str, message: str, *, aborted: bool = False) -> None:
        """All traffic back to stable now; the candidate is kept, scaled to zero, for a retry."""
        outcome = Outcome.ABORTED if aborted else Outcome.ROLLED_BACK
        c = self._end(outcome, reason, message)
        self.set(rolled_back=RolledBackStatus(c.ref, reason, message, self.now))
        event = Reason.ABORTED if aborted else Reason.ROLLED_BACK
        self.emit(event, f"{c.ref.version} ({c.ref.revision}) rolled back: {message}", warning=True)

    def supersede(self, message: str) -> None:
        c = self._end(Outcome.SUPERSEDED, "Superseded", message)
        self.set(analysis=None)
        self.emit(Reason.SUPERSEDED, f"{c.ref.version} ({c.ref.revision}) abandoned: {message}")

    def promote(self, message: str) -> None:
        """The candidate becomes stable; the old stable stays warm for ``scaleDownDelay``.
        The measurement that passed goes into the history and the Event with its numbers: the
        analysis status is cleared here, and a promotion must stay explained."""
        a = self.status.analysis
        if a is not None and a.result == Verdict.PASS:
            why = "; ".join(
                f"{m.name}: {m.message}" if m.message else f"{m.name} {m.value:.4g}"
                for m in a.metrics
                if not m.dry_run and (m.message or m.value is not None)
            )
            message = f"{message} ({why})" if why else message
        c = self._end(Outcome.PROMOTED, "Promoted", message)
        old = self.status.stable
        delay = self.spec.strategy.scale_down_delay
        previous = None
        if old is not None:
            previous = PreviousStatus(old.ref, self.now + max(delay, GRACE))
        self.set(stable=StableStatus(c.ref, self.now, self.now), previous=previous, analysis=None)
        self.emit(Reason.PROMOTED, f"{c.ref.version} ({c.ref.revision}) is stable: {message}")

    def revert(self) -> None:
        """Spec went back to the revision still warm from the last promotion: switch at once."""
        prev, old = self.status.previous, self.status.stable
        assert prev is not None
        assert old is not None
        delay = self.spec.strategy.scale_down_delay
        self._record(prev.ref, Outcome.REVERTED, "Reverted", f"back from {old.ref.version}")
        self.set(
            stable=StableStatus(prev.ref, self.now, self.now),
            previous=PreviousStatus(old.ref, self.now + max(delay, GRACE)),
            rolled_back=None,  # the spec moved on from the failed revision
        )
        self.emit(
            Reason.REVERTED,
            f"reverted to {prev.ref.version} ({prev.ref.revision}) while it was still warm",
        )

    def pause(self, reason: PauseReason, message: str) -> None:
        self.set_candidate(pause=Pause(reason, self.now, message))
        event = (
            Reason.AWAITING_PROMOTION if reason == PauseReason.AWAITING_PROMOTION else Reason.PAUSED
        )
        self.emit(event, message)

    def unpause(self) -> None:
        """Clear a pause; the paused time does not count toward the current step's timer."""
        c = self.status.candidate
        assert c is not None
        assert c.pause is not None
        started = c.step_started_at
        if started is not None and c.pause.reason != PauseReason.AWAITING_PROMOTION:
            started = started + (self.now - c.pause.since)
        self.set_candidate(pause=None, step_started_at=started)
        a = self.status.analysis
        if c.pause.reason == PauseReason.INCONCLUSIVE and a is not None:
            self.set(analysis=replace(a, inconclusive=0))

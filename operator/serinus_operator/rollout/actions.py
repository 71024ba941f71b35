"""What the engine asks a platform to do, as plain data.

Resource actions (``EnsureRevision``, ``ScaleDown``, ``RemoveRevision``, ``SetTraffic``)
describe the desired state and are emitted on every decision, so an executor that crashed
half-way simply converges on the next one; executors apply them idempotently. ``Notify``
is emitted once, on the transition it reports. ``RunAnalysis`` is emitted when a
measurement is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from serinus_operator.api import MetricSpec, WebhookSpec, WebhookType
from serinus_operator.rollout.status import RevisionRef, RolloutStatus, Stage

_T = TypeVar("_T")


class Role(StrEnum):
    STABLE = "stable"
    CANDIDATE = "candidate"
    PREVIOUS = "previous"  # replaced by a promotion, kept warm until scale-down


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
    """Kubernetes Event reasons: one per kind of transition."""

    INITIALIZED = "Initialized"
    STABLE_AVAILABLE = "StableAvailable"  # the first revision became available
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_RESTARTED = "RolloutRestarted"
    CANDIDATE_READY = "CandidateReady"
    CANDIDATE_NOT_READY = "CandidateNotReady"
    WEIGHT_CHANGED = "WeightChanged"
    MIRROR_CHANGED = "MirrorChanged"
    STEP_ADVANCED = "StepAdvanced"
    STAGE_CHANGED = "StageChanged"
    AWAITING_PROMOTION = "AwaitingPromotion"
    TRAFFIC_SWITCHED = "TrafficSwitched"
    PROMOTED = "Promoted"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"
    REVERTED = "Reverted"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    RETRIED = "Retried"
    ACTION_IGNORED = "ActionIgnored"
    REVISION_REMOVED = "RevisionRemoved"
    WEBHOOK_PASSED = "WebhookPassed"
    WEBHOOK_FAILED = "WebhookFailed"
    AWAITING_CONFIRMATION = "AwaitingConfirmation"
    INVALID_SPEC = "InvalidSpec"
    SPEC_FIXED = "SpecFixed"
    DRY_RUN = "AnalysisDryRun"  # a dryRun check failed or was inconclusive: shown only
    MODEL_MOVED = "ModelMoved"  # same sha256 at a new location: pods fetch from there


@dataclass(frozen=True)
class EnsureRevision:
    """Run this revision in its own Deployment and Service (``<name>-<revision>``)."""

    ref: RevisionRef
    role: Role
    replicas: int


@dataclass(frozen=True)
class ScaleDown:
    """Scale a revision to zero but keep its objects (a rolled-back candidate)."""

    revision: str


@dataclass(frozen=True)
class RemoveRevision:
    """Delete a revision's Deployment and Service."""

    revision: str


@dataclass(frozen=True)
class SetTraffic:
    """Route ``100 - candidate_weight`` % to stable, the rest to the candidate, and mirror
    ``mirror_percent`` % of requests to the candidate off the response path."""

    stable: str
    candidate: str | None = None
    candidate_weight: int = 0
    mirror_percent: int = 0

    @property
    def stable_weight(self) -> int:
        return 100 - self.candidate_weight


@dataclass(frozen=True)
class RunAnalysis:
    """Measure ``metrics`` for ``candidate`` (against ``baseline``) over ``window_start``..now
    and pass the results back as a ``Measurement`` on the next decision."""

    candidate: str
    baseline: str
    stage: Stage
    metrics: tuple[MetricSpec, ...]
    min_requests: int
    interval: timedelta
    window_start: datetime
    #: When the analysis run started: compare checks judge counts cumulated since then.
    since: datetime | None = None
    #: Latency compares' thresholds (check, seconds) from this run's earlier looks: a
    #: threshold chosen once is kept, whatever Prometheus answers later.
    thresholds: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Notify:
    """A Kubernetes Event on the ModelDeployment."""

    reason: Reason
    message: str
    type: EventType = EventType.NORMAL


@dataclass(frozen=True)
class CallWebhooks:
    """POST ``payload`` (completed with the object's name and namespace) to each hook and
    pass the answers back as ``WebhookResult``s on the next decision (PostRollout answers
    are only reported)."""

    kind: WebhookType
    hooks: tuple[WebhookSpec, ...]
    payload: Mapping[str, Any]


Action = (
    EnsureRevision | ScaleDown | RemoveRevision | SetTraffic | RunAnalysis | CallWebhooks | Notify
)


@dataclass(frozen=True)
class Decision:
    """The next status, the actions that realise it, and when to look again at the latest."""

    status: RolloutStatus
    actions: tuple[Action, ...]
    wake_at: datetime | None = None

    def of(self, kind: type[_T]) -> list[_T]:
        """The actions of one kind, in order."""
        return [a for a in self.actions if isinstance(a, kind)]

"""What the platform reports about the world, as plain data (no Kubernetes types)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from serinus_operator.api import ActionRequest, InvalidRequest, WebhookType


@dataclass(frozen=True)
class RevisionObservation:
    """One revision's Deployment as last seen.

    ``available`` mirrors the Deployment's Available condition; ``progress_deadline_exceeded``
    its Progressing=False/ProgressDeadlineExceeded condition, and ``deadline_exceeded_at``
    that condition's lastTransitionTime when known (a condition older than the rollout is
    stale: it describes an earlier attempt).
    """

    replicas: int = 0
    ready_replicas: int = 0
    available: bool = False
    progress_deadline_exceeded: bool = False
    deadline_exceeded_at: datetime | None = None
    #: Why its pods are not ready, as they say it (a model fetch that failed, a crash, an
    #: image that cannot be pulled); None when nothing is known to be wrong.
    problem: str | None = None

    @property
    def ready(self) -> bool:
        """May carry live or mirrored traffic."""
        return self.available and self.ready_replicas > 0

    def complete(self, replicas: int) -> bool:
        """Runs at full size: may start taking traffic or be promoted."""
        return self.ready and self.ready_replicas >= replicas


@dataclass(frozen=True)
class Observed:
    """Everything but the spec and the status that a decision depends on.

    ``revisions`` must list every revision of this ModelDeployment that exists on the
    platform, ready or not: any the status no longer refers to is removed.
    """

    generation: int = 0
    revisions: Mapping[str, RevisionObservation] = field(default_factory=dict)
    request: ActionRequest | None = None
    invalid_request: InvalidRequest | None = None  # an annotation that did not parse

    def ready(self, revision: str) -> bool:
        obs = self.revisions.get(revision)
        return obs is not None and obs.ready

    def complete(self, revision: str, replicas: int) -> bool:
        obs = self.revisions.get(revision)
        return obs is not None and obs.complete(replicas)

    def problem(self, revision: str) -> str | None:
        obs = self.revisions.get(revision)
        return None if obs is None else obs.problem

    def deadline_exceeded(self, revision: str, since: datetime, now: datetime) -> bool:
        """The Deployment reports ProgressDeadlineExceeded for the attempt started ``since``.

        Without the condition's time, it is trusted from the decision after the start on.
        """
        obs = self.revisions.get(revision)
        if obs is None or not obs.progress_deadline_exceeded:
            return False
        if obs.deadline_exceeded_at is None:
            return since < now
        return obs.deadline_exceeded_at >= since


@dataclass(frozen=True)
class WebhookResult:
    """One webhook's answer to a ``CallWebhooks`` action: ``ok`` for a 2xx."""

    kind: WebhookType
    name: str
    revision: str
    ok: bool
    at: datetime
    message: str = ""

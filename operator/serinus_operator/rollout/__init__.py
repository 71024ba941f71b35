"""The rollout engine: ``decide(spec, status, observed, verdicts, now) -> Decision``.

Pure: no I/O, no clock but ``now``, no Kubernetes types. See docs/rollouts.md.
"""

from serinus_operator.rollout.actions import (
    Action,
    CallWebhooks,
    Decision,
    EnsureRevision,
    EventType,
    Notify,
    Reason,
    RemoveRevision,
    Role,
    RunAnalysis,
    ScaleDown,
    SetTraffic,
)
from serinus_operator.rollout.engine import decide, invalid
from serinus_operator.rollout.observed import Observed, RevisionObservation, WebhookResult
from serinus_operator.rollout.status import (
    Condition,
    Outcome,
    PauseReason,
    Phase,
    RolloutStatus,
    Stage,
    Traffic,
)

__all__ = [
    "Action",
    "CallWebhooks",
    "Condition",
    "Decision",
    "EnsureRevision",
    "EventType",
    "Notify",
    "Observed",
    "Outcome",
    "PauseReason",
    "Phase",
    "Reason",
    "RemoveRevision",
    "RevisionObservation",
    "Role",
    "RolloutStatus",
    "RunAnalysis",
    "ScaleDown",
    "SetTraffic",
    "Stage",
    "Traffic",
    "WebhookResult",
    "decide",
    "invalid",
]

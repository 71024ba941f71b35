"""The rollout's state, kept entirely in the ModelDeployment's status.

The operator holds no memory between reconciliations: whatever the engine needs to resume
after a restart is here, and ``RolloutStatus.from_dict(s.to_dict()) == s`` for every
status the engine produces.

The records are written and read by the one mapper (``api.wire``) from their fields: a
field's wire key is its name in camelCase, and ``wire(...)`` says only where that is not
so. A new field also goes into the CRD's status schema; ``tests/unit/operator/test_schema.py``
fails until both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Self

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import ModelSpec, ServingSpec, StrategyType, parse_model, parse_serving
from serinus_operator.api.wire import Codec, decode, encode, wire
from serinus_operator.api.wire import ts as ts

HISTORY_LIMIT: Final = 10
HANDLED_LIMIT: Final = 20  # manual requests remembered, so that none is applied twice


class Phase(StrEnum):
    INITIALIZING = "Initializing"  # the first revision is starting
    STABLE = "Stable"  # one revision takes all traffic
    PROGRESSING = "Progressing"  # a candidate is being rolled out
    PAUSED = "Paused"  # a rollout waits for a person (or for conclusive analysis)
    PROMOTING = "Promoting"  # blue-green: switched, old revision warm, post-promotion analysis
    ROLLED_BACK = "RolledBack"  # the candidate failed or was aborted; stable serves
    DEGRADED = "Degraded"  # the spec is invalid; nothing changes until it is fixed


class Stage(StrEnum):
    SHADOW = "Shadow"
    CANARY = "Canary"
    PREVIEW = "Preview"
    POST_PROMOTION = "PostPromotion"


class PauseReason(StrEnum):
    MANUAL = "Manual"
    AWAITING_PROMOTION = "AwaitingPromotion"
    INCONCLUSIVE = "InconclusiveAnalysis"


class Outcome(StrEnum):
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"
    REVERTED = "Reverted"


# --- records ---------------------------------------------------------------------------------


class _Record:
    """The status's records, written and read by the one mapper.

    Written with nulls: status updates are JSON merge patches (RFC 7386), where a key left
    out keeps its stored value, so a cleared field is sent as null; records inside lists are
    replaced whole and carry none. Read leniently: an older status may lack keys.
    """

    def to_dict(self) -> dict[str, Any]:
        return encode(self, nulls=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "status") -> Self:
        """Read a stored status; an empty or missing one is a fresh object."""
        return decode(cls, data or {}, path, strict=False)


#: What a revision runs, as its spec says it (parsed and checked again when read back).
_MODEL: Final = Codec(ModelSpec.to_dict, parse_model, "object")
_SERVING: Final = Codec(ServingSpec.to_dict, parse_serving, "object")
_APPLIED: Final = Codec(
    lambda on: "Applied" if on else "Ignored", lambda v, _: v == "Applied", "string"
)


@dataclass(frozen=True)
class RevisionRef(_Record):
    """A revision and what it runs, so that it can be recreated from status alone."""

    revision: str
    version: str
    model: ModelSpec = field(metadata=wire(key="template.model", codec=_MODEL))
    serving: ServingSpec = field(metadata=wire(key="template.serving", codec=_SERVING))


@dataclass(frozen=True)
class StableStatus(_Record):
    """The revision taking traffic when no rollout runs; ``ready_at`` is first readiness."""

    ref: RevisionRef = field(metadata=wire(inline=True))
    since: datetime
    ready_at: datetime | None = None


@dataclass(frozen=True)
class PreviousStatus(_Record):
    """The revision a promotion replaced, kept warm until ``scale_down_at``."""

    ref: RevisionRef = field(metadata=wire(inline=True))
    scale_down_at: datetime


@dataclass(frozen=True)
class Pause(_Record):
    reason: PauseReason = field(metadata=wire(missing=PauseReason.MANUAL))
    since: datetime
    message: str = ""


@dataclass(frozen=True)
class CandidateStatus(_Record):
    """A rollout in progress: which stage and step, and since when."""

    ref: RevisionRef = field(metadata=wire(inline=True))
    # spec.strategy.type when it started: a StrategyType, or any strategy registered by name
    strategy: str = field(metadata=wire(missing=StrategyType.CANARY))
    stage: Stage = field(metadata=wire(missing=Stage.CANARY))
    started_at: datetime
    step: int = 0
    ready_since: datetime | None = None  # first time fully available; timers start here
    not_ready_since: datetime | None = None  # set while it cannot take traffic
    not_complete_since: datetime | None = None  # set while ready but below full size
    step_started_at: datetime | None = None
    pause: Pause | None = None
    steps_hash: str = ""  # of the canary steps the step index refers to; "" if unknown
    # Webhooks (docs/analysis.md): when PreRollout hooks all passed, and when each kind of
    # hook was last called (a result older than its call is stale; calls are paced).
    pre_rollout_passed_at: datetime | None = None
    pre_rollout_called_at: datetime | None = None
    confirm_called_at: datetime | None = None
    rollback_called_at: datetime | None = None
    # Evidence (docs/rollouts.md, "Guarantees"): exposure may only grow on a passing
    # measurement taken after it last grew, or on a person's promote after it.
    exposed_at: datetime | None = None  # when live weight, mirror or a switch last grew
    passed_at: datetime | None = None  # the latest counted measurement, if it passed
    approved_at: datetime | None = None  # a manual promote, standing in for evidence
    # A person's promote-full while the candidate ran below full size: it is scaled to
    # full size first, then promoted (a promotion never lands on too few pods).
    promote_full_at: datetime | None = None


@dataclass(frozen=True)
class RolledBackStatus(_Record):
    """The revision that failed; kept scaled to zero until the spec moves on or a retry."""

    ref: RevisionRef = field(metadata=wire(inline=True))
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True)
class Traffic(_Record):
    """Live weights (stable + candidate = 100) and the mirrored percentage."""

    stable: int = 100
    candidate: int = 0
    mirror: int = 0


@dataclass(frozen=True)
class MetricStatus(_Record):
    name: str
    result: Verdict = field(metadata=wire(missing=Verdict.INCONCLUSIVE))
    at: datetime
    value: float | None = None
    threshold: float | None = None
    message: str = field(default="", metadata=wire(omit_empty=True))
    dry_run: bool | None = None  # True for a dryRun check (absent otherwise)
    #: A compare check's baseline value, candidate samples and always-valid p-value.
    baseline: float | None = None
    samples: float | None = None
    p_value: float | None = None
    #: A latency compare's threshold (seconds): chosen at the run's first look, then kept.
    slower_than: float | None = None


@dataclass(frozen=True)
class AnalysisStatus(_Record):
    """Counters of one analysis run (one per stage), and the latest value of each metric."""

    started_at: datetime
    last_measured_at: datetime | None = None
    measurements: int = 0
    failures: int = 0
    inconclusive: int = 0
    result: Verdict | None = None
    metrics: tuple[MetricStatus, ...] = ()


@dataclass(frozen=True)
class Condition(_Record):
    type: str
    status: str = field(metadata=wire(missing="Unknown"))  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: datetime


@dataclass(frozen=True)
class HistoryEntry(_Record):
    revision: str
    version: str
    outcome: Outcome = field(metadata=wire(missing=Outcome.PROMOTED))
    reason: str
    started_at: datetime
    finished_at: datetime
    strategy: str | None = None  # as in CandidateStatus
    message: str = field(default="", metadata=wire(omit_empty=True))


@dataclass(frozen=True)
class LastAction(_Record):
    """The last manual request handled; its nonce stops it from being applied twice."""

    action: str
    nonce: str
    at: datetime
    applied: bool = field(metadata=wire(key="result", codec=_APPLIED))
    message: str = ""


@dataclass(frozen=True)
class RolloutStatus(_Record):
    phase: Phase = Phase.INITIALIZING
    message: str = ""
    observed_generation: int = 0
    revision: str = ""  # the revision the spec asks for
    stable: StableStatus | None = None
    candidate: CandidateStatus | None = None
    previous: PreviousStatus | None = None
    rolled_back: RolledBackStatus | None = None
    traffic: Traffic = field(default_factory=Traffic)
    analysis: AnalysisStatus | None = None
    conditions: tuple[Condition, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    last_action: LastAction | None = None
    # the last HANDLED_LIMIT requests, as "<action>:<nonce>"
    handled: tuple[str, ...] = field(default=(), metadata=wire(key="handledActions"))
    # The scale subresource (an HPA reads both): the stable revision's pods, and a label
    # selector for them, which only the platform can spell (set by reconcile).
    replicas: int = 0
    selector: str = ""

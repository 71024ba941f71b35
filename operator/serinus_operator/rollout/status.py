"""The rollout's state, kept entirely in the ModelDeployment's status.

The operator holds no memory between reconciliations: whatever the engine needs to resume
after a restart is here, and ``RolloutStatus.from_dict(s.to_dict()) == s`` for every
status the engine produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import (
    ModelSpec,
    ServingSpec,
    SpecError,
    StrategyType,
    parse_model,
    parse_serving,
)

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


# --- (de)serialisation helpers ---------------------------------------------------------------


def ts(value: datetime) -> str:
    """RFC 3339 in UTC with a 'Z', microseconds kept so that round trips are exact."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def _time(data: Mapping[str, Any], key: str, path: str) -> datetime:
    value = data.get(key)
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key}", f"expected an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"{path}.{key}", f"expected an RFC 3339 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise SpecError(f"{path}.{key}", "time without a timezone")
    return parsed.astimezone(UTC)


def _opt_time(data: Mapping[str, Any], key: str, path: str) -> datetime | None:
    return None if data.get(key) is None else _time(data, key, path)


def _sub(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}.{key}", "expected an object")
    return value


def _text(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    return default if value is None else str(value)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _put(out: dict[str, Any], key: str, value: object) -> None:
    """Set only present values (for records inside lists, which are replaced whole)."""
    if value is None:
        return
    out[key] = ts(value) if isinstance(value, datetime) else value


def _set(out: dict[str, Any], key: str, value: object) -> None:
    """Set a value, an absent one as an explicit null.

    Status updates are JSON merge patches (RFC 7386): a key left out keeps its stored value,
    so a field that was cleared must be sent as null for the API server to delete it.
    """
    out[key] = ts(value) if isinstance(value, datetime) else value


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionRef:
    """A revision and what it runs, so that it can be recreated from status alone."""

    revision: str
    version: str
    model: ModelSpec
    serving: ServingSpec

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "version": self.version,
            "template": {"model": self.model.to_dict(), "serving": self.serving.to_dict()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> RevisionRef:
        template = _sub(data, "template", path) or {}
        return cls(
            revision=_text(data, "revision"),
            version=_text(data, "version"),
            model=parse_model(template.get("model"), f"{path}.template.model"),
            serving=parse_serving(template.get("serving"), f"{path}.template.serving"),
        )


@dataclass(frozen=True)
class StableStatus:
    """The revision taking traffic when no rollout runs; ``ready_at`` is first readiness."""

    ref: RevisionRef
    since: datetime
    ready_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.ref.to_dict() | {"since": ts(self.since)}
        _set(out, "readyAt", self.ready_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> StableStatus:
        return cls(
            RevisionRef.from_dict(data, path),
            _time(data, "since", path),
            _opt_time(data, "readyAt", path),
        )


@dataclass(frozen=True)
class PreviousStatus:
    """The revision a promotion replaced, kept warm until ``scale_down_at``."""

    ref: RevisionRef
    scale_down_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return self.ref.to_dict() | {"scaleDownAt": ts(self.scale_down_at)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> PreviousStatus:
        return cls(RevisionRef.from_dict(data, path), _time(data, "scaleDownAt", path))


@dataclass(frozen=True)
class Pause:
    reason: PauseReason
    since: datetime
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "since": ts(self.since), "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> Pause:
        return cls(
            PauseReason(_text(data, "reason", PauseReason.MANUAL)),
            _time(data, "since", path),
            _text(data, "message"),
        )


@dataclass(frozen=True)
class CandidateStatus:
    """A rollout in progress: which stage and step, and since when."""

    ref: RevisionRef
    strategy: StrategyType
    stage: Stage
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

    def to_dict(self) -> dict[str, Any]:
        out = self.ref.to_dict() | {
            "strategy": self.strategy.value,
            "stage": self.stage.value,
            "step": self.step,
            "startedAt": ts(self.started_at),
        }
        _set(out, "readySince", self.ready_since)
        _set(out, "notReadySince", self.not_ready_since)
        _set(out, "notCompleteSince", self.not_complete_since)
        _set(out, "stepStartedAt", self.step_started_at)
        out["pause"] = None if self.pause is None else self.pause.to_dict()
        out["stepsHash"] = self.steps_hash
        _set(out, "preRolloutPassedAt", self.pre_rollout_passed_at)
        _set(out, "preRolloutCalledAt", self.pre_rollout_called_at)
        _set(out, "confirmCalledAt", self.confirm_called_at)
        _set(out, "rollbackCalledAt", self.rollback_called_at)
        _set(out, "exposedAt", self.exposed_at)
        _set(out, "passedAt", self.passed_at)
        _set(out, "approvedAt", self.approved_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> CandidateStatus:
        pause = _sub(data, "pause", path)
        return cls(
            ref=RevisionRef.from_dict(data, path),
            strategy=StrategyType(_text(data, "strategy", StrategyType.CANARY)),
            stage=Stage(_text(data, "stage", Stage.CANARY)),
            started_at=_time(data, "startedAt", path),
            step=_count(data, "step"),
            ready_since=_opt_time(data, "readySince", path),
            not_ready_since=_opt_time(data, "notReadySince", path),
            not_complete_since=_opt_time(data, "notCompleteSince", path),
            step_started_at=_opt_time(data, "stepStartedAt", path),
            pause=None if pause is None else Pause.from_dict(pause, f"{path}.pause"),
            steps_hash=_text(data, "stepsHash"),
            pre_rollout_passed_at=_opt_time(data, "preRolloutPassedAt", path),
            pre_rollout_called_at=_opt_time(data, "preRolloutCalledAt", path),
            confirm_called_at=_opt_time(data, "confirmCalledAt", path),
            rollback_called_at=_opt_time(data, "rollbackCalledAt", path),
            exposed_at=_opt_time(data, "exposedAt", path),
            passed_at=_opt_time(data, "passedAt", path),
            approved_at=_opt_time(data, "approvedAt", path),
        )


@dataclass(frozen=True)
class RolledBackStatus:
    """The revision that failed; kept scaled to zero until the spec moves on or a retry."""

    ref: RevisionRef
    reason: str
    message: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return self.ref.to_dict() | {
            "reason": self.reason,
            "message": self.message,
            "at": ts(self.at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> RolledBackStatus:
        return cls(
            RevisionRef.from_dict(data, path),
            _text(data, "reason"),
            _text(data, "message"),
            _time(data, "at", path),
        )


@dataclass(frozen=True)
class Traffic:
    """Live weights (stable + candidate = 100) and the mirrored percentage."""

    stable: int = 100
    candidate: int = 0
    mirror: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"stable": self.stable, "candidate": self.candidate, "mirror": self.mirror}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Traffic:
        return cls(
            stable=_count(data, "stable") if "stable" in data else 100,
            candidate=_count(data, "candidate"),
            mirror=_count(data, "mirror"),
        )


@dataclass(frozen=True)
class MetricStatus:
    name: str
    result: Verdict
    at: datetime
    value: float | None = None
    threshold: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "result": self.result.value, "at": ts(self.at)}
        _put(out, "value", self.value)
        _put(out, "threshold", self.threshold)
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> MetricStatus:
        return cls(
            name=_text(data, "name"),
            result=Verdict(_text(data, "result", Verdict.INCONCLUSIVE)),
            at=_time(data, "at", path),
            value=_opt_float(data, "value"),
            threshold=_opt_float(data, "threshold"),
            message=_text(data, "message"),
        )


@dataclass(frozen=True)
class AnalysisStatus:
    """Counters of one analysis run (one per stage), and the latest value of each metric."""

    started_at: datetime
    last_measured_at: datetime | None = None
    measurements: int = 0
    failures: int = 0
    inconclusive: int = 0
    result: Verdict | None = None
    metrics: tuple[MetricStatus, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "startedAt": ts(self.started_at),
            "measurements": self.measurements,
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "metrics": [m.to_dict() for m in self.metrics],
        }
        _set(out, "lastMeasuredAt", self.last_measured_at)
        _set(out, "result", None if self.result is None else self.result.value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> AnalysisStatus:
        result = data.get("result")
        return cls(
            started_at=_time(data, "startedAt", path),
            last_measured_at=_opt_time(data, "lastMeasuredAt", path),
            measurements=_count(data, "measurements"),
            failures=_count(data, "failures"),
            inconclusive=_count(data, "inconclusive"),
            result=None if result is None else Verdict(str(result)),
            metrics=tuple(
                MetricStatus.from_dict(m, f"{path}.metrics[{i}]")
                for i, m in enumerate(data.get("metrics") or [])
            ),
        )


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": ts(self.last_transition_time),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> Condition:
        return cls(
            type=_text(data, "type"),
            status=_text(data, "status", "Unknown"),
            reason=_text(data, "reason"),
            message=_text(data, "message"),
            last_transition_time=_time(data, "lastTransitionTime", path),
        )


@dataclass(frozen=True)
class HistoryEntry:
    revision: str
    version: str
    outcome: Outcome
    reason: str
    started_at: datetime
    finished_at: datetime
    strategy: StrategyType | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "revision": self.revision,
            "version": self.version,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "startedAt": ts(self.started_at),
            "finishedAt": ts(self.finished_at),
        }
        _put(out, "strategy", None if self.strategy is None else self.strategy.value)
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> HistoryEntry:
        strategy = data.get("strategy")
        return cls(
            revision=_text(data, "revision"),
            version=_text(data, "version"),
            outcome=Outcome(_text(data, "outcome", Outcome.PROMOTED)),
            reason=_text(data, "reason"),
            started_at=_time(data, "startedAt", path),
            finished_at=_time(data, "finishedAt", path),
            strategy=None if strategy is None else StrategyType(str(strategy)),
            message=_text(data, "message"),
        )


@dataclass(frozen=True)
class LastAction:
    """The last manual request handled; its nonce stops it from being applied twice."""

    action: str
    nonce: str
    at: datetime
    applied: bool
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "nonce": self.nonce,
            "at": ts(self.at),
            "result": "Applied" if self.applied else "Ignored",
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> LastAction:
        return cls(
            action=_text(data, "action"),
            nonce=_text(data, "nonce"),
            at=_time(data, "at", path),
            applied=data.get("result") == "Applied",
            message=_text(data, "message"),
        )


@dataclass(frozen=True)
class RolloutStatus:
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
    handled: tuple[str, ...] = ()  # the last HANDLED_LIMIT requests, as "<action>:<nonce>"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "phase": self.phase.value,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "traffic": self.traffic.to_dict(),
            "conditions": [c.to_dict() for c in self.conditions],
            "history": [h.to_dict() for h in self.history],
            "handledActions": list(self.handled),
        }
        out["revision"] = self.revision
        for key, record in (
            ("stable", self.stable),
            ("candidate", self.candidate),
            ("previous", self.previous),
            ("rolledBack", self.rolled_back),
            ("analysis", self.analysis),
            ("lastAction", self.last_action),
        ):
            out[key] = None if record is None else record.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RolloutStatus:
        """Read the CR status; an empty or missing status is a fresh object."""
        d: Mapping[str, Any] = data or {}
        p = "status"

        def sub(key: str) -> Mapping[str, Any] | None:
            return _sub(d, key, p)

        stable, candidate, previous = sub("stable"), sub("candidate"), sub("previous")
        rolled_back, analysis, action = sub("rolledBack"), sub("analysis"), sub("lastAction")
        phase = _text(d, "phase", Phase.INITIALIZING) or Phase.INITIALIZING
        return cls(
            phase=Phase(phase),
            message=_text(d, "message"),
            observed_generation=_count(d, "observedGeneration"),
            revision=_text(d, "revision"),
            stable=None if stable is None else StableStatus.from_dict(stable, f"{p}.stable"),
            candidate=(
                None
                if candidate is None
                else CandidateStatus.from_dict(candidate, f"{p}.candidate")
            ),
            previous=(
                None if previous is None else PreviousStatus.from_dict(previous, f"{p}.previous")
            ),
            rolled_back=(
                None
                if rolled_back is None
                else RolledBackStatus.from_dict(rolled_back, f"{p}.rolledBack")
            ),
            traffic=Traffic.from_dict(sub("traffic") or {}),
            analysis=(
                None if analysis is None else AnalysisStatus.from_dict(analysis, f"{p}.analysis")
            ),
            conditions=tuple(
                Condition.from_dict(c, f"{p}.conditions[{i}]")
                for i, c in enumerate(d.get("conditions") or [])
            ),
            history=tuple(
                HistoryEntry.from_dict(h, f"{p}.history[{i}]")
                for i, h in enumerate(d.get("history") or [])
            ),
            last_action=None if action is None else LastAction.from_dict(action, f"{p}.lastAction"),
            handled=tuple(str(x) for x in d.get("handledActions") or []),
        )

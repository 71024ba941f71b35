"""ModelDeployment objects in every phase, produced by the real engine through ``Sim``, and
what kstatus and Argo CD must make of each (docs/gitops.md has the same table)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serinus_operator import api
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import Phase, RevisionObservation, invalid
from support.rfc7386 import merge_patch
from unit.operator.kit import ANALYSIS, BLUE_GREEN, M, S, Sim, spec_dict

IN_PROGRESS, FAILED, CURRENT = "InProgress", "Failed", "Current"
HEALTHY, PROGRESSING, SUSPENDED, DEGRADED = "Healthy", "Progressing", "Suspended", "Degraded"


def md_object(sim: Sim, *, resource_version: int = 100, generation: int | None = None) -> Any:
    """The whole object as the API server would return it, with the status the Sim stored."""
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "generation": sim.generation if generation is None else generation,
            "resourceVersion": str(resource_version),
            "uid": "5f0c6a3e-0000-4000-8000-000000000001",
        },
        "spec": copy.deepcopy(sim.raw),
        "status": copy.deepcopy(sim.stored),
    }


def until(sim: Sim, phase: Phase, *, every: Any = M, limit: int = 40, **step: Any) -> Sim:
    for _ in range(limit):
        if sim.status.phase == phase:
            return sim
        sim.step(every, **step)
    raise AssertionError(f"never reached {phase}: {sim.status.phase} {sim.status.message}")


def rolling(strategy: dict[str, Any] | None = None, **spec: Any) -> Sim:
    """v1 stable, v2 rolling out and taking traffic."""
    sim = Sim.started(spec_dict("v1", strategy=strategy, **spec))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    return sim


def initializing() -> Sim:
    sim = Sim(spec_dict("v1"))
    sim.step()
    return sim


def initializing_stuck() -> Sim:
    sim = initializing()
    sim.pin(sim.revision, RevisionObservation(2, 0, False, progress_deadline_exceeded=True))
    sim.step(11 * M)
    return sim


def waiting_for_candidate() -> Sim:
    sim = Sim.started(spec_dict("v1"))
    sim.new_version("v2")
    sim.step()
    return sim


def progressing() -> Sim:
    return rolling()


def promoting() -> Sim:
    return until(rolling(BLUE_GREEN), Phase.PROMOTING)


def awaiting_promotion() -> Sim:
    return until(rolling(), Phase.PAUSED)


def paused_by_request() -> Sim:
    sim = rolling()
    sim.step(action="pause")
    return sim


def inconclusive(resume_on_pass: bool = False) -> Sim:
    analysis = ANALYSIS | {"resumeOnPass": resume_on_pass}
    return until(
        rolling(analysis=analysis), Phase.PAUSED, every=30 * S, verdict=Verdict.INCONCLUSIVE
    )


def rolled_back() -> Sim:
    return until(rolling(analysis=ANALYSIS), Phase.ROLLED_BACK, every=30 * S, verdict=Verdict.FAIL)


def aborted() -> Sim:
    sim = rolling()
    sim.step(action="abort")
    return sim


def degraded() -> Sim:
    sim = rolling()
    sim.generation += 1
    error = api.SpecError("spec.traffic.provider", "Service cannot mirror: use Router")
    d = invalid(sim.status, error, sim.generation, sim.now + S)
    sim.status, sim.stored = d.status, merge_patch(sim.stored, d.status.to_dict())
    return sim


def stable() -> Sim:
    return Sim.started(spec_dict("v1"))


def stable_unavailable() -> Sim:
    sim = stable()
    sim.set_ready(sim.revision, False)
    sim.step(S)
    return sim


def promoted() -> Sim:
    sim = awaiting_promotion()
    sim.step(action="promote")
    return until(sim, Phase.STABLE, every=5 * M)


def not_observed() -> Sim:
    """A new spec applied; the operator has not decided on it yet."""
    sim = stable()
    sim.new_version("v2")
    return sim


@dataclass(frozen=True)
class Case:
    build: Callable[[], Sim]
    phase: Phase
    condition: str | None  # the one of Ready / Reconciling / Stalled that is True
    reason: str | None
    kstatus: str
    health: str


CASES: dict[str, Case] = {
    "initializing": Case(
        initializing, Phase.INITIALIZING, "Reconciling", "Initializing", IN_PROGRESS, PROGRESSING
    ),
    "initializing-stuck": Case(
        initializing_stuck,
        Phase.INITIALIZING,
        "Stalled",
        "ProgressDeadlineExceeded",
        FAILED,
        DEGRADED,
    ),
    "waiting-for-candidate": Case(
        waiting_for_candidate,
        Phase.PROGRESSING,
        "Reconciling",
        "RolloutInProgress",
        IN_PROGRESS,
        PROGRESSING,
    ),
    "progressing": Case(
        progressing, Phase.PROGRESSING, "Reconciling", "RolloutInProgress", IN_PROGRESS, PROGRESSING
    ),
    "promoting": Case(
        promoting, Phase.PROMOTING, "Reconciling", "Promoting", IN_PROGRESS, PROGRESSING
    ),
    "paused-awaiting-promotion": Case(
        awaiting_promotion, Phase.PAUSED, "Stalled", "AwaitingPromotion", FAILED, SUSPENDED
    ),
    "paused-by-request": Case(
        paused_by_request, Phase.PAUSED, "Stalled", "Manual", FAILED, SUSPENDED
    ),
    "paused-inconclusive": Case(
        inconclusive, Phase.PAUSED, "Stalled", "InconclusiveAnalysis", FAILED, SUSPENDED
    ),
    "paused-inconclusive-resume-on-pass": Case(
        lambda: inconclusive(resume_on_pass=True),
        Phase.PAUSED,
        "Reconciling",
        "InconclusiveAnalysis",
        IN_PROGRESS,
        SUSPENDED,
    ),
    "rolled-back": Case(
        rolled_back, Phase.ROLLED_BACK, "Stalled", "AnalysisFailed", FAILED, DEGRADED
    ),
    "aborted": Case(aborted, Phase.ROLLED_BACK, "Stalled", "Aborted", FAILED, DEGRADED),
    "degraded": Case(degraded, Phase.DEGRADED, "Stalled", "InvalidSpec", FAILED, DEGRADED),
    "stable": Case(stable, Phase.STABLE, "Ready", "Stable", CURRENT, HEALTHY),
    "stable-unavailable": Case(
        stable_unavailable,
        Phase.STABLE,
        "Reconciling",
        "StableUnavailable",
        IN_PROGRESS,
        PROGRESSING,
    ),
    "promoted": Case(promoted, Phase.STABLE, "Ready", "Stable", CURRENT, HEALTHY),
    "generation-not-observed": Case(
        not_observed, Phase.STABLE, "Ready", "Stable", IN_PROGRESS, PROGRESSING
    ),
}


def true_conditions(obj: Any) -> dict[str, str]:
    """Type -> reason of each condition that is True."""
    return {
        c["type"]: c.get("reason", "")
        for c in obj["status"].get("conditions") or []
        if c["status"] == "True"
    }


def gitops_conditions(obj: Any) -> dict[str, str]:
    """Which of Ready / Reconciling / Stalled are True, with their reasons."""
    return {
        k: v for k, v in true_conditions(obj).items() if k in {"Ready", "Reconciling", "Stalled"}
    }

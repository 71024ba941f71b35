"""Rollout strategies, one module each, behind the :class:`Strategy` protocol.

``REGISTRY`` maps ``spec.strategy.type`` to its strategy. Adding a strategy is one module
implementing :class:`Strategy` plus an entry here (and, for users, its value in the API's
``strategy.type``); docs/architecture.md walks through a toy one that the tests register.
"""

from __future__ import annotations

from datetime import datetime

from serinus_operator.api import CandidateScale
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.status import CandidateStatus, RevisionRef
from serinus_operator.rollout.strategies import gates
from serinus_operator.rollout.strategies.base import Result, Strategy
from serinus_operator.rollout.strategies.blue_green import BlueGreen
from serinus_operator.rollout.strategies.canary import Canary
from serinus_operator.rollout.strategies.shadow import Shadow
from serinus_operator.rollout.work import Work

REGISTRY: dict[str, Strategy] = {s.kind: s for s in (Canary(), Shadow(), BlueGreen())}


def of(w: Work) -> Strategy:
    """The strategy the spec asks for."""
    kind = str(w.spec.strategy.type)
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ValueError(f"no rollout strategy {kind!r}; known: {sorted(REGISTRY)}") from None


def start(w: Work, ref: RevisionRef, reason: Reason = Reason.ROLLOUT_STARTED) -> None:
    """Start a rollout of ``ref`` at the strategy's first stage."""
    strategy = of(w)
    w.start(ref, stage=strategy.first_stage(w.spec.strategy), reason=reason)
    strategy.begin(w)


def candidate_size(w: Work, c: CandidateStatus) -> int:
    """Replicas the candidate runs now: full size unless ``candidateScale: Traffic`` (and
    once a person asked for promote-full)."""
    if w.spec.strategy.candidate_scale == CandidateScale.FULL or c.promote_full_at is not None:
        return w.spec.replicas
    return of(w).size(w, c)


def step_deadline(w: Work, c: CandidateStatus) -> datetime | None:
    """When the current stage or step timer ends, if it is timed and running."""
    return gates.deadline(c, of(w).timer(w, c))


__all__ = ["REGISTRY", "Result", "Strategy", "candidate_size", "of", "start", "step_deadline"]

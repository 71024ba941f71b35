"""The ``Strategy`` protocol: everything a rollout strategy decides on its own.

The engine (``rollout/engine.py``) owns what every strategy shares: readiness and the
progress deadline, analysis, webhooks, manual actions' bookkeeping, Events and conditions.
A strategy owns its stages: where a rollout starts, how long each stage or step lasts, what
one step does, the traffic at each stage, and what a person's ``promote`` means there. Each
method sees one decision's :class:`~serinus_operator.rollout.work.Work` and the candidate.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from serinus_operator.api import StrategySpec
from serinus_operator.rollout.status import CandidateStatus, Stage, Traffic
from serinus_operator.rollout.work import Work

#: A manual action's outcome: whether it was applied, and what to tell the person.
Result = tuple[bool, str]


class Strategy(Protocol):
    """One rollout strategy; ``strategies.REGISTRY`` maps ``spec.strategy.type`` to it."""

    #: The ``spec.strategy.type`` value this strategy implements.
    kind: str

    def first_stage(self, spec: StrategySpec) -> Stage:
        """The stage a new rollout starts in."""
        ...

    def fits(self, stage: Stage, spec: StrategySpec) -> bool:
        """Whether a rollout at ``stage`` can continue under an edited ``spec``; if not,
        the engine abandons it and starts again."""
        ...

    def begin(self, w: Work) -> None:
        """Set this strategy's own candidate fields on a rollout that just started."""
        ...

    def edited(self, w: Work) -> None:
        """The spec changed under a running rollout that still fits: adjust to it."""
        ...

    def timer(self, w: Work, c: CandidateStatus) -> timedelta | None:
        """How long the current stage or step lasts, if it is timed."""
        ...

    def step(self, w: Work, c: CandidateStatus) -> bool:
        """Take one step if it can be taken now; False when the rollout must wait.

        The engine calls this only for a ready, unpaused candidate whose PreRollout hooks
        passed, and calls it again after every step taken."""
        ...

    def size(self, w: Work, c: CandidateStatus) -> int:
        """Replicas the candidate needs now: for the traffic it has and for what its next
        step takes (the step waits until they are ready); ``spec.replicas`` before a
        promotion or a switch (``rollout/sizing.py``)."""
        ...

    def traffic(self, w: Work, c: CandidateStatus) -> Traffic:
        """The traffic at the candidate's stage (it is ready and its hooks passed)."""
        ...

    def promote(self, w: Work, c: CandidateStatus) -> Result:
        """A person's ``promote`` on a ready candidate."""
        ...

    def where(self, w: Work, c: CandidateStatus) -> str:
        """Where the rollout is, for the status message: ``Canary step 2/5``."""
        ...

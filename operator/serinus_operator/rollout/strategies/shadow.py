"""Shadow: the candidate gets a mirrored copy of live requests; its answers go nowhere.

The stable revision keeps serving every response while ``mirrorPercent`` of requests are
also sent to the candidate, so that errors, latency and agreement with stable are measured
with no user exposed. When ``duration`` ends, ``then: Promote`` promotes the candidate (at
full size, with a passing measurement, once ConfirmPromotion hooks agree); ``then: Canary``
continues with the canary steps from step 1 (``canary.py``), with a fresh analysis window.
"""

from __future__ import annotations

from datetime import timedelta

from serinus_operator.api import ShadowThen, StrategySpec, StrategyType
from serinus_operator.rollout.sizing import share
from serinus_operator.rollout.status import CandidateStatus, Stage, Traffic
from serinus_operator.rollout.strategies import canary, gates
from serinus_operator.rollout.strategies.base import Result
from serinus_operator.rollout.work import Work


def _then_canary(spec: StrategySpec) -> bool:
    return spec.shadow is not None and spec.shadow.then == ShadowThen.CANARY


class Shadow:
    kind = StrategyType.SHADOW.value

    def first_stage(self, spec: StrategySpec) -> Stage:
        return Stage.SHADOW

    def fits(self, stage: Stage, spec: StrategySpec) -> bool:
        return stage == Stage.SHADOW or (stage == Stage.CANARY and _then_canary(spec))

    def begin(self, w: Work) -> None:
        w.set_candidate(steps_hash=canary.steps_hash(w.spec.strategy))

    def edited(self, w: Work) -> None:
        canary.restart_if_edited(w)

    def timer(self, w: Work, c: CandidateStatus) -> timedelta | None:
        if c.stage == Stage.CANARY:
            return canary.timer(w, c)
        shadow = w.spec.strategy.shadow
        return shadow.duration if shadow is not None else None

    def step(self, w: Work, c: CandidateStatus) -> bool:
        if c.stage == Stage.CANARY:
            return canary.step(w, c)
        if not gates.due(w, c, self.timer(w, c)):
            return False
        if _then_canary(w.spec.strategy):
            canary.enter(w)
            return True
        if not gates.may_finish(w, c) or not gates.confirmed(w):
            return False
        w.promote("shadow analysis passed")
        return True

    def size(self, w: Work, c: CandidateStatus) -> int:
        """Enough pods for the mirrored share; full size once the shadow is over and the
        candidate is to be promoted (``then: Promote``)."""
        if c.stage == Stage.CANARY:
            return canary.size(w, c)
        shadow, full = w.spec.strategy.shadow, w.spec.replicas
        if not _then_canary(w.spec.strategy) and gates.due(w, c, self.timer(w, c)):
            return full
        return share(full, shadow.mirror_percent if shadow is not None else 100)

    def traffic(self, w: Work, c: CandidateStatus) -> Traffic:
        if c.stage == Stage.CANARY:
            return canary.traffic(w, c)
        shadow = w.spec.strategy.shadow
        return Traffic(mirror=shadow.mirror_percent if shadow is not None else 0)

    def promote(self, w: Work, c: CandidateStatus) -> Result:
        if c.stage == Stage.CANARY:
            return canary.promote(w, c)
        if not _then_canary(w.spec.strategy):
            return gates.promote_by_request(w, c)
        if c.pause is not None:
            w.unpause()
        canary.enter(w)
        w.set_candidate(approved_at=w.now)
        return True, "shadow ended by request; canary steps follow"

    def where(self, w: Work, c: CandidateStatus) -> str:
        return canary.where(w, c) if c.stage == Stage.CANARY else str(c.stage)

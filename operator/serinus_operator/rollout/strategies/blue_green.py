"""Blue-green: the candidate runs at full size without traffic, then takes all of it.

``Preview``: the candidate is up but serves nothing (a preview Service reaches it) for
``previewDuration``. Then, at full size, with a passing measurement (if analysis is
configured) and ConfirmPromotion hooks agreeing, traffic switches to it at once
(``autoPromote: false`` waits for a person's ``promote`` instead). ``PostPromotion``: it
serves everything while the old stable stays warm; after ``postPromotionDuration`` and a
pass at full traffic it becomes stable. A rollback switches straight back.
"""

from __future__ import annotations

from datetime import timedelta

from serinus_operator.api import StrategySpec, StrategyType
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.status import CandidateStatus, PauseReason, Stage, Traffic
from serinus_operator.rollout.strategies import gates
from serinus_operator.rollout.strategies.base import Result
from serinus_operator.rollout.work import Work


def switch(w: Work) -> None:
    """All traffic to the candidate at once; the old revision stays warm."""
    c = w.candidate
    assert c is not None
    w.set_candidate(stage=Stage.POST_PROMOTION, step_started_at=w.now, pause=None)
    w.set(analysis=w.fresh_analysis())
    w.emit(Reason.TRAFFIC_SWITCHED, f"all traffic to {c.ref.version} ({c.ref.revision})")


class BlueGreen:
    kind = StrategyType.BLUE_GREEN.value

    def first_stage(self, spec: StrategySpec) -> Stage:
        return Stage.PREVIEW

    def fits(self, stage: Stage, spec: StrategySpec) -> bool:
        return stage in (Stage.PREVIEW, Stage.POST_PROMOTION)

    def begin(self, w: Work) -> None:
        pass  # nothing beyond what every rollout records

    def edited(self, w: Work) -> None:
        pass  # the durations are read afresh on every decision

    def timer(self, w: Work, c: CandidateStatus) -> timedelta | None:
        bg = w.spec.strategy.blue_green
        if bg is None:
            return None
        return bg.preview_duration if c.stage == Stage.PREVIEW else bg.post_promotion_duration

    def step(self, w: Work, c: CandidateStatus) -> bool:
        if not gates.due(w, c, self.timer(w, c)) or not gates.may_finish(w, c):
            return False
        if c.stage == Stage.POST_PROMOTION:
            w.promote("post-promotion analysis passed")
            return True
        bg = w.spec.strategy.blue_green
        if bg is not None and not bg.auto_promote:
            w.pause(PauseReason.AWAITING_PROMOTION, "preview finished: waiting for promote")
            return False
        if not gates.confirmed(w):
            return False
        switch(w)
        return True

    def size(self, w: Work, c: CandidateStatus) -> int:
        return w.spec.replicas  # the preview runs at full size: the switch moves everything

    def traffic(self, w: Work, c: CandidateStatus) -> Traffic:
        if c.stage == Stage.POST_PROMOTION:
            return Traffic(stable=0, candidate=100)
        return Traffic()

    def promote(self, w: Work, c: CandidateStatus) -> Result:
        if c.stage == Stage.POST_PROMOTION:
            return gates.promote_by_request(w, c)
        if not w.complete(c.ref.revision):
            return False, gates.not_full_size(w, c.ref.revision)
        switch(w)
        return True, "switched by request"

    def where(self, w: Work, c: CandidateStatus) -> str:
        return str(c.stage)

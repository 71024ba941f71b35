"""Canary: live traffic to the candidate in ``setWeight`` steps, with pauses between.

Steps ``[setWeight 10, pause 2m, setWeight 50, pause {}]`` walk like this (each weight
increase after the first needs evidence, see :mod:`~serinus_operator.rollout.evidence`):

    step 0  setWeight 10   weight 0 -> 10 as soon as the candidate is ready (first exposure)
    step 1  pause 2m       weight 10; the timer runs unless paused
    step 2  setWeight 50   weight 10 -> 50 once a measurement passed at 10%
    step 3  pause {}       weight 50; waits for a person's promote (AwaitingPromotion)
    end                    promoted at full size, with a pass at 50%, once hooks confirm

The step index means something only under the steps it was counted against, so the
candidate remembers a hash of them; an edit starts the steps again from the first.
Shadow with ``then: Canary`` continues with these same steps (see ``shadow.py``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from serinus_operator.api import (
    CanaryStep,
    CandidateScale,
    StrategySpec,
    StrategyType,
    format_duration,
)
from serinus_operator.rollout import evidence
from serinus_operator.rollout.actions import Reason
from serinus_operator.rollout.sizing import share
from serinus_operator.rollout.status import CandidateStatus, PauseReason, Stage, Traffic
from serinus_operator.rollout.strategies import gates
from serinus_operator.rollout.strategies.base import Result
from serinus_operator.rollout.work import Work


def steps_of(spec: StrategySpec) -> tuple[CanaryStep, ...]:
    return spec.canary.steps if spec.canary is not None else ()


def steps_hash(spec: StrategySpec) -> str:
    """A short hash of the canary steps: the step index only means something under them."""
    canonical = json.dumps(
        [
            [
                s.set_weight,
                s.pause,
                None if s.duration is None else s.duration.total_seconds(),
                *_scale_key(s),
            ]
            for s in steps_of(spec)
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _scale_key(s: CanaryStep) -> list[object]:
    """A setCanaryScale step's part of the hash (nothing for other steps, so the hashes of
    statuses written before setCanaryScale existed stay the same)."""
    scale = s.set_canary_scale
    if scale is None:
        return []
    return [scale.replicas, scale.weight, scale.match_traffic_weight]


def _floor(spec: StrategySpec, full: int, step: int) -> int:
    """The pods the last ``setCanaryScale`` at or before ``step`` asks for (1 if none)."""
    floor = 1
    for s in steps_of(spec)[: step + 1]:
        scale = s.set_canary_scale
        if scale is None:
            continue
        if scale.replicas is not None:
            floor = min(scale.replicas, full)
        elif scale.weight is not None:
            floor = share(full, scale.weight)
        else:
            floor = 1  # matchTrafficWeight
    return floor


def weight(spec: StrategySpec, step: int) -> int:
    """The weight set by the last ``setWeight`` before ``step``."""
    current = 0
    for s in steps_of(spec)[:step]:
        if s.set_weight is not None:
            current = s.set_weight
    return current


def enter(w: Work) -> None:
    """Start the canary steps from step 1 (a shadow with ``then: Canary`` ends here)."""
    w.set_candidate(
        stage=Stage.CANARY,
        step=0,
        step_started_at=w.now,
        pause=None,
        steps_hash=steps_hash(w.spec.strategy),
    )
    w.set(analysis=w.fresh_analysis())
    w.emit(Reason.STAGE_CHANGED, "shadow finished: continuing as a canary")


def restart_if_edited(w: Work) -> None:
    """Edited canary steps: the step index no longer means anything, so start them over."""
    c, current = w.candidate, steps_hash(w.spec.strategy)
    if c is None or c.steps_hash == current:
        return
    if c.stage != Stage.CANARY or not c.steps_hash:
        w.set_candidate(steps_hash=current)  # not on the steps yet, or an older status
        return
    started = w.now if c.ready_since is not None else None
    # A pause someone (or inconclusive analysis) asked for outlives the edit.
    keep = c.pause if c.pause and c.pause.reason != PauseReason.AWAITING_PROMOTION else None
    w.set_candidate(step=0, step_started_at=started, pause=keep, steps_hash=current)
    w.emit(Reason.ROLLOUT_RESTARTED, "canary steps changed: starting them again from step 1")


def timer(w: Work, c: CandidateStatus) -> timedelta | None:
    steps = steps_of(w.spec.strategy)
    if c.step < len(steps) and steps[c.step].pause:
        return steps[c.step].duration
    return None


def size(w: Work, c: CandidateStatus) -> int:
    """Enough pods for the weight of the current step, which a ``setWeight`` step is about
    to set; full size once the steps are done (before the promotion)."""
    spec, full = w.spec.strategy, w.spec.replicas
    if c.step >= len(steps_of(spec)):
        return full
    return max(share(full, weight(spec, c.step + 1)), _floor(spec, full, c.step))


def _describe(step: CanaryStep) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.set_canary_scale is not None:
        return "setCanaryScale"
    return "pause" if step.duration is None else f"pause {format_duration(step.duration)}"


def step(w: Work, c: CandidateStatus) -> bool:
    """Take one canary step if it can be taken now; False when the rollout must wait."""
    steps = steps_of(w.spec.strategy)
    if c.step >= len(steps):
        if not gates.may_finish(w, c) or not gates.confirmed(w):
            return False
        w.promote(f"all {len(steps)} canary steps passed")
        return True
    current = steps[c.step]
    if current.set_canary_scale is not None:
        return _scale_step(w, c)
    if current.set_weight is not None and current.set_weight > weight(w.spec.strategy, c.step):
        if not evidence.may_grow(w):
            w.held = f"setWeight {current.set_weight} waits for a passing measurement"
            return False
        needed = share(w.spec.replicas, current.set_weight)
        if not w.observed.complete(c.ref.revision, needed):
            w.held = f"setWeight {current.set_weight} waits for {needed} ready replicas"
            return False
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        evidence.record_growth(w)
        return True
    if current.set_weight is not None or gates.due(w, c, timer(w, c)):
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        if current.pause:
            w.emit(Reason.STEP_ADVANCED, f"step {c.step + 1} ({_describe(current)}) done")
        return True
    if current.duration is None:
        w.pause(PauseReason.AWAITING_PROMOTION, f"step {c.step + 1} pauses until promoted")
    return False


def _scale_step(w: Work, c: CandidateStatus) -> bool:
    """A ``setCanaryScale`` step is done once the candidate runs the pods it asks for."""
    needed = size(w, c) if w.spec.strategy.candidate_scale == CandidateScale.TRAFFIC else 1
    if not w.observed.complete(c.ref.revision, needed):
        w.held = f"setCanaryScale waits for {needed} ready replicas"
        return False
    w.set_candidate(step=c.step + 1, step_started_at=w.now)
    return True


def traffic(w: Work, c: CandidateStatus) -> Traffic:
    live = weight(w.spec.strategy, c.step)
    return Traffic(stable=100 - live, candidate=live)


def promote(w: Work, c: CandidateStatus) -> Result:
    """``promote`` skips the pause the rollout waits at; it approves the next step once."""
    steps = steps_of(w.spec.strategy)
    on_pause_step = c.step < len(steps) and steps[c.step].pause
    if c.pause is None and not on_pause_step:
        return False, f"step {c.step + 1} is not a pause: nothing to skip"
    if c.pause is not None:
        w.unpause()
    w.set_candidate(approved_at=w.now)  # a person's word stands in for evidence, once
    if on_pause_step:
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        w.emit(Reason.STEP_ADVANCED, f"step {c.step + 1} skipped by request")
    return True, "continuing with the next step"


def where(w: Work, c: CandidateStatus) -> str:
    total = len(steps_of(w.spec.strategy))
    return f"{c.stage} step {min(c.step + 1, total)}/{total}"


class Canary:
    kind = StrategyType.CANARY.value

    def first_stage(self, spec: StrategySpec) -> Stage:
        return Stage.CANARY

    def fits(self, stage: Stage, spec: StrategySpec) -> bool:
        return stage == Stage.CANARY

    def begin(self, w: Work) -> None:
        w.set_candidate(steps_hash=steps_hash(w.spec.strategy))

    def edited(self, w: Work) -> None:
        restart_if_edited(w)

    def timer(self, w: Work, c: CandidateStatus) -> timedelta | None:
        return timer(w, c)

    def step(self, w: Work, c: CandidateStatus) -> bool:
        return step(w, c)

    def size(self, w: Work, c: CandidateStatus) -> int:
        return size(w, c)

    def traffic(self, w: Work, c: CandidateStatus) -> Traffic:
        return traffic(w, c)

    def promote(self, w: Work, c: CandidateStatus) -> Result:
        return promote(w, c)

    def where(self, w: Work, c: CandidateStatus) -> str:
        return where(w, c)

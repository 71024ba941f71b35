"""A strategy is one module: a toy ``Ramp`` registered here runs through the real engine.

``Ramp`` is what a contributor would write in ``rollout/strategies/ramp.py``: live weight
grows by 25% after each passing measurement and the candidate is promoted at 100%. The
engine knows nothing about it beyond the ``Strategy`` protocol, yet readiness, evidence,
analysis, rollbacks, manual actions, Events and conditions all work, and ``Sim`` checks
every decision's invariants (traffic bounds, restart from status, idempotency, the CRD's
status schema) exactly as for the built-in strategies.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from serinus_operator import api
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import Phase, Reason, Stage, Traffic, evidence, strategies
from serinus_operator.rollout.status import CandidateStatus
from serinus_operator.rollout.strategies import Result, Strategy, gates
from serinus_operator.rollout.work import Work
from unit.operator.kit import ANALYSIS, S, Sim, Tick, spec_dict, walk

pytestmark = pytest.mark.unit

R = Reason
PASS, FAIL = Verdict.PASS, Verdict.FAIL
STEP = 25


class Ramp:
    """+25% live weight per passing measurement; promoted at 100% with one more pass."""

    kind = "Ramp"

    def first_stage(self, spec: api.StrategySpec) -> Stage:
        return Stage.CANARY  # a stage the status already knows: live weight to the candidate

    def fits(self, stage: Stage, spec: api.StrategySpec) -> bool:
        return stage == Stage.CANARY

    def begin(self, w: Work) -> None:
        pass

    def edited(self, w: Work) -> None:
        pass

    def timer(self, w: Work, c: CandidateStatus) -> timedelta | None:
        return None  # paced by measurements alone

    def step(self, w: Work, c: CandidateStatus) -> bool:
        if _weight(c) >= 100:
            if not gates.may_finish(w, c) or not gates.confirmed(w):
                return False
            w.promote("ramped to 100%")
            return True
        if not evidence.may_grow(w):
            w.held = f"{_weight(c) + STEP}% waits for a passing measurement"
            return False
        w.set_candidate(step=c.step + 1, step_started_at=w.now)
        evidence.record_growth(w)
        return True

    def traffic(self, w: Work, c: CandidateStatus) -> Traffic:
        return Traffic(stable=100 - _weight(c), candidate=_weight(c))

    def promote(self, w: Work, c: CandidateStatus) -> Result:
        return gates.promote_by_request(w, c)

    def where(self, w: Work, c: CandidateStatus) -> str:
        return f"ramp at {_weight(c)}%"


def _weight(c: CandidateStatus) -> int:
    return min(100, STEP * c.step)


class RampSim(Sim):
    """The spec's strategy is ``Ramp``: the API does not know it, the engine does not care."""

    @property
    def spec(self) -> api.ModelDeploymentSpec:
        spec = super().spec
        return replace(spec, strategy=replace(spec.strategy, type="Ramp"))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _ramp_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    ramp: Strategy = Ramp()
    monkeypatch.setitem(strategies.REGISTRY, ramp.kind, ramp)


def _started(**analysis: object) -> RampSim:
    sim = RampSim(spec_dict("v1", analysis=ANALYSIS | analysis))
    sim.step()
    sim.step()
    sim.new_version("v2")
    return sim


def test_ramp_grows_on_each_pass_and_promotes_at_full_weight() -> None:
    sim = _started(metrics=[{"name": "error-rate", "max": 0.01}])
    walk(
        sim,
        [
            Tick(phase=Phase.PROGRESSING, weight=0, events=(R.ROLLOUT_STARTED,)),
            Tick(S, weight=25, stage=Stage.CANARY),  # first exposure needs no evidence
            Tick(10 * S, weight=25),  # no measurement yet: held
            Tick(30 * S, verdict=PASS, weight=50, events=(R.WEIGHT_CHANGED,)),
            Tick(30 * S, verdict=PASS, weight=75),
            Tick(30 * S, verdict=PASS, weight=100),
            Tick(30 * S, verdict=PASS, phase=Phase.STABLE, stable="v2"),
        ],
    )
    assert sim.status.history[-1].message.startswith("ramped to 100% (error-rate ")


def test_ramp_holds_without_evidence_and_says_why() -> None:
    sim = _started(metrics=[{"name": "error-rate", "max": 0.01}])
    walk(sim, [Tick(), Tick(S, weight=25), Tick(30 * S, verdict=Verdict.INCONCLUSIVE, weight=25)])
    assert "ramp at 25%; 50% waits for a passing measurement" in sim.status.message


def test_ramp_rolls_back_on_failed_analysis_like_any_strategy() -> None:
    sim = _started(metrics=[{"name": "error-rate", "max": 0.01}], failureLimit=0)
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=25),
            Tick(30 * S, verdict=FAIL, phase=Phase.ROLLED_BACK, weight=0),
        ],
    )
    assert R.ROLLED_BACK in sim.events()


def test_manual_promote_goes_through_the_strategy() -> None:
    sim = _started(metrics=[{"name": "error-rate", "max": 0.01}])
    walk(sim, [Tick(), Tick(S, weight=25), Tick(S, action="promote", phase=Phase.STABLE)])
    assert sim.status.last_action is not None
    assert sim.status.last_action.message == "promoted"


def test_an_unknown_strategy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(strategies.REGISTRY, "Ramp")
    sim = RampSim(spec_dict("v1"))
    sim.step()
    sim.step()
    sim.new_version("v2")
    with pytest.raises(ValueError, match="no rollout strategy 'Ramp'"):
        sim.step()

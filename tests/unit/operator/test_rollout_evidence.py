"""Exposure never grows without evidence (docs/rollouts.md, "Guarantees").

The property is checked by an observer that knows only what a user sees in the status:
the traffic, the analysis record (each metric's result and when it was measured) and the
manual actions it sent. A walk then replays the fault test that found the defect: a
Prometheus outage during 100 canaries, some of which became ready only after it began.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import AnalysisSpec
from serinus_operator.rollout import Phase, Reason, RolloutStatus
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    CANARY,
    SHADOW,
    SHADOW_CANARY,
    S,
    Sim,
    Tick,
    spec_dict,
    walk,
)
from unit.operator.test_rollout_properties import op, run

pytestmark = pytest.mark.unit

R = Reason
PASS, FAIL, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
MANY_STEPS: dict[str, Any] = {
    "type": "Canary",
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "10s"}},
            {"setWeight": 40},
            {"setWeight": 60},
            {"pause": {"duration": "10s"}},
            {"setWeight": 80},
        ]
    },
}
FAST = {
    "interval": "5s",
    "failureLimit": 2,
    "inconclusiveLimit": 3,
    "minRequests": 10,
    "metrics": [{"name": "error-rate", "max": 0.01}],
}


@dataclass
class Observer:
    """What exposure a candidate was given, and whether evidence came after it grew.

    ``high`` is the most live weight and mirror share the candidate has had; reaching
    above it is growth. Coming back to an earlier level (after readiness returned) is not.
    Evidence is a measurement the status records as passed, or a person's promote.
    """

    started: datetime | None = None
    high_weight: int = 0
    high_mirror: int = 0
    credit: bool = False

    def see(self, sim: Sim, before: RolloutStatus, action: str | None, *, fed_pass: bool) -> None:
        """``fed_pass``: a passing measurement with enough requests was fed to this decision
        (a promotion ends the analysis record, so the status cannot show it)."""
        s, c = sim.status, sim.status.candidate
        # The candidate became stable (not a revert to the warm previous revision).
        promoted = (
            s.stable is not None
            and before.candidate is not None
            and s.stable.ref.revision == before.candidate.ref.revision
        )
        by_hand = action in ("promote", "promote-full")
        if promoted and before.candidate is not None and self._same(before) and not by_hand:
            assert self.credit or fed_pass, f"promoted without a pass: {s.history[-1]}"
        if c is None or c.started_at != self.started:
            self.started = None if c is None else c.started_at
            self.high_weight = self.high_mirror = 0
            self.credit = False
            if c is None:
                return
        if action in ("promote", "promote-full", "retry"):
            self.credit = True
        a = s.analysis
        if (
            a is not None
            and a.result == Verdict.PASS
            and a.metrics
            and all(m.at == sim.now for m in a.metrics)
        ):
            self.credit = True  # it passed now; a growth in this same decision may use it
        t = s.traffic
        exposed = self.high_weight or self.high_mirror
        if t.candidate > self.high_weight or t.mirror > self.high_mirror:
            assert not exposed or self.credit, (
                f"exposure grew to weight {t.candidate}% mirror {t.mirror}% from "
                f"{self.high_weight}%/{self.high_mirror}% with no passing measurement since"
            )
            self.high_weight = max(self.high_weight, t.candidate)
            self.high_mirror = max(self.high_mirror, t.mirror)
            self.credit = False

    def _same(self, before: RolloutStatus) -> bool:
        return before.candidate is not None and before.candidate.started_at == self.started


def observe(sim: Sim, ops: list[tuple[str, Any]]) -> None:
    watcher = Observer()
    spec = sim.spec.analysis or AnalysisSpec(metrics=())
    for kind, arg in ops:
        before = sim.status
        run(sim, [(kind, arg)])
        no_data_passes = spec.no_data == "Pass"
        enough = kind == "traffic" and (no_data_passes or (arg or 0) >= spec.min_requests)
        passes = {Verdict.PASS, Verdict.NO_DATA} if no_data_passes else {Verdict.PASS}
        fed = (kind == "verdict" and arg in passes) or enough
        watcher.see(sim, before, arg if kind == "action" else None, fed_pass=fed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from([CANARY, SHADOW, SHADOW_CANARY, BLUE_GREEN, MANY_STEPS]),
    analysis=st.sampled_from([ANALYSIS, ANALYSIS | {"noData": "Pass", "minRequests": 0}]),
    ops=st.lists(op, min_size=1, max_size=40),
)
def test_exposure_never_grows_without_a_pass_since_it_last_grew(
    strategy: dict[str, Any], analysis: dict[str, Any], ops: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=analysis))
    sim.new_version("v2")
    sim.step()
    observe(sim, ops)


def test_the_observer_catches_growth_without_evidence() -> None:
    """The property above can fail: without analysis nothing gates, and it says so."""
    sim = Sim.started(spec_dict("v1", strategy=MANY_STEPS))
    sim.new_version("v2")
    sim.step()
    with pytest.raises(AssertionError, match=r"no passing measurement|without a pass"):
        observe(sim, [("wait", timedelta(seconds=1)), ("wait", timedelta(seconds=10))])


def outage(analysis: dict[str, Any]) -> Sim:
    sim = Sim.started(spec_dict("v1", strategy=MANY_STEPS, analysis=analysis))
    sim.new_version("v2")
    return sim


def test_prometheus_outage_before_the_candidate_is_ready_holds_it_at_its_first_step() -> None:
    """The 37 of 100 canaries that became ready during the outage: they reached 60%."""
    walk(
        outage(FAST),
        [
            Tick(phase=Phase.PROGRESSING, weight=0),
            Tick(S, weight=20, events=(R.CANDIDATE_READY, R.WEIGHT_CHANGED)),
            Tick(5 * S, verdict=INC, weight=20, events=(R.ANALYSIS_INCONCLUSIVE,)),
            # the 10s pause is over, yet 40% waits: nothing has passed at 20%
            Tick(5 * S, verdict=INC, weight=20, phase=Phase.PROGRESSING),
            Tick(5 * S, verdict=INC, weight=20),
            Tick(
                5 * S,
                verdict=INC,
                weight=20,
                phase=Phase.PAUSED,
                events=(R.ANALYSIS_INCONCLUSIVE, R.PAUSED),
            ),
            Tick(60 * S, weight=20, phase=Phase.PAUSED, events=()),
        ],
    )


def test_prometheus_outage_mid_rollout_holds_the_weight_it_had() -> None:
    sim = outage(FAST)
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=20),
            Tick(5 * S, verdict=PASS, weight=20),
            Tick(5 * S, verdict=PASS, weight=40, events=(R.STEP_ADVANCED, R.WEIGHT_CHANGED)),
            # 60% follows 40% straight away in the steps, but needs a pass at 40%
            Tick(S, weight=40, events=()),
            Tick(4 * S, verdict=INC, weight=40),
            Tick(5 * S, verdict=INC, weight=40),
            Tick(5 * S, verdict=INC, weight=40, phase=Phase.PROGRESSING),
            Tick(5 * S, verdict=INC, weight=40, phase=Phase.PAUSED),
        ],
    )
    assert sim.status.candidate is not None
    assert sim.status.candidate.step == 3  # on setWeight 60, not past it
    # Paused for InconclusiveAnalysis waits for a person by default, passes or not; the
    # pass it saw at 40% is evidence once resumed.
    walk(sim, [Tick(5 * S, verdict=PASS, weight=40, phase=Phase.PAUSED, events=())])
    walk(sim, [Tick(action="resume", weight=60, events=(R.RESUMED, R.WEIGHT_CHANGED))])


def test_a_held_step_says_what_it_waits_for() -> None:
    sim = outage(FAST)
    walk(sim, [Tick(), Tick(S, weight=20), Tick(10 * S, verdict=INC, weight=20)])
    assert "setWeight 40 waits for a passing measurement" in sim.status.message


def test_a_pass_from_before_the_last_step_is_no_evidence_for_the_next() -> None:
    sim = outage(FAST | {"inconclusiveLimit": 10})
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=20),
            Tick(10 * S, verdict=PASS, weight=40),  # pause over and a pass: 20 -> 40
            Tick(S, verdict=PASS, weight=40),  # its 5s window began before 40%
            Tick(3 * S, verdict=PASS, weight=40),  # and so did this one's
            Tick(S, verdict=PASS, weight=60),  # a whole window at 40%
        ],
    )


def test_resume_on_pass_resumes_by_itself_with_an_event() -> None:
    sim = outage(FAST | {"resumeOnPass": True})
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=20),
            *[Tick(5 * S, verdict=INC, weight=20) for _ in range(4)],
        ],
    )
    assert sim.status.phase == Phase.PAUSED
    walk(
        sim,
        [
            Tick(5 * S, verdict=INC, weight=20, phase=Phase.PAUSED),
            Tick(
                5 * S,
                verdict=PASS,
                weight=40,
                phase=Phase.PROGRESSING,
                events=(R.RESUMED, R.WEIGHT_CHANGED),
            ),
        ],
    )
    assert sim.status.analysis is not None
    assert sim.status.analysis.inconclusive == 0  # the limit counts afresh


def test_resume_on_pass_leaves_a_persons_pause_alone() -> None:
    sim = outage(FAST | {"resumeOnPass": True})
    walk(sim, [Tick(), Tick(S, weight=20), Tick(action="pause", phase=Phase.PAUSED)])
    walk(sim, [Tick(5 * S, verdict=PASS, phase=Phase.PAUSED, events=())])


def test_a_persons_promote_approves_one_step_without_a_measurement() -> None:
    sim = outage(FAST | {"inconclusiveLimit": 0})
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=20),
            Tick(5 * S, verdict=INC, weight=20, phase=Phase.PAUSED),
            # the pause step is done; promote skips nothing but approves setWeight 40
            Tick(action="promote", weight=40, phase=Phase.PROGRESSING),
            Tick(S, weight=40),  # 60 needs evidence again
        ],
    )


@pytest.mark.parametrize("strategy", [SHADOW, BLUE_GREEN])
def test_promotions_and_switches_need_a_pass_at_todays_exposure(strategy: dict[str, Any]) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    sim.step(30 * S, verdict=PASS)
    sim.step(30 * S, verdict=INC)  # the latest measurement did not pass
    phase = sim.status.phase
    sim.step(20 * 60 * S)  # every timer ran out
    assert sim.status.phase == phase
    assert sim.status.candidate is not None
    assert sim.status.traffic.candidate == 0  # neither promoted nor switched


def test_a_candidate_taking_over_its_predecessors_mirror_still_needs_evidence() -> None:
    """Found by the property above: the spec goes to v3 and straight back to v2, so a new v2
    rollout starts mirrored at the same 100% the superseded one had. The traffic numbers did
    not grow, but this candidate's exposure did: its canary step waits for a pass."""
    sim = Sim.started(spec_dict("v1", strategy=SHADOW_CANARY, analysis=ANALYSIS))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, mirror=100)])
    sim.new_version("v3")
    walk(sim, [Tick(), Tick(mirror=100)])
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(mirror=100, events=(R.SUPERSEDED, R.ROLLOUT_STARTED, R.CANDIDATE_READY)),
            Tick(330 * S, weight=0, stage="Canary"),  # the shadow ended; 30% waits
            Tick(30 * S, verdict=PASS, weight=30),
        ],
    )

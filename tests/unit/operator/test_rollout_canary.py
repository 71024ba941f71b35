"""Canary rollouts, step by step, including every way one fails."""

from __future__ import annotations

from dataclasses import replace

import pytest

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import (
    Phase,
    Reason,
    RemoveRevision,
    RevisionObservation,
    RunAnalysis,
    Stage,
)
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    CANARY,
    SHADOW,
    M,
    S,
    Sim,
    Tick,
    spec_dict,
    walk,
)

pytestmark = pytest.mark.unit

R = Reason
PASS, FAIL, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def test_first_revision_goes_straight_to_stable() -> None:
    sim = Sim(spec_dict("v1"))
    walk(
        sim,
        [
            Tick(phase=Phase.INITIALIZING, weight=0, events=(R.INITIALIZED,), stable="v1"),
            Tick(S, phase=Phase.STABLE, weight=0, events=(R.STABLE_AVAILABLE,), stable="v1"),
            Tick(S, phase=Phase.STABLE, weight=0, events=(), stable="v1"),
        ],
    )
    assert sim.status.candidate is None
    assert [h.reason for h in sim.status.history] == ["FirstRevision"]
    assert {c.type: c.status for c in sim.status.conditions} == {
        "Available": "True",
        "Progressing": "False",
        "Ready": "True",
    }


def test_canary_walks_every_step_then_promotes_and_scales_down_later() -> None:
    sim = Sim.started(spec_dict("v1"))
    old = sim.revision
    sim.new_version("v2")
    walk(
        sim,
        [
            # the candidate is created but not ready: no traffic yet
            Tick(phase=Phase.PROGRESSING, weight=0, events=(R.ROLLOUT_STARTED,)),
            # ready: step 1 sets 10%, step 2 is a 2m pause
            Tick(S, weight=10, stage=Stage.CANARY, events=(R.CANDIDATE_READY, R.WEIGHT_CHANGED)),
            Tick(M, weight=10, events=()),
            # 2m later: step 3 sets 50%, step 4 pauses until promoted
            Tick(
                M,
                phase=Phase.PAUSED,
                weight=50,
                events=(R.STEP_ADVANCED, R.AWAITING_PROMOTION, R.WEIGHT_CHANGED),
            ),
            Tick(5 * M, phase=Phase.PAUSED, weight=50, events=()),
            # promote: step 5 sets 80% and the steps are done, so all traffic moves over
            Tick(action="promote", phase=Phase.STABLE, weight=0, stable="v2"),
        ],
    )
    assert sim.events() == [R.STEP_ADVANCED, R.PROMOTED]
    assert sim.status.previous is not None
    assert sim.status.previous.ref.revision == old
    assert old in sim.world  # kept warm for scaleDownDelay (30s by default)
    walk(sim, [Tick(29 * S, events=()), Tick(S, events=(R.REVISION_REMOVED,))])
    assert sim.last is not None
    assert RemoveRevision(old) in sim.last.actions
    sim.step()
    assert old not in sim.world
    assert [h.outcome for h in sim.status.history] == ["Promoted", "Promoted"]


def test_analysis_failure_past_the_limit_rolls_back_at_once() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(events=(R.ROLLOUT_STARTED,)),
            Tick(S, weight=10),
            Tick(30 * S, verdict=PASS, weight=10, events=()),
            # failureLimit 1: the first failure is tolerated, the second rolls back
            Tick(30 * S, verdict=FAIL, weight=10, events=(R.ANALYSIS_FAILED,)),
            Tick(
                30 * S,
                verdict=FAIL,
                phase=Phase.ROLLED_BACK,
                weight=0,
                events=(R.ANALYSIS_FAILED, R.ROLLED_BACK),
                stable="v1",
            ),
            # it stays rolled back however long we wait, the spec still asking for v2
            Tick(M * 60, phase=Phase.ROLLED_BACK, weight=0, events=()),
        ],
    )
    rb = sim.status.rolled_back
    assert rb is not None
    assert rb.reason == "AnalysisFailed"
    assert "error-rate" in rb.message
    assert sim.status.history[-1].outcome == "RolledBack"
    assert sim.world[rb.ref.revision].replicas == 0  # scaled down, kept for a retry


def test_failure_limit_counts_all_failures_not_consecutive_ones() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S),
            Tick(30 * S, verdict=FAIL, phase=Phase.PROGRESSING),
            Tick(30 * S, verdict=PASS, phase=Phase.PROGRESSING),
            Tick(30 * S, verdict=FAIL, phase=Phase.ROLLED_BACK),
        ],
    )


def test_inconclusive_past_the_limit_pauses_and_resume_continues() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=10),
            Tick(30 * S, verdict=INC, events=(R.ANALYSIS_INCONCLUSIVE,)),
            Tick(30 * S, verdict=INC, phase=Phase.PROGRESSING),
            Tick(
                30 * S,
                verdict=INC,
                phase=Phase.PAUSED,
                weight=10,
                events=(R.ANALYSIS_INCONCLUSIVE, R.PAUSED),
            ),
            # the 2m pause step does not run out while the rollout is paused
            Tick(5 * M, phase=Phase.PAUSED, weight=10),
            Tick(action="resume", phase=Phase.PROGRESSING, weight=10, events=(R.RESUMED,)),
        ],
    )
    c, a = sim.status.candidate, sim.status.analysis
    assert c is not None
    assert a is not None
    assert a.inconclusive == 0  # counting starts over after a resume
    assert c.step == 1  # 1.5m of the 2m pause had passed before the analysis paused
    # The pause step ends, but resuming is no evidence: 50% waits for a measurement to pass.
    walk(
        sim,
        [
            Tick(29 * S, weight=10),
            Tick(S, weight=10, phase=Phase.PROGRESSING),
            Tick(10 * S, verdict=PASS, weight=50, phase=Phase.PAUSED),
        ],
    )


def test_failures_still_roll_back_while_paused() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS | {"failureLimit": 0}))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S),
            Tick(action="pause", phase=Phase.PAUSED, events=(R.PAUSED,)),
            Tick(30 * S, verdict=FAIL, phase=Phase.ROLLED_BACK, weight=0),
        ],
    )


@pytest.mark.parametrize(
    ("policy", "phase", "counter"),
    [
        ("Inconclusive", Phase.PROGRESSING, "inconclusive"),
        ("Fail", Phase.PROGRESSING, "failures"),
        ("Pass", Phase.PROGRESSING, None),
    ],
)
def test_no_data_follows_the_explicit_policy(
    policy: str, phase: Phase, counter: str | None
) -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS | {"noData": policy}))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S), Tick(30 * S, verdict=Verdict.NO_DATA, phase=phase)])
    a = sim.status.analysis
    assert a is not None
    assert a.failures == (1 if counter == "failures" else 0)
    assert a.inconclusive == (1 if counter == "inconclusive" else 0)
    assert all("noData" in m.message for m in a.metrics)


def test_too_little_traffic_gives_no_verdict_even_if_metrics_look_bad() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S)])
    walk(sim, [Tick(30 * S, verdict=FAIL, requests=9, events=(R.ANALYSIS_INCONCLUSIVE,))])
    walk(sim, [Tick(30 * S, verdict=FAIL, requests=None, events=(R.ANALYSIS_INCONCLUSIVE,))])
    a = sim.status.analysis
    assert a is not None
    assert a.failures == 0
    assert "minRequests" in a.metrics[0].message or "unknown" in a.metrics[0].message


def test_a_metric_missing_from_a_measurement_is_no_data_not_a_pass() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS | {"noData": "Fail", "failureLimit": 0}))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S)])
    walk(sim, [Tick(30 * S, verdict={"error-rate": PASS}, phase=Phase.ROLLED_BACK)])
    rb = sim.status.rolled_back
    assert rb is not None
    assert "agreement" in rb.message


def test_measurements_are_counted_once_and_only_for_the_candidate() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS | {"failureLimit": 0}))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S)])
    sim.step(30 * S, verdict=PASS)
    old = sim.measurement(FAIL)
    stale = type(old)(old.at - M, old.revision, old.results, old.requests)
    other = type(old)(old.at, "0123456789", old.results, old.requests)
    sim.step(S, measurements=[stale, other])
    assert sim.status.phase == Phase.PROGRESSING
    a = sim.status.analysis
    assert a is not None
    assert a.measurements == 1


def test_candidate_that_never_becomes_ready_is_rolled_back_at_the_deadline() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.pin(sim.new_version("v2"), RevisionObservation(2, 0, False))
    walk(
        sim,
        [
            Tick(events=(R.ROLLOUT_STARTED,)),
            Tick(9 * M, phase=Phase.PROGRESSING, weight=0),
            Tick(M, phase=Phase.ROLLED_BACK, weight=0, events=(R.ROLLED_BACK,)),
        ],
    )
    rb = sim.status.rolled_back
    assert rb is not None
    assert rb.reason == "ProgressDeadlineExceeded"
    assert "10m" in rb.message


def test_deployment_progress_deadline_rolls_back_immediately() -> None:
    sim = Sim.started(spec_dict("v1"))
    rev = sim.new_version("v2")
    sim.step()
    sim.pin(rev, RevisionObservation(2, 0, False, progress_deadline_exceeded=True))
    walk(sim, [Tick(S, phase=Phase.ROLLED_BACK, events=(R.ROLLED_BACK,))])


def test_candidate_losing_readiness_loses_its_traffic_then_is_rolled_back() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S, weight=10),
            Tick(S, ready=False, weight=0, events=(R.CANDIDATE_NOT_READY,)),
            Tick(30 * S, weight=0, phase=Phase.PROGRESSING),
            Tick(S, ready=True, weight=10, events=(R.CANDIDATE_READY, R.WEIGHT_CHANGED)),
            Tick(S, ready=False, weight=0),
            Tick(10 * M, phase=Phase.ROLLED_BACK, events=(R.ROLLED_BACK,)),
        ],
    )


@pytest.mark.parametrize("strategy", [CANARY, SHADOW], ids=["canary", "shadow"])
def test_no_analysis_runs_or_counts_while_the_candidate_is_not_ready(
    strategy: dict[str, object],
) -> None:
    """Unready, it has no traffic: a noData: Fail policy must not roll it back for that."""
    analysis = ANALYSIS | {"noData": "Fail", "failureLimit": 0, "interval": "1m"}
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=analysis))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S), Tick(S, ready=False, events=(R.CANDIDATE_NOT_READY,))])
    lost = sim.now
    for _ in range(3):
        d = sim.step(M, verdict=Verdict.NO_DATA, requests=0)
        assert not d.of(RunAnalysis)
        assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.analysis is not None
    assert sim.status.analysis.failures == 0
    sim.set_ready(sim.candidate, True)
    stale = sim.measurement(Verdict.FAIL)
    stale = replace(stale, at=lost + M)
    d = sim.step(S, measurements=[stale])
    assert sim.status.candidate is not None, "a measurement from the outage counted"
    assert sim.status.analysis is not None
    assert sim.status.analysis.failures == 0
    recovered = sim.now
    d = sim.step(M)
    runs = d.of(RunAnalysis)
    assert len(runs) == 1
    assert runs[0].window_start == recovered


def test_step_timers_wait_for_the_candidate_to_be_ready() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, weight=10), Tick(S, ready=False, weight=0)])
    # the 2m pause runs out while the candidate is down: nothing advances
    walk(sim, [Tick(3 * M, weight=0)])
    c = sim.status.candidate
    assert c is not None
    assert c.step == 1
    walk(sim, [Tick(S, ready=True, weight=50, phase=Phase.PAUSED)])


def test_wake_at_is_the_next_timer() -> None:
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    d = sim.step()
    assert d.wake_at == sim.now + 10 * M  # the progress deadline
    d = sim.step(S)
    assert d.wake_at == sim.now + 30 * S  # the first measurement
    d = sim.step(30 * S, verdict=PASS)
    assert d.wake_at == sim.now + 30 * S


def test_wake_at_comes_back_when_a_measurement_is_overdue() -> None:
    """A RunAnalysis whose result has not arrived yet must not leave the operator asleep."""
    sim = Sim.started(spec_dict("v1", analysis=ANALYSIS))
    sim.new_version("v2")
    sim.step()
    sim.step(S)  # ready; the 2m pause step runs
    d = sim.step(30 * S)  # the measurement is due, none has come back
    assert d.of(RunAnalysis)
    assert d.wake_at == sim.now + 30 * S
    d = sim.step(10 * S)  # still none: overdue
    assert d.wake_at == sim.now + 30 * S


def test_wake_at_includes_the_scale_down_of_the_replaced_revision() -> None:
    strategy = {"canary": {"steps": [{"setWeight": 50}]}, "scaleDownDelay": "5m"}
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    old = sim.revision
    sim.new_version("v2")
    sim.step()
    d = sim.step(S)
    assert sim.status.phase == Phase.STABLE
    assert d.wake_at == sim.now + 5 * M  # nothing else is pending
    d = sim.step(5 * M)
    assert RemoveRevision(old) in d.actions
    assert d.wake_at is None


def test_steps_starting_with_a_pause_send_no_traffic_until_a_weight_is_set() -> None:
    strategy = {"type": "Canary", "canary": {"steps": [{"pause": {"duration": "1m"}}]}}
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(weight=0),
            Tick(S, weight=0, phase=Phase.PROGRESSING),
            Tick(M, weight=0, phase=Phase.STABLE, stable="v2"),
        ],
    )


def test_canary_promotion_waits_for_the_full_size() -> None:
    sim = Sim.started(spec_dict("v1", strategy={"canary": {"steps": [{"setWeight": 50}]}}))
    rev = sim.new_version("v2")
    sim.pin(rev, RevisionObservation(2, 1, True))  # serving, but not at full size
    walk(sim, [Tick(weight=0), Tick(10 * S, weight=0, phase=Phase.PROGRESSING)])
    sim.set_ready(rev, True)
    walk(sim, [Tick(S, phase=Phase.STABLE, stable="v2")])


def test_partly_ready_candidate_keeps_its_weight_but_is_not_promoted() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1m"}}]
    sim = Sim.started(spec_dict("v1", strategy={"canary": {"steps": steps}}))
    rev = sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, weight=50)])
    sim.pin(rev, RevisionObservation(2, 1, True))  # one pod restarting: still serving
    walk(sim, [Tick(M, weight=50, phase=Phase.PROGRESSING), Tick(M, weight=50)])
    sim.set_ready(rev, True)
    walk(sim, [Tick(S, phase=Phase.STABLE, stable="v2")])
    assert CANARY["canary"]["steps"][0] == {"setWeight": 10}


PARTIAL: list[tuple[str, dict[str, object]]] = [
    ("canary", {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}]}}),
    ("shadow", SHADOW),
    ("bluegreen", BLUE_GREEN),
]


@pytest.mark.parametrize("strategy", [p[1] for p in PARTIAL], ids=[p[0] for p in PARTIAL])
def test_a_candidate_stuck_below_full_size_says_so_and_rolls_back_at_the_deadline(
    strategy: dict[str, object],
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    rev = sim.new_version("v2")
    walk(sim, [Tick(), Tick(S)])
    sim.pin(rev, RevisionObservation(2, 1, True))  # serving, one pod never comes back
    d = sim.step(S)
    lost = sim.now
    assert d.wake_at is not None
    assert d.wake_at <= lost + 10 * M
    assert "waiting for full size (1/2 ready)" in sim.status.message
    progressing = {c.type: c for c in sim.status.conditions}["Progressing"]
    assert (progressing.reason, progressing.message) == (
        "WaitingForFullSize",
        "waiting for full size (1/2 ready)",
    )
    walk(sim, [Tick(9 * M, phase=Phase.PROGRESSING), Tick(M - S, phase=Phase.PROGRESSING)])
    assert sim.last is not None
    assert sim.last.wake_at == lost + 10 * M
    walk(sim, [Tick(S, phase=Phase.ROLLED_BACK, weight=0, events=(R.ROLLED_BACK,))])
    assert sim.status.rolled_back is not None
    assert sim.status.rolled_back.reason == "ProgressDeadlineExceeded"
    assert "1/2 ready" in sim.status.rolled_back.message


def test_a_candidate_back_at_full_size_in_time_is_not_rolled_back() -> None:
    steps = [{"setWeight": 50}, {"pause": {}}]
    sim = Sim.started(spec_dict("v1", strategy={"canary": {"steps": steps}}))
    rev = sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, weight=50)])
    sim.pin(rev, RevisionObservation(2, 1, True))
    walk(sim, [Tick(S), Tick(9 * M, phase=Phase.PAUSED)])
    sim.set_ready(rev, True)
    walk(sim, [Tick(S, phase=Phase.PAUSED), Tick(10 * M, phase=Phase.PAUSED, weight=50)])
    assert sim.status.candidate is not None
    assert sim.status.candidate.not_complete_since is None

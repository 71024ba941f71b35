"""Manual actions, new revisions mid-rollout, reverts, retries and invalid specs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from serinus_operator import api
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import (
    Notify,
    Observed,
    Phase,
    Reason,
    RemoveRevision,
    RevisionObservation,
    RolloutStatus,
    decide,
    invalid,
)
from serinus_operator.rollout.status import Outcome
from unit.operator.kit import ANALYSIS, BLUE_GREEN, SHADOW, T0, M, S, Sim, Tick, spec_dict, walk

pytestmark = pytest.mark.unit

R = Reason


def rolling(strategy: Mapping[str, Any] | None = None, **kw: Any) -> Sim:
    """v1 stable, v2 rolling out and ready."""
    sim = Sim.started(spec_dict("v1", strategy=strategy, **kw))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    return sim


@pytest.mark.parametrize(
    ("action", "phase", "weight", "events"),
    [
        ("abort", Phase.ROLLED_BACK, 0, (R.ABORTED,)),
        ("pause", Phase.PAUSED, 10, (R.PAUSED,)),
        ("resume", Phase.PROGRESSING, 10, (R.ACTION_IGNORED,)),
        ("promote", Phase.PAUSED, 50, (R.STEP_ADVANCED, R.AWAITING_PROMOTION, R.WEIGHT_CHANGED)),
        ("promote-full", Phase.STABLE, 0, (R.PROMOTED,)),
        ("retry", Phase.PROGRESSING, 10, (R.ACTION_IGNORED,)),
    ],
)
def test_manual_actions_during_a_canary(
    action: str, phase: Phase, weight: int, events: tuple[Reason, ...]
) -> None:
    sim = rolling()
    walk(sim, [Tick(action=action, phase=phase, weight=weight, events=events)])
    last = sim.status.last_action
    assert last is not None
    assert last.applied == (R.ACTION_IGNORED not in events)
    assert last.message


def test_a_request_is_applied_once_however_often_the_operator_reconciles() -> None:
    sim = rolling()
    walk(sim, [Tick(action="pause", phase=Phase.PAUSED), Tick(action="resume")])
    assert sim.request is not None
    for _ in range(3):  # the same annotation is still there
        walk(sim, [Tick(S, phase=Phase.PROGRESSING, events=())])


def test_manual_pause_freezes_timers_and_resume_keeps_the_remaining_time() -> None:
    sim = rolling()  # at the 2m pause step, timer started at ready
    walk(
        sim,
        [
            Tick(M, action="pause", phase=Phase.PAUSED, weight=10),
            Tick(10 * M, phase=Phase.PAUSED, weight=10),
            Tick(action="resume", phase=Phase.PROGRESSING, weight=10),
            Tick(M - S, weight=10),
            Tick(S, weight=50, phase=Phase.PAUSED),
        ],
    )


def test_retry_after_a_rollback_starts_over() -> None:
    sim = rolling()
    walk(
        sim,
        [
            Tick(action="abort", phase=Phase.ROLLED_BACK),
            Tick(action="promote", phase=Phase.ROLLED_BACK, events=(R.ACTION_IGNORED,)),
            Tick(action="retry", phase=Phase.PROGRESSING, weight=0, events=(R.RETRIED,)),
            Tick(S, weight=10, events=(R.CANDIDATE_READY, R.WEIGHT_CHANGED)),
        ],
    )
    assert [h.outcome for h in sim.status.history] == [Outcome.PROMOTED, Outcome.ABORTED]


def test_promote_is_ignored_before_the_candidate_is_ready() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.pin(sim.new_version("v2"), RevisionObservation(2, 0, False))
    walk(sim, [Tick(action="promote", events=(R.ROLLOUT_STARTED, R.ACTION_IGNORED))])
    walk(sim, [Tick(action="promote-full", events=(R.ACTION_IGNORED,))])


def test_actions_with_nothing_to_act_on_are_ignored_with_a_reason() -> None:
    sim = Sim.started(spec_dict("v1"))
    for action in ("promote", "promote-full", "abort", "pause", "resume", "retry"):
        walk(sim, [Tick(action=action, phase=Phase.STABLE, events=(R.ACTION_IGNORED,))])


def test_promote_ends_a_shadow_early_and_a_preview_early() -> None:
    sim = rolling(SHADOW)
    walk(sim, [Tick(action="promote", phase=Phase.STABLE, stable="v2")])
    sim = rolling(BLUE_GREEN)
    walk(sim, [Tick(action="promote", phase=Phase.PROMOTING, weight=100)])
    walk(sim, [Tick(action="promote", phase=Phase.STABLE, stable="v2")])


def test_new_revision_mid_rollout_aborts_the_candidate_and_starts_over() -> None:
    sim = rolling()
    v2 = sim.candidate
    sim.new_version("v3")
    walk(
        sim,
        [
            Tick(
                phase=Phase.PROGRESSING,
                weight=0,
                events=(R.SUPERSEDED, R.ROLLOUT_STARTED),
                stable="v1",
            ),
        ],
    )
    assert sim.last is not None
    assert RemoveRevision(v2) in sim.last.actions
    assert sim.status.history[-1].outcome == Outcome.SUPERSEDED
    walk(sim, [Tick(S, weight=10)])


def test_new_revision_after_a_switch_goes_back_to_the_warm_stable() -> None:
    sim = rolling(BLUE_GREEN)
    walk(sim, [Tick(5 * M, phase=Phase.PROMOTING, weight=100)])
    sim.new_version("v3")
    walk(sim, [Tick(phase=Phase.PROGRESSING, weight=0, stable="v1")])


def test_spec_back_to_stable_drops_the_candidate() -> None:
    sim = rolling()
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.STABLE, weight=0, events=(R.SUPERSEDED,))])


def test_spec_back_to_stable_clears_a_rollback() -> None:
    sim = rolling()
    failed = sim.candidate
    walk(sim, [Tick(action="abort", phase=Phase.ROLLED_BACK)])
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.STABLE)])
    assert sim.last is not None
    assert RemoveRevision(failed) in sim.last.actions


def test_reverting_within_scale_down_delay_is_instant() -> None:
    strategy = {"canary": {"steps": [{"setWeight": 50}]}, "scaleDownDelay": "10m"}
    sim = rolling(strategy)
    assert sim.status.phase == Phase.STABLE
    sim.new_version("v1")
    walk(sim, [Tick(M, phase=Phase.STABLE, stable="v1", events=(R.REVERTED,))])
    assert sim.status.history[-1].outcome == Outcome.REVERTED
    sim.new_version("v3")
    walk(sim, [Tick(phase=Phase.PROGRESSING, events=(R.ROLLOUT_STARTED,))])


def test_reverting_after_scale_down_is_a_normal_rollout() -> None:
    sim = rolling({"canary": {"steps": [{"setWeight": 50}]}})
    walk(sim, [Tick(30 * S, events=(R.SCALED_DOWN,))])
    sim.step()
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.PROGRESSING, events=(R.ROLLOUT_STARTED,))])


def test_changing_the_strategy_mid_rollout_restarts_it_from_stable() -> None:
    sim = rolling()
    sim.raw["strategy"] = BLUE_GREEN
    walk(sim, [Tick(phase=Phase.PROGRESSING, weight=0, stage="Preview")])
    assert sim.events() == [R.SUPERSEDED, R.ROLLOUT_RESTARTED, R.CANDIDATE_READY]


def test_editing_the_steps_mid_rollout_keeps_the_position() -> None:
    sim = rolling()
    sim.raw["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    walk(sim, [Tick(weight=20, phase=Phase.PAUSED)])


def test_scaling_replicas_does_not_start_a_rollout() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.raw["replicas"] = 5
    walk(sim, [Tick(phase=Phase.STABLE, events=())])


def test_observed_generation_follows_the_object() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.generation = 7
    sim.step()
    assert sim.status.observed_generation == 7


def test_history_is_bounded() -> None:
    sim = Sim.started(spec_dict("v1", strategy={"canary": {"steps": [{"setWeight": 50}]}}))
    for i in range(2, 16):
        sim.new_version(f"v{i}")
        sim.step(M)
        sim.step(S)
    assert len(sim.status.history) == 10
    assert sim.status.history[-1].version == "v15"


def test_invalid_spec_degrades_without_touching_anything_and_recovers() -> None:
    sim = rolling(analysis=ANALYSIS)
    before = sim.status
    err = api.SpecError("spec.strategy.canary.steps[0]", "a step sets exactly one of ...")
    d = invalid(before, err, 9, T0 + M)
    assert d.status.phase == Phase.DEGRADED
    assert d.actions == (Notify(R.INVALID_SPEC, str(err), d.actions[0].type),)  # type: ignore[union-attr]
    assert d.status.candidate == before.candidate
    ready = {c.type: c for c in d.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert invalid(d.status, err, 9, T0 + 2 * M).actions == ()  # one event per problem
    sim.status = d.status
    walk(sim, [Tick(S, phase=Phase.PROGRESSING, weight=10)])


def test_now_must_be_timezone_aware() -> None:
    spec = api.parse_spec(spec_dict("v1"))
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(spec, RolloutStatus(), Observed(), [], T0.replace(tzinfo=None))


def test_analysis_condition_tells_the_story() -> None:
    sim = rolling(analysis=ANALYSIS)
    conds = {c.type: c for c in sim.status.conditions}
    assert (conds["Analysis"].status, conds["Analysis"].reason) == (
        "Unknown",
        "AwaitingMeasurement",
    )
    sim.step(30 * S, verdict=Verdict.PASS)
    conds = {c.type: c for c in sim.status.conditions}
    assert (conds["Analysis"].status, conds["Analysis"].reason) == ("True", "Passing")
    since = conds["Progressing"].last_transition_time
    sim.step(timedelta(seconds=30), verdict=Verdict.PASS)
    assert {c.type: c for c in sim.status.conditions}["Progressing"].last_transition_time == since


def test_reverting_to_the_warm_revision_during_another_rollout_is_instant_too() -> None:
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}, "scaleDownDelay": "1h"}
    sim = rolling(strategy)
    walk(sim, [Tick(action="promote", phase=Phase.STABLE, stable="v2")])
    sim.new_version("v3")
    walk(sim, [Tick(), Tick(S, weight=50, phase=Phase.PAUSED)])
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.STABLE, stable="v1", events=(R.SUPERSEDED, R.REVERTED))])


def test_removing_analysis_mid_rollout_stops_it() -> None:
    sim = rolling(analysis=ANALYSIS)
    assert sim.status.analysis is not None
    del sim.raw["analysis"]
    d = sim.step(M)
    assert sim.status.analysis is None
    assert not [c for c in sim.status.conditions if c.type == "Analysis"]
    assert d.wake_at is not None


def test_stray_revisions_are_removed() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.world["deadbeef00"] = RevisionObservation(1, 1, True)
    d = sim.step(S)
    assert RemoveRevision("deadbeef00") in d.actions

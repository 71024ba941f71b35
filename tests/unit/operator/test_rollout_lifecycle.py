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
    ScaleDown,
    SetTraffic,
    decide,
    invalid,
)
from serinus_operator.rollout.status import HANDLED_LIMIT, Outcome, Traffic
from serinus_operator.rollout.work import GRACE
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    SHADOW,
    SHADOW_CANARY,
    T0,
    M,
    S,
    Sim,
    Tick,
    manifest,
    spec_dict,
    walk,
)

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


def test_an_old_request_put_back_is_not_applied_again() -> None:
    """pause:1, resume:2, then pause:1 again (a GitOps re-sync, an undo): still running."""
    sim = rolling()
    walk(sim, [Tick(action="pause", phase=Phase.PAUSED)])
    first = sim.request
    walk(sim, [Tick(S, action="resume", phase=Phase.PROGRESSING)])
    sim.request = first
    walk(sim, [Tick(S, phase=Phase.PROGRESSING, events=())])
    assert sim.status.handled == ("pause:n1", "resume:n2")


def test_handled_requests_are_bounded() -> None:
    sim = rolling()
    for _ in range(HANDLED_LIMIT + 5):
        sim.step(
            S,
            action="pause" if sim.status.candidate and not sim.status.candidate.pause else "resume",
        )
    assert len(sim.status.handled) == HANDLED_LIMIT
    assert sim.status.handled[-1] == f"{sim.status.last_action.action}:n{sim.nonce}"  # type: ignore[union-attr]


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
            Tick(10 * S, phase=Phase.ROLLED_BACK),  # scaled to zero after the grace
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
    assert RemoveRevision(v2) not in sim.last.actions, "removed as its traffic moves away"
    assert sim.last.wake_at == sim.now + GRACE
    assert sim.status.history[-1].outcome == Outcome.SUPERSEDED
    walk(sim, [Tick(S, weight=10)])
    walk(sim, [Tick(GRACE - S, weight=10)])
    assert RemoveRevision(v2) in sim.last.actions


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
    walk(sim, [Tick(GRACE, phase=Phase.STABLE)])
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
    walk(sim, [Tick(30 * S, events=(R.REVISION_REMOVED,))])
    sim.step()
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.PROGRESSING, events=(R.ROLLOUT_STARTED,))])


def test_changing_the_strategy_mid_rollout_restarts_it_from_stable() -> None:
    sim = rolling()
    sim.raw["strategy"] = BLUE_GREEN
    walk(sim, [Tick(phase=Phase.PROGRESSING, weight=0, stage="Preview")])
    assert sim.events() == [R.SUPERSEDED, R.ROLLOUT_RESTARTED, R.CANDIDATE_READY]


LONG_STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "2m"}},
    {"setWeight": 20},
    {"pause": {"duration": "2m"}},
    {"setWeight": 30},
    {"pause": {}},
]
EDITS: list[tuple[str, list[dict[str, Any]], Tick]] = [
    # fewer steps than the index: restart, never promote because the index ran past the end
    (
        "shorter",
        [{"setWeight": 10}, {"pause": {}}],
        Tick(phase=Phase.PAUSED, weight=10, events=(R.ROLLOUT_RESTARTED, R.AWAITING_PROMOTION)),
    ),
    (
        "reweighted",
        [{"setWeight": 20}, {"pause": {}}],
        Tick(
            phase=Phase.PAUSED,
            weight=20,
            events=(R.ROLLOUT_RESTARTED, R.AWAITING_PROMOTION),
        ),
    ),
    (
        "longer",
        [*LONG_STEPS, {"setWeight": 90}],
        Tick(phase=Phase.PROGRESSING, weight=10, events=(R.ROLLOUT_RESTARTED,)),
    ),
    # the same steps written again: nothing happens
    ("unchanged", LONG_STEPS, Tick(phase=Phase.PROGRESSING, weight=20, events=())),
]


@pytest.mark.parametrize(("case", "steps", "then"), EDITS, ids=[e[0] for e in EDITS])
def test_editing_the_steps_mid_rollout_restarts_them(
    case: str, steps: list[dict[str, Any]], then: Tick
) -> None:
    sim = rolling({"type": "Canary", "canary": {"steps": LONG_STEPS}})
    walk(sim, [Tick(2 * M), Tick(S, weight=20)])  # on step 4 (a 2m pause) at 20%
    sim.raw["strategy"]["canary"]["steps"] = steps
    sim.generation += 1
    walk(sim, [then])
    assert sim.status.candidate is not None, "an edit must never promote"
    assert [h.outcome for h in sim.status.history].count(Outcome.PROMOTED) == 1  # v1 only


def test_editing_the_steps_during_the_shadow_changes_nothing_yet() -> None:
    sim = rolling(SHADOW_CANARY)
    sim.raw["strategy"]["canary"]["steps"] = [{"setWeight": 60}, {"pause": {}}]
    walk(sim, [Tick(M, mirror=100, stage="Shadow", events=())])
    walk(sim, [Tick(5 * M, weight=60, stage="Canary")])


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
    assert before.traffic.candidate == 10
    d = invalid(before, err, 9, T0 + M)
    assert d.status.phase == Phase.DEGRADED
    assert before.stable is not None
    assert before.candidate is not None
    # nothing is analysed or advanced, so no live or mirrored traffic is left on the candidate
    route = SetTraffic(before.stable.ref.revision, before.candidate.ref.revision, 0, 0)
    assert d.actions == (route, Notify(R.INVALID_SPEC, str(err), d.actions[1].type))  # type: ignore[union-attr]
    assert d.status.traffic == Traffic()
    assert d.status.candidate == before.candidate
    ready = {c.type: c for c in d.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert invalid(d.status, err, 9, T0 + 2 * M).actions == (route,)  # one event per problem
    sim.status = d.status
    walk(sim, [Tick(S, phase=Phase.PROGRESSING, weight=10)])
    assert sim.events() == [R.WEIGHT_CHANGED, R.SPEC_FIXED]
    walk(sim, [Tick(S, phase=Phase.PROGRESSING, weight=10, events=())])


def test_a_malformed_action_annotation_is_ignored_not_degrading() -> None:
    obj = manifest(spec_dict())
    obj["metadata"]["annotations"] = {api.ACTION_ANNOTATION: "promote"}
    md = api.parse(obj)  # the spec is fine: the object is not degraded
    assert md.request is None
    assert md.invalid_request is not None
    assert "'<action>:<nonce>'" in md.invalid_request.error
    sim = rolling()
    observed = Observed(sim.generation, dict(sim.world), None, md.invalid_request)
    d = decide(sim.spec, sim.status, observed, [], sim.now + S)
    assert [(n.reason, n.type.value) for n in d.of(Notify)] == [(R.ACTION_IGNORED, "Warning")]
    assert d.status.phase == Phase.PROGRESSING
    assert d.status.traffic.candidate == 10
    again = decide(sim.spec, d.status, observed, [], sim.now + 2 * S)
    assert not again.of(Notify), "the same bad annotation is reported once"


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


def test_a_fix_for_a_first_revision_that_never_came_up_replaces_it_outright() -> None:
    sim = Sim(spec_dict("v1"))
    walk(sim, [Tick(phase=Phase.INITIALIZING, stable="v1")])
    broken = sim.revision
    sim.pin(broken, RevisionObservation(2, 0, False))
    walk(sim, [Tick(S, phase=Phase.INITIALIZING)])
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(
                phase=Phase.INITIALIZING,
                weight=0,
                stable="v2",
                events=(R.SUPERSEDED, R.INITIALIZED),
            ),
            Tick(S, phase=Phase.STABLE, weight=0, stable="v2", events=(R.STABLE_AVAILABLE,)),
        ],
    )
    assert sim.status.candidate is None
    walk(sim, [Tick(GRACE, phase=Phase.STABLE)])
    assert broken not in sim.world, "the broken revision is removed"
    assert [(h.version, h.outcome) for h in sim.status.history] == [
        ("v1", Outcome.PROMOTED),
        ("v1", Outcome.SUPERSEDED),
        ("v2", Outcome.PROMOTED),
    ]


def test_a_first_revision_that_came_up_once_is_rolled_out_from_normally() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.set_ready(sim.revision, False)  # stable blips after it served
    sim.new_version("v2")
    walk(sim, [Tick(phase=Phase.PROGRESSING, events=(R.ROLLOUT_STARTED,), stable="v1")])


def _promoted_with_no_delay(sim: Sim) -> str:
    old = sim.revision
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, phase=Phase.STABLE, stable="v2")])
    return old


def _rolled_back_after_the_switch(sim: Sim) -> str:
    sim.new_version("v2")
    walk(
        sim, [Tick(), Tick(S), Tick(5 * M, verdict=Verdict.PASS, phase=Phase.PROMOTING, weight=100)]
    )
    rev = sim.candidate
    walk(sim, [Tick(30 * S, verdict=Verdict.FAIL), Tick(30 * S, verdict=Verdict.FAIL)])
    assert sim.status.phase == Phase.ROLLED_BACK
    return rev


GRACE_CASES = [
    (
        "promotion, scaleDownDelay 0",
        {"canary": {"steps": [{"setWeight": 50}]}, "scaleDownDelay": "0"},
        None,
        _promoted_with_no_delay,
    ),
    (
        "blue-green rollback after the switch",
        BLUE_GREEN,
        ANALYSIS,
        _rolled_back_after_the_switch,
    ),
]


@pytest.mark.parametrize(
    ("case", "strategy", "analysis", "drive"), GRACE_CASES, ids=[c[0] for c in GRACE_CASES]
)
def test_a_revision_that_just_lost_its_traffic_is_kept_for_a_grace_period(
    case: str, strategy: dict[str, Any], analysis: dict[str, Any] | None, drive: Any
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=analysis))
    rev = drive(sim)
    moved = sim.now
    assert sim.last is not None
    dropped = {a.revision for a in sim.last.of(RemoveRevision)}
    dropped |= {a.revision for a in sim.last.of(ScaleDown)}
    assert rev not in dropped, "dropped in the decision that moved its traffic away"
    assert sim.last.wake_at is not None
    assert sim.last.wake_at <= moved + GRACE
    sim.step(GRACE)
    dropped = {a.revision for a in sim.last.of(RemoveRevision)}
    dropped |= {a.revision for a in sim.last.of(ScaleDown)}
    assert rev in dropped


def test_a_stale_deadline_condition_does_not_roll_back_a_retry() -> None:
    sim = rolling()
    rev = sim.candidate
    failed_at = sim.now + S
    sim.pin(rev, RevisionObservation(2, 0, False, True, failed_at))
    walk(sim, [Tick(S, phase=Phase.ROLLED_BACK)])
    # scaled to zero, but the Deployment still shows the old condition
    walk(sim, [Tick(GRACE, phase=Phase.ROLLED_BACK)])
    sim.pin(rev, RevisionObservation(0, 0, False, True, failed_at))
    walk(sim, [Tick(S, action="retry", phase=Phase.PROGRESSING, events=(R.RETRIED,))])
    walk(sim, [Tick(M, phase=Phase.PROGRESSING, events=())])  # older than the retry: stale
    sim.pin(rev, RevisionObservation(2, 0, False, True, sim.now))
    walk(sim, [Tick(S, phase=Phase.ROLLED_BACK, events=(R.ROLLED_BACK,))])


def test_a_deadline_condition_without_a_time_is_ignored_in_the_decision_that_retries() -> None:
    sim = rolling()
    rev = sim.candidate
    sim.pin(rev, RevisionObservation(2, 0, False, True))
    walk(sim, [Tick(S, phase=Phase.ROLLED_BACK), Tick(GRACE)])
    sim.pin(rev, RevisionObservation(0, 0, False, True))
    walk(sim, [Tick(S, action="retry", phase=Phase.PROGRESSING, events=(R.RETRIED,))])


def test_reverting_to_the_warm_revision_after_a_rollback_clears_the_rollback() -> None:
    """Found by the properties: the revert left rolledBack set, so the next decision differed."""
    sim = Sim.started(spec_dict("v1"))
    sim.new_version("v3")
    walk(sim, [Tick(), Tick(action="promote-full", phase=Phase.STABLE, stable="v3")])
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(action="abort", phase=Phase.ROLLED_BACK)])
    sim.new_version("v1")
    walk(sim, [Tick(phase=Phase.STABLE, stable="v1", events=(R.REVERTED,))])
    assert sim.status.rolled_back is None


def test_why_the_candidate_is_not_available_is_in_the_message_and_the_rollback() -> None:
    """What its pods say (platforms/kubernetes.py ``pod_problem``) is quoted as it changes,
    and kept in the rollback that the progress deadline brings."""
    sim = Sim.started(spec_dict("v1"))
    v2 = sim.new_version("v2")
    said = "init container fetch: cannot fetch the model: HTTP 403 (restarts: 2)"
    sim.pin(v2, RevisionObservation(2, 0, False, problem=said))
    sim.step()
    sim.step(S)
    assert f"waiting for the candidate to become available ({said})" in sim.status.message
    sim.step(10 * M)
    rolled = sim.status.rolled_back
    assert rolled is not None and rolled.message.endswith(f"10m: {said}")
    assert said in sim.status.message


def test_why_the_first_revision_is_not_available_is_in_the_message() -> None:
    sim = Sim(spec_dict("v1"))
    sim.step()
    sim.pin(sim.revision, RevisionObservation(2, 0, False, problem="container server: boom"))
    sim.step(S)
    assert sim.status.message == "waiting for v1 to become available (container server: boom)"

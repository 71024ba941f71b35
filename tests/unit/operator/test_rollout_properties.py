"""Properties of ``decide`` over random histories of time, readiness, verdicts and requests.

``Sim.step`` checks after every decision: weights within 0-100 summing to 100; no live or
mirrored traffic to a candidate that is not ready; all traffic on stable in the decision
that rolls back or aborts; determinism; idempotency (deciding again on its own output with
nothing new changes nothing and emits no event); a restarted operator (status through JSON,
no memory) deciding the same; and a status valid against the CRD's schema.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import ManualAction
from serinus_operator.rollout import Notify, Phase, Reason
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    CANARY,
    SHADOW,
    SHADOW_CANARY,
    Sim,
    restart,
    spec_dict,
)

pytestmark = pytest.mark.unit

STRATEGIES = [CANARY, SHADOW, SHADOW_CANARY, BLUE_GREEN]
WAITS = [timedelta(seconds=s) for s in (0, 1, 10, 30, 60, 150, 330, 700)]

op = st.one_of(
    st.tuples(st.just("wait"), st.sampled_from(WAITS)),
    st.tuples(st.just("verdict"), st.sampled_from(list(Verdict))),
    st.tuples(st.just("verdict"), st.sampled_from(list(Verdict))),
    st.tuples(st.just("action"), st.sampled_from([a.value for a in ManualAction])),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("version"), st.sampled_from(["v1", "v2", "v3"])),
    st.tuples(st.just("traffic"), st.sampled_from([None, 0, 5, 5000])),
)


def run(sim: Sim, ops: list[tuple[str, Any]]) -> None:
    for kind, arg in ops:
        before = sim.status
        if kind == "wait":
            sim.step(arg)
        elif kind == "verdict" or kind == "traffic":
            if sim.status.candidate is None or sim.spec.analysis is None:
                sim.step(timedelta(seconds=30))
                continue
            verdict = arg if kind == "verdict" else Verdict.PASS
            requests = 1000 if kind == "verdict" else arg
            sim.step(timedelta(seconds=30), verdict=verdict, requests=requests)
        elif kind == "action":
            sim.step(action=arg)
        elif kind == "ready":
            if sim.status.candidate is not None:
                sim.set_ready(sim.candidate, arg)
            sim.step(timedelta(seconds=1))
        else:
            sim.new_version(arg)
            sim.step()
        after_rollback(sim, before)
        assert restart(sim.status) == sim.status


def after_rollback(sim: Sim, before: Any) -> None:
    """Once rolled back, traffic stays on stable until the spec changes or a retry."""
    assert sim.last is not None
    reasons = {n.reason for n in sim.last.of(Notify)}
    if before.phase == Phase.ROLLED_BACK and sim.status.phase == Phase.ROLLED_BACK:
        assert sim.status.traffic.stable == 100
        assert Reason.ROLLOUT_STARTED not in reasons


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(STRATEGIES),
    analysis=st.sampled_from([None, ANALYSIS, ANALYSIS | {"noData": "Pass", "minRequests": 0}]),
    ops=st.lists(op, min_size=1, max_size=30),
)
def test_invariants_hold_over_random_histories(
    strategy: dict[str, Any], analysis: dict[str, Any] | None, ops: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=analysis))
    run(sim, ops)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(STRATEGIES),
    ops=st.lists(op, min_size=1, max_size=20),
    limit=st.integers(min_value=0, max_value=2),
)
def test_failures_past_the_limit_always_end_in_a_rollback(
    strategy: dict[str, Any], ops: list[tuple[str, Any]], limit: int
) -> None:
    sim = Sim.started(
        spec_dict("v1", strategy=strategy, analysis=ANALYSIS | {"failureLimit": limit})
    )
    run(sim, ops)
    if sim.status.candidate is None:
        sim.new_version("v9")
        sim.step()
    sim.set_ready(sim.candidate, True)
    sim.step(timedelta(seconds=1))
    if sim.status.candidate is None:
        return  # promoted or rolled back already
    for _ in range(limit + 1):
        if sim.status.candidate is None:
            break
        sim.step(timedelta(seconds=30), verdict=Verdict.FAIL)
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.status.traffic.stable == 100


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(STRATEGIES), ops=st.lists(op, min_size=1, max_size=20))
def test_abort_always_sends_everything_to_stable(
    strategy: dict[str, Any], ops: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    run(sim, ops)
    had_candidate = sim.status.candidate is not None
    sim.step(action="abort")
    assert sim.status.traffic.stable == 100
    assert sim.status.traffic.mirror == 0
    if had_candidate:
        assert sim.status.phase == Phase.ROLLED_BACK


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(STRATEGIES), ops=st.lists(op, min_size=1, max_size=20))
def test_a_restarted_operator_carries_on_exactly(
    strategy: dict[str, Any], ops: list[tuple[str, Any]]
) -> None:
    """Two operators, one of which restarts before every decision, end up identical."""
    steady = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    run(steady, ops)
    flaky = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    flaky.check = False
    for kind, arg in ops:
        flaky.status = restart(flaky.status)
        run(flaky, [(kind, arg)])
    assert flaky.status == steady.status
    assert flaky.world == steady.world


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(STRATEGIES), waits=st.lists(st.sampled_from(WAITS), max_size=25))
def test_with_passing_analysis_and_patience_every_rollout_completes(
    strategy: dict[str, Any], waits: list[timedelta]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    sim.new_version("v2")
    sim.step()
    for wait in [*waits, *[timedelta(seconds=30)] * 80]:
        if sim.status.candidate is None:
            break
        if sim.status.phase == Phase.PAUSED:
            sim.step(action="promote")
        else:
            sim.step(wait or timedelta(seconds=1), verdict=Verdict.PASS)
    assert sim.status.phase == Phase.STABLE
    assert sim.status.stable is not None
    assert sim.status.stable.ref.version == "v2"

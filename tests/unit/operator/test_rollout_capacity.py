"""Right-sized candidates (``strategy.candidateScale: Traffic``): capacity follows traffic.

The candidate runs enough pods for the share of traffic it has or its step is about to set
(``rollout/sizing.py``), is scaled up *before* that traffic moves, and runs at full size
before it is promoted. The property walks random histories and checks, on every decision,
that a weight or mirror share never grows onto fewer ready pods than it needs, and that no
promotion or switch lands on an under-sized revision.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import EnsureRevision, Phase, Reason, Role
from serinus_operator.rollout.sizing import share
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    CANARY,
    SHADOW,
    SHADOW_CANARY,
    M,
    S,
    Sim,
    Tick,
    spec_dict,
    walk,
)
from unit.operator.test_rollout_properties import op, run

pytestmark = pytest.mark.unit

R = Reason
PASS = Verdict.PASS
CHECKS = ANALYSIS | {"metrics": [{"name": "error-rate", "max": 0.01}]}


def scaled(strategy: dict[str, Any]) -> dict[str, Any]:
    return {**strategy, "candidateScale": "Traffic"}


def candidate_size(sim: Sim) -> int:
    assert sim.last is not None
    sizes = [a.replicas for a in sim.last.of(EnsureRevision) if a.role == Role.CANDIDATE]
    assert len(sizes) == 1
    return sizes[0]


@pytest.mark.parametrize(
    ("replicas", "percent", "pods"),
    [(10, 10, 1), (10, 25, 3), (2, 10, 1), (4, 0, 1), (3, 100, 3), (7, 50, 4), (1, 1, 1)],
)
def test_share_is_the_ceiling_and_at_least_one(replicas: int, percent: int, pods: int) -> None:
    assert share(replicas, percent) == pods


@given(replicas=st.integers(1, 500), percent=st.integers(0, 100))
def test_share_never_leaves_the_traffic_short(replicas: int, percent: int) -> None:
    pods = share(replicas, percent)
    assert pods * 100 >= replicas * percent  # as many pods as the traffic needs
    assert pods <= max(1, replicas)
    assert pods == 1 or (pods - 1) * 100 < replicas * percent  # and no more


def test_a_canary_scales_up_before_each_weight_and_to_full_size_before_promotion() -> None:
    sim = Sim.started(spec_dict("v1", strategy=scaled(CANARY), analysis=CHECKS, replicas=10))
    sim.new_version("v2")
    walk(sim, [Tick(weight=0)])
    assert candidate_size(sim) == 1  # setWeight 10 of 10 replicas
    walk(
        sim,
        [
            Tick(S, weight=10, events=(R.CANDIDATE_READY, R.WEIGHT_CHANGED)),
            Tick(30 * S, verdict=PASS, weight=10),
            Tick(90 * S, verdict=PASS, weight=10),  # pause 2m over: setWeight 50 is next
        ],
    )
    assert candidate_size(sim) == 5
    assert "setWeight 50 waits for 5 ready replicas" in sim.status.message
    walk(sim, [Tick(S, weight=50, phase=Phase.PAUSED)])  # then pause {}: waits for promote
    assert candidate_size(sim) == 5
    walk(sim, [Tick(S, action="promote", weight=50)])  # setWeight 80 waits for 8 pods
    assert candidate_size(sim) == 8
    walk(sim, [Tick(S, weight=80)])
    assert candidate_size(sim) == 10  # the steps are done: full size before promotion
    walk(sim, [Tick(30 * S, verdict=PASS, phase=Phase.STABLE, stable="v2")])


def test_promote_full_on_a_small_candidate_scales_it_up_then_promotes() -> None:
    sim = Sim.started(spec_dict("v1", strategy=scaled(CANARY), analysis=CHECKS, replicas=10))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, weight=10)])
    walk(sim, [Tick(S, action="promote-full", weight=10, phase=Phase.PROGRESSING)])
    assert sim.status.last_action is not None
    assert sim.status.last_action.message == "scaling to 10 replicas, then promoting"
    assert candidate_size(sim) == 10
    walk(sim, [Tick(S, phase=Phase.STABLE, stable="v2", events=(R.PROMOTED,))])


def test_a_shadow_runs_enough_pods_for_its_mirror_then_full_size_to_be_promoted() -> None:
    sim = Sim.started(spec_dict("v1", strategy=scaled(SHADOW), analysis=CHECKS, replicas=10))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, mirror=50)])
    assert candidate_size(sim) == 5  # mirrorPercent 50
    for _ in range(20):
        walk(sim, [Tick(30 * S, verdict=PASS)])
    assert candidate_size(sim) == 10
    walk(sim, [Tick(S, verdict=PASS, phase=Phase.STABLE, stable="v2")])


def test_blue_green_previews_at_full_size() -> None:
    sim = Sim.started(spec_dict("v1", strategy=scaled(BLUE_GREEN), replicas=4))
    sim.new_version("v2")
    walk(sim, [Tick()])
    assert candidate_size(sim) == 4


def _pods_minutes(strategy: dict[str, Any]) -> float:
    """Candidate pod-minutes of the example canary's steps (manifests/examples/canary.yaml:
    10% 2m, 50% 5m, 90% until promoted, 10 replicas here), promoted 5 minutes after the last
    step is reached, every measurement passing."""
    steps = {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "2m"}},
            {"setWeight": 50},
            {"pause": {"duration": "5m"}},
            {"setWeight": 90},
            {"pause": {}},
        ]
    }
    spec = spec_dict("v1", strategy={**strategy, "canary": steps}, analysis=CHECKS, replicas=10)
    sim = Sim.started(spec)
    sim.new_version("v2")
    total, tick = 0.0, 30 * S
    sim.step()
    while sim.status.candidate is not None:
        size = candidate_size(sim)
        action = "promote" if sim.status.phase == Phase.PAUSED else None
        sim.step(tick, verdict=PASS, action=action)
        total += size * tick / M
        assert total < 10_000
    return total


def test_right_sizing_cuts_the_example_canarys_candidate_pod_minutes() -> None:
    full = _pods_minutes({"type": "Canary"})
    right = _pods_minutes({"type": "Canary", "candidateScale": "Traffic"})
    print(f"candidate pod-minutes: Full {full:.0f}, Traffic {right:.0f}")
    assert right < 0.6 * full


WITH_SCALE: dict[str, Any] = {
    "type": "Canary",
    "canary": {
        "steps": [
            {"setCanaryScale": {"weight": 60}},
            {"setWeight": 20},
            {"pause": {"duration": "1m"}},
            {"setCanaryScale": {"matchTrafficWeight": True}},
            {"setWeight": 70},
            {"pause": {}},
        ]
    },
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from([CANARY, SHADOW, SHADOW_CANARY, BLUE_GREEN, WITH_SCALE]),
    replicas=st.integers(1, 12),
    ops=st.lists(op, min_size=1, max_size=40),
)
def test_traffic_never_grows_onto_too_few_ready_pods(
    strategy: dict[str, Any], replicas: int, ops: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(
        spec_dict("v1", strategy=scaled(strategy), analysis=CHECKS, replicas=replicas)
    )
    sim.new_version("v2")
    sim.step()
    for one in ops:
        before = sim.status
        run(sim, [one])
        after, world = sim.status, sim.world
        c = before.candidate
        if c is None or after.candidate is None or after.candidate.ref != c.ref:
            promoted = after.stable is not None and c is not None and after.stable.ref == c.ref
            if promoted and (after.stable is None or after.stable.ref != before.stable.ref):
                obs = world.get(c.ref.revision)
                assert obs is not None and obs.ready_replicas >= replicas, "promoted under-sized"
            continue
        obs = world.get(c.ref.revision)
        ready = 0 if obs is None else obs.ready_replicas
        if after.traffic.candidate > before.traffic.candidate:
            assert ready >= share(replicas, after.traffic.candidate), (one, after.message)
        if after.traffic.mirror > before.traffic.mirror:
            assert ready >= share(replicas, after.traffic.mirror), (one, after.message)


def test_set_canary_scale_adds_pods_until_match_traffic_weight() -> None:
    """Pre-warm five pods for a load test at 0%, keep them at 10%, then follow the traffic."""
    steps = [
        {"setCanaryScale": {"replicas": 5}},
        {"setWeight": 10},
        {"pause": {}},
        {"setCanaryScale": {"matchTrafficWeight": True}},
        {"setWeight": 20},
        {"pause": {}},
    ]
    strategy = {"type": "Canary", "candidateScale": "Traffic", "canary": {"steps": steps}}
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=CHECKS, replicas=10))
    sim.new_version("v2")
    walk(sim, [Tick(weight=0)])
    assert candidate_size(sim) == 5
    walk(sim, [Tick(S, weight=10, phase=Phase.PAUSED)])
    assert candidate_size(sim) == 5
    walk(sim, [Tick(S, action="promote"), Tick(S, weight=20, phase=Phase.PAUSED)])
    assert candidate_size(sim) == 2  # matchTrafficWeight: 20% of 10


@pytest.mark.parametrize(
    "scale", [{}, {"replicas": 2, "weight": 10}, {"weight": 10, "matchTrafficWeight": True}]
)
def test_set_canary_scale_takes_exactly_one_size(scale: dict[str, Any]) -> None:
    from serinus_operator import api
    from unit.operator.kit import manifest

    strategy = {"type": "Canary", "canary": {"steps": [{"setCanaryScale": scale}]}}
    with pytest.raises(api.SpecError, match="exactly one of replicas, weight"):
        api.parse(manifest(spec_dict("v1", strategy=strategy)))


def test_promote_full_is_not_stalled_by_an_inconclusive_pause_while_scaling_up() -> None:
    """Found in review: a person's promote-full skips analysis, so an Inconclusive pause
    that comes while the candidate scales up must not hold it (their own pause would)."""
    from serinus_operator.rollout import PauseReason, RevisionObservation

    sim = Sim.started(spec_dict("v1", strategy=scaled(CANARY), analysis=CHECKS, replicas=10))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, weight=10)])
    sim.pin(sim.candidate, RevisionObservation(10, 1, True))  # the scale-up is slow
    walk(sim, [Tick(S, action="promote-full", weight=10)])
    for _ in range(3):
        walk(sim, [Tick(30 * S, verdict=Verdict.INCONCLUSIVE, weight=10)])
    assert sim.status.candidate is not None and sim.status.candidate.pause is not None
    assert sim.status.candidate.pause.reason == PauseReason.INCONCLUSIVE
    sim.set_ready(sim.candidate, True)  # all 10 pods ready
    walk(sim, [Tick(S, phase=Phase.STABLE, stable="v2")])

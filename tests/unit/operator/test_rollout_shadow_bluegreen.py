"""Shadow and blue-green rollouts, step by step, including their failure paths."""

from __future__ import annotations

import pytest

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.rollout import EnsureRevision, Notify, Phase, Reason, Role, Stage
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    SHADOW,
    SHADOW_CANARY,
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


def test_shadow_mirrors_without_live_traffic_then_promotes() -> None:
    sim = Sim.started(spec_dict("v1", strategy=SHADOW, analysis=ANALYSIS))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(stage=Stage.SHADOW, weight=0, mirror=0, events=(R.ROLLOUT_STARTED,)),
            Tick(S, weight=0, mirror=50, events=(R.CANDIDATE_READY, R.MIRROR_CHANGED)),
            *[Tick(30 * S, verdict=PASS, weight=0, mirror=50, events=()) for _ in range(19)],
            Tick(30 * S, verdict=PASS, phase=Phase.STABLE, mirror=0, stable="v2"),
        ],
    )
    assert sim.events() == [R.PROMOTED]
    assert sim.status.history[-1].strategy == "Shadow"


def test_shadow_disagreement_rolls_back_and_stops_mirroring() -> None:
    sim = Sim.started(spec_dict("v1", strategy=SHADOW, analysis=ANALYSIS | {"failureLimit": 0}))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S, mirror=50),
            Tick(
                30 * S,
                verdict={"error-rate": PASS, "agreement": FAIL},
                phase=Phase.ROLLED_BACK,
                mirror=0,
                events=(R.ANALYSIS_FAILED, R.ROLLED_BACK),
            ),
        ],
    )
    rb = sim.status.rolled_back
    assert rb is not None
    assert "agreement" in rb.message
    assert "error-rate" not in rb.message


def test_shadow_then_canary_continues_with_live_steps() -> None:
    sim = Sim.started(spec_dict("v1", strategy=SHADOW_CANARY, analysis=ANALYSIS))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S, stage=Stage.SHADOW, mirror=100, weight=0),
            *[Tick(30 * S, verdict=PASS, stage=Stage.SHADOW) for _ in range(9)],
            # 5m: the shadow ends; the canary's first step sets 30% and mirroring stops
            Tick(
                30 * S,
                verdict=PASS,
                stage=Stage.CANARY,
                mirror=0,
                weight=30,
                events=(R.STAGE_CHANGED, R.WEIGHT_CHANGED, R.MIRROR_CHANGED),
            ),
        ],
    )
    a = sim.status.analysis
    assert a is not None
    assert a.measurements == 0  # each stage has its own analysis run
    walk(sim, [Tick(3 * M, verdict=PASS, phase=Phase.STABLE, stable="v2")])


def test_shadow_of_a_candidate_that_goes_down_stops_mirroring() -> None:
    sim = Sim.started(spec_dict("v1", strategy=SHADOW))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, mirror=50), Tick(S, ready=False, mirror=0)])


def test_blue_green_previews_switches_and_keeps_the_old_revision_warm() -> None:
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN, analysis=ANALYSIS))
    old = sim.revision
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(stage=Stage.PREVIEW, weight=0, events=(R.ROLLOUT_STARTED,)),
            Tick(S, stage=Stage.PREVIEW, weight=0, events=(R.CANDIDATE_READY,)),
            *[Tick(30 * S, verdict=PASS, weight=0) for _ in range(9)],
            Tick(
                30 * S,
                verdict=PASS,
                phase=Phase.PROMOTING,
                stage=Stage.POST_PROMOTION,
                weight=100,
                events=(R.TRAFFIC_SWITCHED,),
                stable="v1",
            ),
        ],
    )
    assert sim.last is not None
    roles = {a.role: a.ref.revision for a in sim.last.of(EnsureRevision)}
    assert roles[Role.STABLE] == old  # old revision still at full size
    walk(sim, [Tick(30 * S * i, verdict=PASS, weight=100) for i in [1] * 9])
    walk(sim, [Tick(30 * S, verdict=PASS, phase=Phase.STABLE, weight=0, stable="v2")])
    prev = sim.status.previous
    assert prev is not None
    assert prev.ref.revision == old
    assert prev.scale_down_at == sim.now + 10 * M
    walk(sim, [Tick(10 * M, events=(R.REVISION_REMOVED,))])


def test_blue_green_post_promotion_failure_switches_back_instantly() -> None:
    analysis = ANALYSIS | {"failureLimit": 0}
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN, analysis=analysis))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S), *[Tick(30 * S, verdict=PASS) for _ in range(10)]])
    assert sim.status.phase == Phase.PROMOTING
    walk(
        sim,
        [
            Tick(
                30 * S,
                verdict=FAIL,
                phase=Phase.ROLLED_BACK,
                weight=0,
                stable="v1",
                events=(R.ANALYSIS_FAILED, R.ROLLED_BACK),
            )
        ],
    )


def test_blue_green_pre_promotion_failure_never_switches() -> None:
    analysis = ANALYSIS | {"failureLimit": 0}
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN, analysis=analysis))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S), Tick(30 * S, verdict=FAIL, phase=Phase.ROLLED_BACK, weight=0)])


def test_blue_green_without_auto_promote_waits_for_promote() -> None:
    strategy = BLUE_GREEN | {"blueGreen": BLUE_GREEN["blueGreen"] | {"autoPromote": False}}
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    sim.new_version("v2")
    walk(
        sim,
        [
            Tick(),
            Tick(S),
            Tick(5 * M, phase=Phase.PAUSED, weight=0, events=(R.AWAITING_PROMOTION,)),
            Tick(M * 60, phase=Phase.PAUSED, weight=0),
            Tick(action="resume", phase=Phase.PAUSED, events=(R.ACTION_IGNORED,)),
            Tick(action="promote", phase=Phase.PROMOTING, weight=100),
            Tick(5 * M, phase=Phase.STABLE, stable="v2"),
        ],
    )


def test_blue_green_switch_waits_for_full_size() -> None:
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN))
    rev = sim.new_version("v2")
    walk(sim, [Tick(), Tick(S)])
    from serinus_operator.rollout import RevisionObservation

    sim.pin(rev, RevisionObservation(2, 1, True))
    walk(sim, [Tick(5 * M, phase=Phase.PROGRESSING, weight=0, stage=Stage.PREVIEW)])
    walk(sim, [Tick(action="promote", weight=0, events=(R.ACTION_IGNORED,))])
    sim.set_ready(rev, True)
    walk(sim, [Tick(S, phase=Phase.PROMOTING, weight=100)])


def test_blue_green_candidate_failing_after_the_switch_gets_no_traffic() -> None:
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S), Tick(5 * M, weight=100)])
    walk(
        sim,
        [
            Tick(S, ready=False, weight=0, phase=Phase.PROMOTING),
            Tick(10 * M, phase=Phase.ROLLED_BACK, weight=0, stable="v1"),
        ],
    )


def test_zero_length_preview_and_post_promotion_switch_and_promote_at_once() -> None:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {"previewDuration": "0s", "postPromotionDuration": "0s"},
    }
    sim = Sim.started(spec_dict("v1", strategy=strategy))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, phase=Phase.STABLE, stable="v2")])
    assert sim.events() == [R.CANDIDATE_READY, R.TRAFFIC_SWITCHED, R.PROMOTED]


def test_a_dry_run_check_is_shown_but_never_rolls_back() -> None:
    """Argo Rollouts' dryRun: the new ``agreement`` gate fails every measurement, which
    shows in status and as Events, and the shadow still promotes on the gating checks."""
    metrics = [
        {"name": "error-rate", "max": 0.01},
        {"name": "agreement", "min": 0.97, "dryRun": True},
    ]
    analysis = ANALYSIS | {"failureLimit": 0, "metrics": metrics}
    sim = Sim.started(spec_dict("v1", strategy=SHADOW, analysis=analysis))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, mirror=50)])
    sim.step(30 * S, verdict={"error-rate": PASS, "agreement": FAIL})
    assert sim.events() == [R.DRY_RUN]
    assert sim.status.phase == Phase.PROGRESSING
    a = sim.status.analysis
    assert a is not None and a.result == PASS and a.failures == 0
    agreement = next(m for m in a.metrics if m.name == "agreement")
    assert (agreement.result, agreement.dry_run) == (FAIL, True)
    [told] = [n.message for n in sim.last.of(Notify)] if sim.last else []
    assert "agreement" in told and "dryRun: not gating" in told
    sim.step(30 * S, verdict={"error-rate": FAIL, "agreement": PASS})
    assert sim.status.phase == Phase.ROLLED_BACK, "the gating check still gates"


def test_an_analysis_of_dry_run_checks_only_gates_nothing() -> None:
    metrics = [{"name": "error-rate", "max": 0.01, "dryRun": True}]
    analysis = ANALYSIS | {"failureLimit": 0, "metrics": metrics}
    sim = Sim.started(spec_dict("v1", strategy=SHADOW, analysis=analysis))
    sim.new_version("v2")
    walk(sim, [Tick(), Tick(S, mirror=50)])
    sim.step(30 * S, verdict={"error-rate": FAIL})
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.analysis is not None and sim.status.analysis.result == PASS

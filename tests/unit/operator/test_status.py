"""The status round-trips through the CR dict: the operator keeps no state anywhere else."""

from __future__ import annotations

import pytest

from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict, combine
from serinus_operator.api import SpecError
from serinus_operator.rollout import Phase, RolloutStatus
from unit.operator.kit import (
    ANALYSIS,
    BLUE_GREEN,
    CANARY,
    SHADOW,
    SHADOW_CANARY,
    T0,
    M,
    S,
    Sim,
    merge_patch,
    restart,
    schema_errors,
    spec_dict,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("data", [None, {}, {"phase": ""}])
def test_a_new_object_has_an_empty_status(data: dict[str, object] | None) -> None:
    status = RolloutStatus.from_dict(data)
    assert status == RolloutStatus()
    assert status.phase == Phase.INITIALIZING


def test_a_rich_status_round_trips_and_matches_the_schema() -> None:
    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN, analysis=ANALYSIS))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    sim.step(30 * S, verdict={"error-rate": Verdict.PASS, "agreement": Verdict.INCONCLUSIVE})
    sim.step(action="pause")
    status = sim.status
    assert status.candidate is not None
    assert status.candidate.pause is not None
    assert status.analysis is not None
    assert status.last_action is not None
    assert restart(status) == status
    assert schema_errors(merge_patch({}, status.to_dict()), "status") == []


@pytest.mark.parametrize("strategy", [CANARY, SHADOW, SHADOW_CANARY, BLUE_GREEN], ids=str)
def test_cleared_fields_are_deleted_by_the_merge_patch(strategy: dict[str, object]) -> None:
    """Status updates are merge patches: a cleared record must be sent as null, not left out.

    ``Sim`` merge-patches every decision onto ``stored``; here a full walk with a pause, an
    analysis run and a promotion must leave nothing behind once the rollout is over.
    """
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    sim.step(30 * S, verdict=Verdict.PASS)
    sim.step(action="pause")
    sim.step(S, action="resume")
    for _ in range(40):
        live = sim.status.candidate is not None
        sim.step(M, verdict=Verdict.PASS if live else None, action="promote" if live else None)
        if sim.status.candidate is None and sim.status.previous is None:
            break
    assert sim.status.stable is not None
    assert sim.status.stable.ref.version == "v2"
    assert RolloutStatus.from_dict(sim.stored) == sim.status
    for key in ("candidate", "analysis", "previous"):
        assert key not in sim.stored, key


def test_a_corrupt_time_names_the_field() -> None:
    with pytest.raises(SpecError) as err:
        RolloutStatus.from_dict({"analysis": {"startedAt": "yesterday"}})
    assert err.value.field == "status.analysis.startedAt"


def test_combined_verdicts() -> None:
    P, F, INC, N = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NO_DATA
    assert combine([P, P]) == P
    assert combine([P, INC]) == INC
    assert combine([N, P]) == INC
    assert combine([INC, F, P]) == F
    assert combine([]) == INC  # nothing measured is no evidence
    m = Measurement(T0, "r", (MetricResult("drift", P, 0.1, 0.2),), 5)
    assert m.results[0].threshold == 0.2

"""The status round-trips through the CR dict: the operator keeps no state anywhere else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_operator import api
from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict, combine
from serinus_operator.api import SpecError, wire
from serinus_operator.rollout import Phase, RolloutStatus
from serinus_operator.rollout.patch import merge_diff
from serinus_operator.rollout.status import (
    AnalysisStatus,
    LastAction,
    MetricStatus,
    RevisionRef,
    StableStatus,
)
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


# --- the wire format, property by property ---------------------------------------------------

TIMES = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
NAMES = st.text("abcdef-0123456789", min_size=1, max_size=8)
MODELS = st.builds(
    api.ModelSpec,
    uri=st.sampled_from(["https://m.example.com/v1.onnx", "file:///m.onnx", "/models/m.onnx"]),
    version=NAMES,
    sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    profile=st.none() | st.just("https://m.example.com/profile.json"),
)
SERVINGS = st.builds(
    api.ServingSpec,
    image=st.none() | NAMES,
    resources=st.builds(
        api.ResourcesSpec,
        requests=st.dictionaries(NAMES, NAMES, max_size=2),
        limits=st.dictionaries(NAMES, NAMES, max_size=2),
    ),
    batching=st.builds(
        api.BatchingSpec, st.integers(0, 4096), st.floats(0, 1000, allow_subnormal=False)
    ),
    env=st.dictionaries(NAMES, st.text(max_size=4), max_size=3),
)


LEAVES: dict[Any, st.SearchStrategy[Any]] = {
    datetime: TIMES,
    api.ModelSpec: MODELS,
    api.ServingSpec: SERVINGS,
    str: st.text(max_size=6),
    int: st.integers(),
    float: st.floats(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
}


def values(hint: Any) -> st.SearchStrategy[Any]:
    """Any value of a status field's type (the spec parts as their parsers accept them)."""
    tp, nullable = wire.optional(hint)
    item = wire.sequence_item(tp)
    base: st.SearchStrategy[Any]
    if tp in LEAVES:
        base = LEAVES[tp]
    elif item is not None:
        base = st.lists(values(item), max_size=3).map(tuple)
    elif wire.is_record(tp):
        base = st.deferred(lambda: records(tp))
    else:
        assert wire.is_enum(tp), tp
        base = st.sampled_from(list(tp))
    return st.none() | base if nullable else base


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, **{slot.name: values(slot.hint) for slot in wire.slots(cls)})


@given(records(RolloutStatus))
def test_every_status_round_trips_through_json_and_the_api_server(status: RolloutStatus) -> None:
    written = json.loads(json.dumps(status.to_dict()))
    assert RolloutStatus.from_dict(written) == status
    assert RolloutStatus.from_dict(merge_patch({}, written)) == status  # nulls are not stored


@given(records(RolloutStatus), records(RolloutStatus))
def test_a_status_merge_patched_over_another_reads_back_exactly(
    old: RolloutStatus, new: RolloutStatus
) -> None:
    stored = merge_patch({}, old.to_dict())
    patched = merge_patch(stored, merge_diff(stored, new.to_dict()))
    assert RolloutStatus.from_dict(patched) == new


def test_the_wire_format_is_pinned() -> None:
    """Key names, nulls for cleared fields, omissions inside lists: what old statuses hold."""
    model = api.ModelSpec("https://m.example.com/v1.onnx", "v1")
    ref = RevisionRef("abc", "v1", model, api.ServingSpec())
    at = datetime(2025, 1, 2, 3, 4, 5, 600, tzinfo=UTC)
    status = RolloutStatus(
        stable=StableStatus(ref, at),
        last_action=LastAction("promote", "n1", at, applied=False),
        handled=("promote:n1",),
    )
    assert status.to_dict() == {
        "phase": "Initializing",
        "message": "",
        "observedGeneration": 0,
        "revision": "",
        "stable": {
            "revision": "abc",
            "version": "v1",
            "template": {
                "model": {"uri": "https://m.example.com/v1.onnx", "version": "v1"},
                "serving": {"batching": {"maxBatchSize": 0, "maxLatencyMs": 2.0}},
            },
            "since": "2025-01-02T03:04:05.000600Z",
            "readyAt": None,
        },
        "candidate": None,
        "previous": None,
        "rolledBack": None,
        "traffic": {"stable": 100, "candidate": 0, "mirror": 0},
        "analysis": None,
        "conditions": [],
        "history": [],
        "lastAction": {
            "action": "promote",
            "nonce": "n1",
            "at": "2025-01-02T03:04:05.000600Z",
            "result": "Ignored",
            "message": "",
        },
        "handledActions": ["promote:n1"],
        "replicas": 0,
        "selector": "",
    }
    analysis = AnalysisStatus(at, metrics=(MetricStatus("drift", Verdict.PASS, at),))
    assert analysis.to_dict()["metrics"][0] == {
        "name": "drift",
        "result": "Pass",
        "at": "2025-01-02T03:04:05.000600Z",
    }


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"traffic": {}}, RolloutStatus()),
        ({"traffic": {"candidate": "ten"}, "observedGeneration": True}, RolloutStatus()),
        ({"phase": None, "unknownKey": 1, "conditions": None}, RolloutStatus()),
        ({"handledActions": ["promote:1", 2]}, RolloutStatus(handled=("promote:1", "2"))),
    ],
)
def test_an_old_or_odd_status_reads_with_defaults(
    stored: dict[str, Any], expected: RolloutStatus
) -> None:
    assert RolloutStatus.from_dict(stored) == expected


def test_a_record_missing_keys_reads_with_the_old_defaults() -> None:
    at = "2025-01-01T00:00:00Z"
    status = RolloutStatus.from_dict(
        {
            "analysis": {"startedAt": at, "metrics": [{"at": at}], "result": ""},
            "history": [{"startedAt": at, "finishedAt": at}],
            "conditions": [{"lastTransitionTime": at}],
            "candidate": {
                "template": {"model": {"uri": "/m.onnx", "version": "v1"}},
                "startedAt": at,
                "pause": {"since": at},
            },
        }
    )
    assert status.analysis is not None
    assert status.analysis.result is None
    assert status.analysis.metrics[0].result == Verdict.INCONCLUSIVE
    assert status.history[0].outcome == "Promoted"
    assert status.conditions[0].status == "Unknown"
    assert status.candidate is not None
    assert (status.candidate.strategy, status.candidate.stage) == ("Canary", "Canary")
    assert status.candidate.pause is not None
    assert status.candidate.pause.reason == "Manual"
    assert status.candidate.ref.serving == api.ServingSpec()


def test_a_stored_template_is_checked_like_a_spec() -> None:
    with pytest.raises(SpecError) as err:
        RolloutStatus.from_dict(
            {"stable": {"template": {"model": {"uri": "ftp://m", "version": "v1"}}, "since": "x"}}
        )
    assert err.value.field == "status.stable.template.model.uri"

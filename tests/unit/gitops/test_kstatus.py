"""kstatus over statuses the engine writes: ``flux ... --wait`` and Flux's health checks must
tell "rolled out" (Current), "rolling out" (InProgress) and "rolled back / waiting for a
person / invalid" (Failed) apart, in every phase.

Each object comes from the real engine through ``Sim``; kstatus is the real one (built from
sigs.k8s.io/cli-utils by hack/kstatus/build.sh; skipped without Go) and its rules restated
(``support.gitops.kstatus_rules``), held to the same answers here so that the property test
below can ask the restated rules over random histories.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import ManualAction
from serinus_operator.rollout import Phase
from support import gitops
from unit.gitops.kit import (
    CASES,
    CURRENT,
    FAILED,
    IN_PROGRESS,
    gitops_conditions,
    md_object,
)
from unit.operator.kit import ANALYSIS, BLUE_GREEN, CANARY, SHADOW_CANARY, Sim, spec_dict

pytestmark = pytest.mark.unit


def _real_kstatus_or_skip() -> None:
    try:
        gitops.kstatus_binary()
    except gitops.NoKstatus as exc:
        pytest.skip(f"SKIPPED ON PURPOSE: {exc}")


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    return {name: md_object(case.build()) for name, case in CASES.items()}


@pytest.mark.parametrize("name", CASES)
def test_conditions_follow_kstatus_conventions(name: str, objects: dict[str, Any]) -> None:
    case, obj = CASES[name], objects[name]
    status = obj["status"]
    assert status["phase"] == case.phase
    assert gitops_conditions(obj) == {case.condition: case.reason}, status["conditions"]
    by_type = {c["type"]: c for c in status["conditions"]}
    # "abnormal-true": Reconciling and Stalled are there only while they are True
    for kind in ("Reconciling", "Stalled"):
        assert kind not in by_type or by_type[kind]["status"] == "True"
    held = by_type[case.condition]
    assert held["message"], held
    ready = by_type["Ready"]
    assert (ready["status"] == "True") == (case.condition == "Ready")
    if name != "generation-not-observed":
        assert status["observedGeneration"] == obj["metadata"]["generation"]


@pytest.mark.parametrize("name", CASES)
def test_kstatus_rules_per_phase(name: str, objects: dict[str, Any]) -> None:
    assert gitops.kstatus_rules(objects[name])[0] == CASES[name].kstatus


@pytest.mark.parametrize("name", CASES)
def test_real_kstatus_per_phase(name: str, objects: dict[str, Any]) -> None:
    _real_kstatus_or_skip()
    obj = objects[name]
    got = gitops.kstatus(obj)
    assert got["status"] == CASES[name].kstatus, got
    assert (got["status"], got["message"]) == gitops.kstatus_rules(obj)
    if got["status"] == FAILED:  # kstatus hands on the Stalled condition, reason and all
        (stalled,) = got["conditions"]
        assert (stalled["type"], stalled["reason"]) == ("Stalled", CASES[name].reason)


def test_real_kstatus_rules_corner_cases() -> None:
    """What the restated rules assume of kstatus, asked of the real one."""
    _real_kstatus_or_skip()
    base = md_object(Sim.started(spec_dict("v1")))
    variants = {
        "no status": {k: v for k, v in base.items() if k != "status"},
        "Ready False only": _with_conditions(base, [("Ready", "False")]),
        "Ready Unknown only": _with_conditions(base, [("Ready", "Unknown")]),
        "Reconciling False": _with_conditions(base, [("Reconciling", "False"), ("Ready", "True")]),
        "Stalled before Reconciling": _with_conditions(
            base, [("Stalled", "True"), ("Reconciling", "True")]
        ),
        "deleting": {
            **base,
            "metadata": {**base["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"},
        },
    }
    for what, obj in variants.items():
        got = gitops.kstatus(obj)
        assert (got["status"], got["message"]) == gitops.kstatus_rules(obj), what


def _with_conditions(obj: Any, conditions: list[tuple[str, str]]) -> Any:
    out = copy.deepcopy(obj)
    out["status"]["conditions"] = [
        {"type": t, "status": s, "reason": f"R{t}", "message": f"m {t} {s}"} for t, s in conditions
    ]
    return out


# --- over random histories ------------------------------------------------------------------

WAITS = [timedelta(seconds=s) for s in (0, 1, 30, 150, 700)]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.sampled_from(WAITS)),
        st.tuples(st.just("verdict"), st.sampled_from(list(Verdict))),
        st.tuples(st.just("action"), st.sampled_from([a.value for a in ManualAction])),
        st.tuples(st.just("ready"), st.booleans()),
        st.tuples(st.just("version"), st.sampled_from(["v1", "v2", "v3"])),
    ),
    max_size=25,
)


def expected_kstatus(sim: Sim) -> str:
    """What the phase means to kstatus (docs/gitops.md, "kstatus")."""
    s, analysis = sim.status, sim.spec.analysis
    if s.phase == Phase.STABLE:
        available = {c.type: c.status for c in s.conditions}["Available"] == "True"
        return CURRENT if available else IN_PROGRESS
    if s.phase == Phase.ROLLED_BACK:
        return FAILED
    if s.phase == Phase.PAUSED:
        assert s.candidate is not None and s.candidate.pause is not None
        resumes = analysis is not None and analysis.resume_on_pass
        inconclusive = s.candidate.pause.reason == "InconclusiveAnalysis"
        return IN_PROGRESS if inconclusive and resumes else FAILED
    return IN_PROGRESS


@settings(max_examples=60)
@given(
    strategy=st.sampled_from([CANARY, SHADOW_CANARY, BLUE_GREEN]),
    analysis=st.sampled_from([None, ANALYSIS, ANALYSIS | {"resumeOnPass": True}]),
    history=ops,
)
def test_exactly_one_of_ready_reconciling_stalled_in_any_history(
    strategy: dict[str, Any], analysis: dict[str, Any] | None, history: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=analysis))
    for kind, arg in history:
        if kind == "wait":
            sim.step(arg)
        elif kind == "verdict":
            if sim.status.candidate is None or analysis is None:
                continue
            sim.step(timedelta(seconds=30), verdict=arg)
        elif kind == "action":
            sim.step(action=arg)
        elif kind == "ready":
            if sim.status.candidate is not None:
                sim.set_ready(sim.candidate, arg)
            sim.step(timedelta(seconds=1))
        else:
            sim.new_version(arg)
            sim.step()
        obj = md_object(sim)
        held = gitops_conditions(obj)
        assert len(held) == 1, (sim.status.phase, held)
        status, _ = gitops.kstatus_rules(obj)
        assert status == expected_kstatus(sim), (sim.status.phase, sim.status.message, held)
        ready = "Ready" in held
        assert ready == (sim.status.phase == Phase.STABLE and status == CURRENT)

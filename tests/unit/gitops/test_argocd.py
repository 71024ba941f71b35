"""manifests/argocd/: Argo CD's health check and actions for serinus.dev/ModelDeployment, run
in a real Lua 5.1 stripped as Argo CD strips it (support.argocd), over statuses the engine
produces through ``Sim``; the objects recorded from real rollouts are in test_recorded.py.

An action's output goes the whole way: the merge patch Argo CD would send, applied to the
object, parsed by the operator's own parser, and decided on by the engine - applied once,
however often the operator reconciles, and a second request made after it is new.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator import api
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import ManualAction
from serinus_operator.rollout import Notify, Phase, Reason
from support import argocd, gitops
from support.rfc7386 import merge_patch
from unit.gitops import kit
from unit.gitops.kit import CASES, md_object
from unit.operator.kit import ANALYSIS, BLUE_GREEN, CANARY, S, Sim, spec_dict

pytestmark = pytest.mark.unit


# --- the argocd-cm snippet -----------------------------------------------------------------


def test_configmap_snippet_is_generated_from_the_lua_files() -> None:
    rendered = argocd.render_configmap()
    if gitops.recording():
        argocd.CONFIGMAP.write_text(rendered)
    assert argocd.CONFIGMAP.read_text() == rendered, (
        "manifests/argocd/argocd-cm.yaml is stale: run "
        "SERINUS_RECORD=1 .venv/bin/python -m pytest tests/unit/gitops/test_argocd.py"
    )
    scripts = argocd.configmap_scripts(rendered)
    assert scripts["health"] == argocd.HEALTH.read_text()
    assert scripts["discovery"] == argocd.DISCOVERY.read_text()
    for name in argocd.ACTIONS:
        assert scripts[name] == argocd.action_script(name).read_text()
    cm = yaml.safe_load(rendered)
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")


def test_one_action_per_manual_request_all_written_alike() -> None:
    """The actions are those `kubectl serinus` has, and differ only in the action's name."""
    assert set(argocd.ACTIONS) == {a.value for a in ManualAction}
    template = argocd.action_script("promote").read_text()
    for name in argocd.ACTIONS:
        text = argocd.action_script(name).read_text()
        assert text.replace(f'"{name}"', '"promote"') == template, name


# --- health ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    return {name: md_object(case.build()) for name, case in CASES.items()}


@pytest.mark.parametrize("name", CASES)
def test_health_per_phase(name: str, objects: dict[str, Any]) -> None:
    obj = objects[name]
    got = argocd.health(obj)
    assert got["status"] == CASES[name].health, got
    assert got["message"], got
    if name != "generation-not-observed":
        assert obj["status"]["message"] in got["message"] or got["status"] == "Degraded"


def test_health_before_the_operator_writes_anything() -> None:
    obj = md_object(Sim(spec_dict("v1")))
    del obj["status"]
    assert argocd.health(obj)["status"] == "Progressing"
    obj["status"] = {}
    assert argocd.health(obj)["status"] == "Progressing"


# --- discovery -------------------------------------------------------------------------------

ALL = set(argocd.ACTIONS)
ENABLED = {
    "initializing": set(),
    "progressing": {"promote", "promote-full", "abort", "pause"},
    "paused-awaiting-promotion": {"promote", "promote-full", "abort"},
    "paused-by-request": {"promote", "promote-full", "abort", "resume"},
    "paused-inconclusive": {"promote", "promote-full", "abort", "resume"},
    "rolled-back": {"retry"},
    "aborted": {"retry"},
    "stable": set(),
    "promoted": set(),
}


@pytest.mark.parametrize("name", ENABLED)
def test_discovery_offers_what_the_operator_accepts_now(name: str, objects: dict[str, Any]) -> None:
    found = argocd.discovery(objects[name])
    assert set(found) == ALL
    assert {a for a, on in found.items() if on} == ENABLED[name]


def test_retry_is_not_offered_once_the_spec_moved_on() -> None:
    sim = kit.aborted()
    sim.new_version("v3")
    obj = md_object(sim)
    obj["status"]["revision"] = sim.revision  # as the operator's next pass records it
    assert not argocd.discovery(obj)["retry"]


# --- actions: what Argo CD sends, as the operator reads it ------------------------------------


def after(patch: dict[str, Any], obj: dict[str, Any], resource_version: int) -> dict[str, Any]:
    """The object the API server stores after the action's merge patch."""
    out: dict[str, Any] = merge_patch(copy.deepcopy(obj), patch)
    out["metadata"]["resourceVersion"] = str(resource_version)
    return out


@pytest.mark.parametrize("name", argocd.ACTIONS)
def test_an_action_writes_the_annotation_kubectl_serinus_writes_and_nothing_else(
    name: str, objects: dict[str, Any]
) -> None:
    obj = objects["paused-awaiting-promotion"]
    patch = argocd.action_patch(name, obj)
    assert patch == {"metadata": {"annotations": {api.ACTION_ANNOTATION: f"{name}:argocd-100"}}}
    md = api.parse(after(patch, obj, 101))
    assert md.invalid_request is None
    assert md.request == api.ActionRequest(ManualAction(name), "argocd-100")
    # other annotations stay; so does everything Argo CD sends back as JSON
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"] = {"team": "fraud", api.ACTION_ANNOTATION: "abort:1-aa"}
    obj["metadata"]["labels"] = {}
    assert argocd.action_patch(name, obj) == {
        "metadata": {"annotations": {api.ACTION_ANNOTATION: f"{name}:argocd-100"}}
    }


def test_an_action_on_an_object_without_a_resource_version_fails_and_changes_nothing() -> None:
    obj = md_object(kit.awaiting_promotion())
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(argocd.LuaError, match="resourceVersion"):
        argocd.action_patch("promote", obj)


def decide_on(sim: Sim, obj: dict[str, Any], *, after: timedelta = S) -> None:
    """One operator pass over ``obj`` as stored: the request parsed from its annotation."""
    md = api.parse(obj)
    assert md.invalid_request is None
    sim.request = md.request
    sim.step(after)


TWO_PAUSES = {
    "type": "Canary",
    "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]},
}


def test_a_promote_from_argo_cd_is_applied_exactly_once() -> None:
    """Two pauses that wait for a promote: one request passes one, however often the
    operator reconciles it; the next request, made on the object as the operator left
    it, passes the next."""
    sim = kit.until(kit.rolling(TWO_PAUSES), Phase.PAUSED)
    assert sim.status.traffic.candidate == 20
    live = md_object(sim, resource_version=100)
    live = after(argocd.action_patch("promote", live), live, 101)
    decide_on(sim, live)
    first = sim.status.last_action
    assert first is not None
    assert (first.action, first.nonce, first.applied) == ("promote", "argocd-100", True)
    assert (sim.status.phase, sim.status.traffic.candidate) == (Phase.PAUSED, 50)
    for _ in range(3):  # the operator reconciles the same object again and again
        decide_on(sim, live, after=timedelta(seconds=30))
        assert Reason.ACTION_IGNORED not in sim.events()
        assert sim.status.last_action == first
        assert (sim.status.phase, sim.status.traffic.candidate) == (Phase.PAUSED, 50)
    assert sim.status.handled.count("promote:argocd-100") == 1
    # Argo CD repeating the request on the version it read then sends nothing
    stale = copy.deepcopy(live)
    stale["metadata"]["resourceVersion"] = "100"
    assert argocd.action_patch("promote", stale) == {}
    # a request on the object as stored after the operator's status write is a new one
    live = after({}, live, 102)
    live = after(argocd.action_patch("promote", live), live, 103)
    decide_on(sim, live)
    assert sim.status.last_action is not None
    assert sim.status.last_action.nonce == "argocd-102"
    assert sim.status.phase == Phase.STABLE
    promoted = [h for h in sim.status.history if h.version == "v2"]
    assert [h.outcome for h in promoted] == ["Promoted"]


def test_each_new_request_from_argo_cd_is_new_to_the_operator() -> None:
    """25 requests (more than the operator remembers, 20), each on the object as stored
    after the operator's last status write: every one applied once, none twice."""
    sim = kit.rolling()
    rv = 100
    applied = []
    for i in range(25):
        rv += 1  # the operator's status write
        live = md_object(sim, resource_version=rv)
        name = "pause" if i % 2 == 0 else "resume"
        live = after(argocd.action_patch(name, live), live, rv := rv + 1)
        decide_on(sim, live)
        last = sim.status.last_action
        assert last is not None
        assert (last.action, last.nonce, last.applied) == (name, f"argocd-{rv - 1}", True), last
        applied.append(last.nonce)
        decide_on(sim, live)  # and once more: nothing new
        assert sim.status.last_action == last
        assert sim.status.phase == (Phase.PAUSED if name == "pause" else Phase.PROGRESSING)
    assert len(set(applied)) == 25


@pytest.mark.parametrize(
    ("case", "action", "phase"),
    [
        ("paused-awaiting-promotion", "abort", Phase.ROLLED_BACK),
        ("paused-awaiting-promotion", "promote-full", Phase.STABLE),
        ("progressing", "pause", Phase.PAUSED),
        ("paused-by-request", "resume", Phase.PROGRESSING),
        ("aborted", "retry", Phase.PROGRESSING),
    ],
)
def test_each_action_does_what_kubectl_serinus_does(case: str, action: str, phase: Phase) -> None:
    sim = CASES[case].build()
    live = md_object(sim)
    live = after(argocd.action_patch(action, live), live, 101)
    decide_on(sim, live)
    for _ in range(20):  # a promote-full scales the candidate up first
        if sim.status.phase == phase:
            break
        decide_on(sim, live, after=timedelta(seconds=30))
    assert sim.status.phase == phase, sim.status.message
    assert sim.status.last_action is not None and sim.status.last_action.applied


# --- discovery against the operator, over random histories -----------------------------------

WAITS = [timedelta(seconds=s) for s in (0, 1, 30, 150, 700)]
moves = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.sampled_from(WAITS)),
        st.tuples(st.just("action"), st.sampled_from(argocd.ACTIONS)),
        st.tuples(st.just("version"), st.sampled_from(["v1", "v2", "v3"])),
        st.tuples(st.just("fail"), st.just(None)),
    ),
    max_size=12,
)


@settings(max_examples=40)
@given(strategy=st.sampled_from([CANARY, BLUE_GREEN]), history=moves)
def test_an_action_argo_cd_disables_is_one_the_operator_would_ignore(
    strategy: dict[str, Any], history: list[tuple[str, Any]]
) -> None:
    sim = Sim.started(spec_dict("v1", strategy=strategy, analysis=ANALYSIS))
    for kind, arg in history:
        if kind == "wait":
            sim.step(arg)
        elif kind == "action":
            sim.step(action=arg)
        elif kind == "version":
            sim.new_version(arg)
            sim.step()
        elif sim.status.candidate is not None and sim.status.candidate.ready_since is not None:
            sim.step(timedelta(seconds=30), verdict=Verdict.FAIL)
        obj = md_object(sim)
        health = argocd.health(obj)["status"]
        assert health == {
            Phase.STABLE: "Healthy",
            Phase.PAUSED: "Suspended",
            Phase.ROLLED_BACK: "Degraded",
        }.get(sim.status.phase, "Progressing")
        for name, enabled in argocd.discovery(obj).items():
            trial = copy.deepcopy(sim)
            trial.check = False
            trial.step(action=name)
            last = trial.status.last_action
            assert last is not None and last.action == name
            if not enabled:
                assert not last.applied, (name, sim.status.phase, last.message)
            elif name in {"abort", "pause", "resume", "retry"}:
                assert last.applied, (name, sim.status.phase, last.message)
            assert trial.last is not None
            ignored = [n for n in trial.last.of(Notify) if n.reason == Reason.ACTION_IGNORED]
            assert bool(ignored) == (not last.applied)

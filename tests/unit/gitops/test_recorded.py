"""kstatus and Argo CD's health check and actions over whole ModelDeployments recorded from
real rollouts on the real control plane (tests/integration/operator/test_gitops.py writes
them with ``SERINUS_RECORD=1``): a canary in progress, paused for a promote, promoted,
a spec not yet observed, rolled back by an abort, a first revision starting and stuck, and
a spec the operator refuses.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from serinus_operator import api
from serinus_operator.rollout import Observed, Phase, RevisionObservation, RolloutStatus, decide
from support import argocd, gitops
from support.rfc7386 import merge_patch
from unit.gitops.kit import gitops_conditions

pytestmark = pytest.mark.unit

RECORDED = gitops.recorded()


def test_every_phase_was_recorded() -> None:
    assert set(RECORDED) == set(gitops.EXPECTED), (
        "record them: SERINUS_RECORD=1 .venv/bin/python -m pytest "
        "tests/integration/operator/test_gitops.py"
    )


@pytest.mark.parametrize("name", sorted(gitops.EXPECTED))
def test_kstatus_rules(name: str) -> None:
    assert gitops.kstatus_rules(RECORDED[name])[0] == gitops.EXPECTED[name][0]


@pytest.mark.parametrize("name", sorted(gitops.EXPECTED))
def test_real_kstatus(name: str) -> None:
    try:
        gitops.kstatus_binary()
    except gitops.NoKstatus as exc:
        pytest.skip(f"SKIPPED ON PURPOSE: {exc}")
    obj = RECORDED[name]
    got = gitops.kstatus(obj)
    assert got["status"] == gitops.EXPECTED[name][0], got
    assert (got["status"], got["message"]) == gitops.kstatus_rules(obj)


@pytest.mark.parametrize("name", sorted(gitops.EXPECTED))
def test_argo_cd_health(name: str) -> None:
    got = argocd.health(RECORDED[name])
    assert got["status"] == gitops.EXPECTED[name][1], got


@pytest.mark.parametrize("name", sorted(set(gitops.EXPECTED) - {"generation-not-observed"}))
def test_one_of_ready_reconciling_stalled(name: str) -> None:
    obj = RECORDED[name]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    (held,) = gitops_conditions(obj)
    want = {"Current": "Ready", "InProgress": "Reconciling", "Failed": "Stalled"}
    assert held == want[gitops.EXPECTED[name][0]]


def test_discovery_over_recorded_objects() -> None:
    def enabled(name: str) -> set[str]:
        return {a for a, on in argocd.discovery(RECORDED[name]).items() if on}

    assert enabled("paused") == {"promote", "promote-full", "abort"}
    assert enabled("progressing") == {"promote", "promote-full", "abort", "pause"}
    assert enabled("rolled-back") == {"retry"}
    assert enabled("stable") == enabled("promoted") == enabled("degraded") == set()


def _observed_all_ready(obj: dict[str, Any], request: api.ActionRequest | None) -> Observed:
    """Every revision the status names, running and ready at full size."""
    s, replicas = obj["status"], obj["spec"]["replicas"]
    revisions = {
        s[k]["revision"] for k in ("stable", "candidate", "previous") if s.get(k) is not None
    }
    ready = RevisionObservation(replicas, replicas, True)
    return Observed(obj["metadata"]["generation"], dict.fromkeys(revisions, ready), request)


def test_a_recorded_pause_takes_argo_cd_promote_once() -> None:
    """The recorded paused object, the promote action's patch applied to it, read by the
    operator's parser and decided on by the engine from the recorded status."""
    live = RECORDED["paused"]
    patch = argocd.action_patch("promote", live)
    rv = live["metadata"]["resourceVersion"]
    annotation = {api.ACTION_ANNOTATION: f"promote:argocd-{rv}"}
    assert patch == {"metadata": {"annotations": annotation}}
    stored = merge_patch(copy.deepcopy(live), patch)
    md = api.parse(stored)
    assert md.request == api.ActionRequest(api.ManualAction.PROMOTE, f"argocd-{rv}")
    status = RolloutStatus.from_dict(live["status"])
    assert status.phase == Phase.PAUSED
    assert status.candidate is not None and status.candidate.pause is not None
    now = status.candidate.pause.since + timedelta(seconds=5)
    observed = _observed_all_ready(stored, md.request)
    first = decide(md.spec, status, observed, [], now)
    assert first.status.last_action is not None
    assert first.status.last_action.applied, first.status.last_action
    assert first.status.traffic.candidate > status.traffic.candidate
    again = decide(md.spec, first.status, observed, [], now + timedelta(seconds=2))
    assert again.status.last_action == first.status.last_action
    assert again.status.handled.count(f"promote:argocd-{rv}") == 1
    assert again.status.traffic == first.status.traffic

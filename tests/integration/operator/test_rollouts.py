"""Rollouts driven end to end by the real operator process against a real control plane.

Readiness comes from Kubernetes' own Deployment and ReplicaSet controllers over the stand-in
kubelet's pods (tests/support/real_cluster.py); traffic is read back from what the operator
wrote (the router's routing-table ConfigMap or the public Service); rollout state from the
ModelDeployment's status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.cluster import MD, Cluster, Operator, md, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def kubectl_serinus(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as ``kubectl serinus`` runs it, with a person's kubeconfig (the admin's)."""
    kubeconfig = cluster.kube.cluster.kubeconfig
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "serinus_operator.cli",
            *args,
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            cluster.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
    )


def phase(expected: str) -> Any:
    return lambda s: s.get("phase") == expected


def deploy_stable(cluster: Cluster, version: str = "v1", **kwargs: Any) -> str:
    cluster.apply(md(version, **kwargs))
    status = cluster.wait_status("fraud", phase("Stable"), what=f"{version} stable")
    revision: str = status["stable"]["revision"]
    return revision


def test_canary_promoted_step_by_step(cluster: Cluster) -> None:
    cluster.operator.start()
    strategy = {
        "type": "Canary",
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "1s"}},
                {"setWeight": 60},
                {"pause": {}},
            ]
        },
    }
    v1 = deploy_stable(cluster, strategy=strategy)
    cluster.apply(md("v2", strategy=strategy))
    s = cluster.wait_status(
        "fraud", lambda s: (s.get("candidate") or {}).get("version") == "v2", what="candidate"
    )
    v2 = s["candidate"]["revision"]
    # The indefinite pause holds at 60% until promoted.
    cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 60, what="60%")
    assert wait_for(lambda: cluster.weights("fraud") == {v1: 40, v2: 60}, what="routes at 60%")
    assert cluster.status("fraud")["phase"] == "Paused"
    shown = kubectl_serinus(cluster, "status", "fraud")
    assert "Phase:      Paused" in shown.stdout and "candidate 60%" in shown.stdout, shown
    promoted = kubectl_serinus(cluster, "promote", "fraud")
    assert promoted.returncode == 0, promoted
    assert "Applied" in promoted.stdout, promoted.stdout
    assert (
        "promote" in (cluster.get("fraud") or {})["metadata"]["annotations"]["serinus.dev/action"]
    )
    assert (cluster.get("fraud") or {})["spec"]["model"]["version"] == "v2"  # spec untouched
    s = cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["revision"] == v2,
        what="promoted",
    )
    assert s["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
    assert s["history"][-1]["outcome"] == "Promoted"
    assert wait_for(lambda: cluster.weights("fraud") == {v2: 100} or None, what="routes at v2")
    cluster.wait_events("fraud", "RolloutStarted", "WeightChanged", "Promoted")
    op = cluster.operator
    assert op.sample("serinus_rollouts_total", name="fraud", outcome="promoted") == 1, s["history"]
    assert op.sample("serinus_rollouts_total", name="fraud", outcome="rolled_back") == 0
    assert op.sample("serinus_rollout_phase", name="fraud", phase="Stable") == 1
    assert op.sample("serinus_rollout_phase", name="fraud", phase="Paused") == 0
    assert op.sample("serinus_rollout_weight", name="fraud", role="stable", revision=v2) == 100


def test_blue_green_rolls_back_inside_the_window(cluster: Cluster) -> None:
    cluster.operator.start()
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {
            "autoPromote": True,
            "previewDuration": "1s",
            "postPromotionDuration": "1h",
            "scaleDownDelay": "1h",
        },
    }
    v1 = deploy_stable(cluster, strategy=strategy, traffic={"provider": "Service"})
    cluster.apply(md("v2", strategy=strategy, traffic={"provider": "Service"}))

    def public_selects(revision: str) -> bool:
        svc = cluster.kube.get("v1", "services", cluster.namespace, "fraud") or {}
        return (svc.get("spec") or {}).get("selector", {}).get("serinus.dev/revision") == revision

    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 100, what="switch")
    v2 = s["candidate"]["revision"]
    assert wait_for(lambda: public_selects(v2), what="the Service switched to v2")
    cluster.annotate_action("fraud", "abort:n1")
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["stable"] == 100, what="rollback")
    assert s["stable"]["revision"] == v1
    assert wait_for(lambda: public_selects(v1), what="the Service back on v1")
    assert wait_for(
        lambda: {"Aborted", "RolledBack"} & set(cluster.events("fraud")), what="rollback Event"
    )


def test_shadow_mirrors_then_promotes(cluster: Cluster) -> None:
    cluster.operator.start()
    strategy = {
        "type": "Shadow",
        "shadow": {"mirrorPercent": 30, "duration": "2s", "then": "Promote"},
    }
    v1 = deploy_stable(cluster, strategy=strategy)
    cluster.apply(md("v2", strategy=strategy))
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["mirror"] == 30, what="mirroring")
    v2 = s["candidate"]["revision"]
    routes = cluster.routes("fraud")
    assert routes["shadow"]["revision"] == v2 and routes["shadow"]["percent"] == 30
    assert cluster.weights("fraud")[v1] == 100
    s = cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["revision"] == v2,
        what="promoted after the shadow stage",
    )


def test_new_revision_mid_rollout_supersedes(cluster: Cluster) -> None:
    cluster.operator.start()
    v1 = deploy_stable(cluster)
    cluster.apply(md("v2"))
    cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 50, what="v2 at 50%")
    cluster.apply(md("v3"))
    s = cluster.wait_status(
        "fraud",
        lambda s: (
            (s.get("candidate") or {}).get("version") == "v3" and s["traffic"]["candidate"] == 50
        ),
        what="v3 replaced v2",
    )
    assert s["stable"]["revision"] == v1
    assert any(h["outcome"] == "Superseded" and h["version"] == "v2" for h in s["history"])
    v3 = s["candidate"]["revision"]
    assert wait_for(lambda: cluster.weights("fraud") == {v1: 50, v3: 50}, what="v3 routed")


def test_failing_revision_never_takes_traffic_and_rolls_back(cluster: Cluster) -> None:
    cluster.operator.start()
    v1 = deploy_stable(cluster, progressDeadline="3s")
    # Find v2's revision before applying it: the same hash the operator computes.
    from serinus_operator.api import parse

    manifest = md("v2", progressDeadline="3s")
    meta = {"name": "fraud", "namespace": cluster.namespace}
    v2 = parse({**manifest, "metadata": meta}).spec.revision
    cluster.fail_revision("fraud", v2)
    cluster.apply(manifest)
    s = cluster.wait_status(
        "fraud",
        lambda s: (s.get("rolledBack") or {}).get("revision") == v2,
        timeout=40,
        what="rolled back after the progress deadline",
    )
    assert s["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
    assert s["stable"]["revision"] == v1
    assert cluster.weights("fraud") == {v1: 100}


def test_operator_killed_mid_rollout_resumes(cluster: Cluster) -> None:
    cluster.operator.start()
    strategy = {
        "type": "Canary",
        "canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]},
    }
    v1 = deploy_stable(cluster, strategy=strategy)
    cluster.apply(md("v2", strategy=strategy))
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 25, what="25%")
    v2 = s["candidate"]["revision"]
    history, step = len(s["history"]), s["candidate"]["step"]
    cluster.operator.kill()
    before = {e["metadata"]["name"] for e in cluster.event_objects("fraud")}
    cluster.operator.start()
    # Nothing is redone: same step, same traffic, no new rollout started.
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 25, what="resumed")
    assert s["candidate"]["step"] == step and len(s["history"]) == history
    cluster.annotate_action("fraud", "promote:after-restart")
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 75, what="75%")
    assert wait_for(lambda: cluster.weights("fraud") == {v1: 25, v2: 75}, what="routes at 75%")
    cluster.wait_events("fraud", "StepAdvanced")
    new = [
        e["reason"] for e in cluster.event_objects("fraud") if e["metadata"]["name"] not in before
    ]
    assert "RolloutStarted" not in new, new
    assert new.count("StepAdvanced") == 1, new  # and nothing posted twice across the restart


def test_invalid_spec_is_refused_by_the_api_server_and_nothing_changes(cluster: Cluster) -> None:
    """The CRD's schema and CEL rules refuse what the api package would refuse, with the same field;
    the operator's own Degraded path (a spec stored under an older, laxer CRD) is covered by
    the engine's and the reconcile loop's tests, as no such object can be created here."""
    cluster.operator.start()
    v1 = deploy_stable(cluster)
    broken = md("v2")
    broken["spec"]["analysis"] = {"metrics": [{"name": "not-a-builtin", "max": 1}]}
    with pytest.raises(httpx.HTTPStatusError) as refused:
        cluster.apply(broken)
    assert refused.value.response.status_code == 422
    assert "spec.analysis.metrics[0]" in refused.value.response.text
    assert "add a PromQL query" in refused.value.response.text
    s = cluster.status("fraud")
    assert s["phase"] == "Stable" and s["stable"]["revision"] == v1
    assert (cluster.get("fraud") or {})["spec"]["model"]["version"] == "v1"
    cluster.apply(md("v2"))
    cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 50, what="v2 at 50%")


def test_a_spec_the_provider_cannot_carry_out_degrades_and_recovers(cluster: Cluster) -> None:
    """Valid for the API server (the CRD cannot know which provider feeds which check),
    refused by the operator with a condition and an Event; traffic stays on stable."""
    cluster.operator.start()
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromote": True, "previewDuration": "1h"}}
    service = {"provider": "Service"}
    v1 = deploy_stable(cluster, strategy=strategy, traffic=service)
    broken = md("v2", strategy=strategy, traffic=service)
    broken["spec"]["analysis"] = {"metrics": [{"name": "agreement", "min": 0.9}]}
    cluster.apply(broken)
    s = cluster.wait_status("fraud", phase("Degraded"), what="Degraded")
    assert "spec.traffic.provider" in s["message"] and "agreement" in s["message"]
    assert [c for c in s["conditions"] if c["reason"] == "InvalidSpec"], s["conditions"]
    cluster.wait_events("fraud", "InvalidSpec")
    public = cluster.kube.get("v1", "services", cluster.namespace, "fraud") or {}
    assert public["spec"]["selector"]["serinus.dev/revision"] == v1
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None
    cluster.apply(md("v2", strategy=strategy, traffic=service))
    cluster.wait_status(
        "fraud", lambda s: (s.get("candidate") or {}).get("version") == "v2", what="recovered"
    )
    cluster.wait_events("fraud", "SpecFixed")


def test_deletion_takes_every_child_with_it(cluster: Cluster) -> None:
    cluster.operator.start()
    v1 = deploy_stable(cluster)
    assert f"fraud-{v1}" in cluster.names("apps/v1", "deployments")
    cluster.delete("fraud")
    wait_for(lambda: cluster.get("fraud") is None, what="the ModelDeployment gone")
    # Collected by the real garbage collector, through ownerReferences.
    wait_for(lambda: not cluster.names("apps/v1", "deployments"), what="Deployments collected")
    wait_for(lambda: not cluster.names("apps/v1", "replicasets"), what="ReplicaSets collected")
    wait_for(lambda: not cluster.names("v1", "pods"), what="pods collected")
    wait_for(lambda: not cluster.names("v1", "services"), what="Services collected")
    wait_for(
        lambda: cluster.names("v1", "configmaps") <= {"kube-root-ca.crt"},
        what="the routing table collected",
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_kubectl_apply_of_the_examples(cluster: Cluster, tmp_path: Path) -> None:
    """kubectl itself (client-side apply, strict server-side field validation) as a platform
    team would, with every example as written (they name namespace ml)."""
    kube = cluster.kube
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}})
    operator = Operator(kube=kube, workdir=tmp_path, namespace="ml", name="examples")
    operator.start()
    try:
        for example in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
            result = subprocess.run(
                [
                    "kubectl",
                    "--kubeconfig",
                    str(kube.cluster.kubeconfig),  # a person with rights to create them
                    "apply",
                    "--validate=strict",
                    "-f",
                    str(example),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
        names = {o["metadata"]["name"] for o in kube.list(*MD, "ml")}
        assert names
        for name in names:

            def reconciled(name: str = name) -> dict[str, Any] | None:
                found = kube.get(*MD, "ml", name) or {}
                status = found.get("status") or {}
                return status if status.get("phase") in {"Stable", "Degraded"} else None

            wait_for(reconciled, what=f"{name} reconciled")
    finally:
        for md_obj in kube.list(*MD, "ml"):
            kube.delete(*MD, "ml", md_obj["metadata"]["name"])
        wait_for(lambda: not kube.list(*MD, "ml"), what="the examples deleted")
        operator.stop()

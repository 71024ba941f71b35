"""What GitOps tools see of real rollouts (docs/gitops.md): the whole ModelDeployment, as the
real API server returns it at each phase of a canary driven by the real operator, read by
the real kstatus (Flux's status library, hack/kstatus), by Argo CD's health check
(manifests/argocd, in a real Lua) and by ``kubectl wait``; the Argo CD promote action's
patch sent to the API server as Argo CD sends it, and applied by the operator once.

``SERINUS_RECORD=1`` also writes those objects to tests/unit/gitops/recorded/, where the
unit tests read them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import pytest

from serinus_operator.api import parse
from support import argocd, gitops
from support.cluster import MD, Cluster, md, wait_for

pytestmark = pytest.mark.integration

STEPS = {
    "type": "Canary",
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "3s"}},
            {"setWeight": 40},
            {"pause": {}},
            {"setWeight": 60},
            {"pause": {}},
        ]
    },
}


def looks_at(cluster: Cluster, name: str, seen: dict[str, Any], as_: str) -> dict[str, Any]:
    """Read the whole object, check what kstatus and Argo CD make of it, keep it."""
    obj = cluster.get(name)
    assert obj is not None
    want_kstatus, want_health = gitops.EXPECTED[as_]
    real = gitops.kstatus(obj)
    assert real["status"] == want_kstatus, (as_, real, obj.get("status"))
    assert (real["status"], real["message"]) == gitops.kstatus_rules(obj)
    health = argocd.health(obj)
    assert health["status"] == want_health, (as_, health)
    seen[as_] = obj
    if gitops.recording():
        gitops.record(as_, obj)
    return obj


def kubectl_wait(cluster: Cluster, condition: str, timeout: str = "2s") -> bool:
    """``kubectl wait --for=condition=<condition>`` on md/fraud: True once it holds."""
    done = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(cluster.kube.cluster.kubeconfig),
            "-n",
            cluster.namespace,
            "wait",
            f"--for=condition={condition}",
            "modeldeployments.serinus.dev/fraud",
            f"--timeout={timeout}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def argo_cd_action(cluster: Cluster, action: str) -> str:
    """What Argo CD does for a resource action: run its Lua on the live object and send the
    merge patch to the main resource. Returns the annotation written."""
    live = cluster.get("fraud")
    assert live is not None
    patch = argocd.action_patch(action, live)
    assert patch == {
        "metadata": {
            "annotations": {
                "serinus.dev/action": f"{action}:argocd-{live['metadata']['resourceVersion']}"
            }
        }
    }
    cluster.kube.patch(*MD, cluster.namespace, "fraud", patch)
    value: str = patch["metadata"]["annotations"]["serinus.dev/action"]
    return value


def _skip_without_kstatus() -> None:
    try:
        gitops.kstatus_binary()
    except gitops.NoKstatus as exc:
        pytest.skip(f"SKIPPED ON PURPOSE: {exc}")


def test_what_gitops_tools_see_of_a_real_canary(cluster: Cluster) -> None:
    _skip_without_kstatus()
    kubectl = shutil.which("kubectl") is not None
    cluster.operator.start()
    seen: dict[str, Any] = {}
    cluster.apply(md("v1", strategy=STEPS))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1 stable")
    looks_at(cluster, "fraud", seen, "stable")
    if kubectl:
        assert kubectl_wait(cluster, "Ready")

    cluster.apply(md("v2", strategy=STEPS))
    cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Progressing" and s["traffic"]["candidate"] == 20,
        what="v2 at 20% in a timed pause",
    )
    looks_at(cluster, "fraud", seen, "progressing")

    cluster.wait_status("fraud", lambda s: s.get("phase") == "Paused", what="paused at 40%")
    paused = looks_at(cluster, "fraud", seen, "paused")
    assert paused["status"]["traffic"]["candidate"] == 40
    if kubectl:
        assert kubectl_wait(cluster, "Stalled")
        assert not kubectl_wait(cluster, "Ready", timeout="1s")
    assert argocd.discovery(paused)["promote"]

    # Argo CD's promote: one request passes one pause, however often the operator reconciles
    first = argo_cd_action(cluster, "promote")
    s = cluster.wait_status(
        "fraud", lambda s: s["traffic"]["candidate"] == 60, what="the promote applied"
    )
    assert s["lastAction"]["nonce"] == first.partition(":")[2]
    assert s["lastAction"]["result"] == "Applied"
    time.sleep(5)  # the operator resyncs every 2 s: it sees the same request again
    s = cluster.status("fraud")
    assert (s["phase"], s["traffic"]["candidate"]) == ("Paused", 60), s
    assert s["handledActions"].count(first) == 1
    second = argo_cd_action(cluster, "promote")
    assert second != first
    s = cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["version"] == "v2",
        what="promoted by the second request",
    )
    assert [h["outcome"] for h in s["history"] if h["version"] == "v2"] == ["Promoted"]
    looks_at(cluster, "fraud", seen, "promoted")
    if kubectl:
        assert kubectl_wait(cluster, "Ready")

    # a spec the operator has not seen yet: kstatus waits on observedGeneration
    cluster.operator.stop()
    cluster.apply(md("v3", strategy=STEPS))
    looks_at(cluster, "fraud", seen, "generation-not-observed")
    if kubectl:  # Ready is still True from v2, but kubectl wait checks observedGeneration
        assert not kubectl_wait(cluster, "Ready", timeout="1s")
    cluster.operator.start()

    cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Paused" and s["candidate"]["version"] == "v3",
        what="v3 paused",
    )
    cluster.annotate_action("fraud", "abort:n1")
    cluster.wait_status("fraud", lambda s: s.get("phase") == "RolledBack", what="rolled back")
    rolled_back = looks_at(cluster, "fraud", seen, "rolled-back")
    stalled = {c["type"]: c for c in rolled_back["status"]["conditions"]}["Stalled"]
    assert stalled["reason"] == "Aborted"
    assert argocd.discovery(rolled_back)["retry"]


def test_what_gitops_tools_see_when_a_rollout_cannot_go_on(cluster: Cluster) -> None:
    """A first revision that never becomes available, then a spec the operator refuses."""
    _skip_without_kstatus()
    cluster.operator.start()
    seen: dict[str, Any] = {}
    manifest = md("v1", progressDeadline="3s")
    meta = {"name": "fraud", "namespace": cluster.namespace}
    v1 = parse({**manifest, "metadata": meta}).spec.revision
    cluster.fail_revision("fraud", v1)
    cluster.apply(manifest)
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Initializing", what="initializing")
    looks_at(cluster, "fraud", seen, "initializing")

    def stalled(s: dict[str, Any]) -> bool:
        return any(c["type"] == "Stalled" for c in s.get("conditions") or [])

    cluster.wait_status("fraud", stalled, timeout=60, what="Stalled: the Deployment gave up")
    looks_at(cluster, "fraud", seen, "initializing-stuck")
    cluster.delete("fraud")
    wait_for(lambda: cluster.get("fraud") is None, what="deleted")

    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromote": True, "previewDuration": "1h"}}
    service = {"provider": "Service"}
    cluster.apply(md("v5", strategy=strategy, traffic=service))  # v1's pods stay unready
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v5 stable")
    broken = md("v6", strategy=strategy, traffic=service)
    broken["spec"]["analysis"] = {"metrics": [{"name": "agreement", "min": 0.9}]}
    cluster.apply(broken)
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Degraded", what="Degraded")
    looks_at(cluster, "fraud", seen, "degraded")

"""Capacity on the real control plane: right-sized candidates, the scale subresource and
the operator's HPA, observed in the real Deployments the operator writes.

No metrics server runs here, so the HPA never computes a utilisation; what is real is the
HPA controller itself (kube-controller-manager's), which reads the ModelDeployment's scale
subresource and raises it to ``minReplicas`` as it does on any cluster.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from support.cluster import Cluster, md, wait_for

pytestmark = pytest.mark.integration

RIGHT_SIZED = {
    "type": "Canary",
    "candidateScale": "Traffic",
    "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]},
}


def _replicas(cluster: Cluster, revision: str) -> int | None:
    found = cluster.kube.get("apps/v1", "deployments", cluster.namespace, f"fraud-{revision}")
    return None if found is None else int(found["spec"]["replicas"])


def _stable(cluster: Cluster) -> str:
    s = cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="stable")
    revision: str = s["stable"]["revision"]
    return revision


def test_a_right_sized_canary_runs_a_quarter_then_full_size_to_be_promoted(
    cluster: Cluster,
) -> None:
    cluster.operator.start()
    cluster.apply(md("v1", strategy=RIGHT_SIZED, replicas=4))
    v1 = _stable(cluster)
    cluster.apply(md("v2", strategy=RIGHT_SIZED, replicas=4))
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 25, what="25%")
    v2 = s["candidate"]["revision"]
    assert (_replicas(cluster, v1), _replicas(cluster, v2)) == (4, 1)
    cluster.annotate_action("fraud", "promote-full:n1")
    assert wait_for(lambda: _replicas(cluster, v2) == 4, what="the candidate at full size")
    s = cluster.wait_status(
        "fraud", lambda s: s.get("phase") == "Stable" and not s.get("candidate"), what="v2"
    )
    assert s["stable"]["revision"] == v2
    assert s["history"][-1]["outcome"] == "Promoted"


def _scale(cluster: Cluster) -> dict[str, Any]:
    found = cluster.kube.get(
        "serinus.dev/v1alpha1", "modeldeployments", cluster.namespace, "fraud/scale"
    )
    assert found is not None
    return found


def test_kubectl_scale_resizes_the_stable_revision(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1", replicas=2))
    v1 = _stable(cluster)
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kube.cluster.kubeconfig), "-n",
         cluster.namespace, "scale", "md/fraud", "--replicas=3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: _replicas(cluster, v1) == 3, what="the stable Deployment at 3")
    assert wait_for(lambda: _scale(cluster)["status"].get("replicas") == 3, what="status 3")
    selector = _scale(cluster)["status"]["selector"]
    assert f"serinus.dev/revision={v1}" in selector and "serinus.dev/model=fraud" in selector
    assert cluster.status("fraud")["phase"] == "Stable"  # a resize is not a rollout
    assert not cluster.status("fraud").get("candidate")


def test_the_operators_hpa_scales_the_model_deployment(cluster: Cluster) -> None:
    cluster.operator.start()
    autoscaling = {"minReplicas": 3, "maxReplicas": 5, "targetCPUUtilization": 60}
    cluster.apply(md("v1", replicas=1, autoscaling=autoscaling))
    v1 = _stable(cluster)

    def hpa() -> dict[str, Any] | None:
        found: dict[str, Any] | None = cluster.kube.get(
            "autoscaling/v2", "horizontalpodautoscalers", cluster.namespace, "fraud"
        )
        return found

    assert wait_for(hpa, what="the HPA")
    found = hpa()
    assert found is not None
    assert found["spec"]["scaleTargetRef"]["kind"] == "ModelDeployment"
    # The real HPA controller raises the ModelDeployment to minReplicas through its scale
    # subresource; the operator then sizes the stable revision's Deployment.
    assert wait_for(
        lambda: (cluster.get("fraud") or {})["spec"]["replicas"] == 3, timeout=60, what="spec 3"
    )
    assert wait_for(lambda: _replicas(cluster, v1) == 3, what="the stable Deployment at 3")
    spec = md("v1", replicas=3)["spec"]  # autoscaling removed: the HPA goes
    cluster.apply({**md("v1"), "spec": spec})
    assert wait_for(lambda: hpa() is None, what="the HPA removed")

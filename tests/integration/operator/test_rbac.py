"""The operator's RBAC is exactly what it uses. The operator runs under the ServiceAccount
that ``manifests/install/rbac.yaml`` binds, with a real token, so the API server's RBAC
authorizes every call: a call without a rule is a 403, which the API server's own audit log
shows (and none may). The audit log also says which rules a whole rollout exercised; a rule
never exercised is a privilege it should not hold (the chart renders the same rules; see
tests/unit/chart)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import Cluster
from support.cluster import md as cluster_md
from support.real_cluster import wait_for
from support.real_kube import OPERATOR_NAMESPACE, OPERATOR_SA

OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}"

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RBAC = ROOT / "manifests" / "install" / "rbac.yaml"

#: Granted but not exercised by this rollout, each for a reason.
NOT_EXERCISED = {
    # The GatewayAPI provider; its objects are covered by unit tests of the builders (the
    # operator watches HTTPRoutes, so list and watch are exercised).
    ("gateway.networking.k8s.io", "httproutes", "get"),
    ("gateway.networking.k8s.io", "httproutes", "create"),
    ("gateway.networking.k8s.io", "httproutes", "patch"),
    # The HorizontalPodAutoscaler of spec.autoscaling, which this rollout does not set (the
    # operator watches HPAs, so list and watch are exercised).
    ("autoscaling", "horizontalpodautoscalers", "create"),
    ("autoscaling", "horizontalpodautoscalers", "patch"),
    ("autoscaling", "horizontalpodautoscalers", "delete"),
    # The Secret of a model whose alias or tag is pinned with credentials (this rollout's
    # model is a URL); platforms/pinning.py, tests/unit/operator/test_model_pinning.py.
    ("", "secrets", "get"),
    # The pods of a revision that is not ready, listed to say why; this rollout's revisions
    # may be ready at every pass (test_model_store_pods.py exercises it).
    ("", "pods", "list"),
    # Passes read from the watch caches: a GET is made only when a cache has not listed
    # within 10 s of a pass, or to confirm that a child gone from the cache was deleted.
    *(
        (group, resource, "get")
        for group, resource in [
            ("", "configmaps"),
            ("", "serviceaccounts"),
            ("", "services"),
            ("apps", "deployments"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("policy", "poddisruptionbudgets"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "roles"),
            ("serinus.dev", "modeldeployments"),
        ]
    ),
}


def granted() -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if not doc or doc.get("kind") not in {"ClusterRole", "Role"}:
            continue
        for rule in doc.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add((group, resource, verb))
    return out


def verbs(event: dict[str, Any]) -> list[str]:
    """The verbs the API server authorized for one audited request: a server-side apply that
    creates the object (answered 201) is a patch authorized as create too."""
    created = event["verb"] == "patch" and event["responseStatus"].get("code") == 201
    return [event["verb"], "create"] if created else [event["verb"]]


#: Promoted in one step, the old revision removed a second later: every kind of write.
ONE_STEP = {"type": "Canary", "scaleDownDelay": "1s", "canary": {"steps": [{"setWeight": 50}]}}


def md(version: str) -> dict[str, Any]:
    return cluster_md(version, strategy=ONE_STEP, replicas=1)


def test_rbac_is_exactly_what_the_operator_uses(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1"))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")
    cluster.apply(md("v2"))
    cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["version"] == "v2",
        what="v2 promoted",
    )
    cluster.wait_status(
        "fraud", lambda s: "previous" not in s or not s["previous"], what="v1 removed"
    )
    cluster.delete("fraud")
    deadline = time.monotonic() + 20
    while cluster.get("fraud") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    events = cluster.kube.cluster.audit(user=OPERATOR, namespace=cluster.namespace)
    refused = [
        (e["verb"], e["objectRef"], e["responseStatus"])
        for e in events
        if e["responseStatus"].get("code") in (401, 403)
    ]
    assert not refused, refused
    used = {
        (
            e["objectRef"].get("apiGroup", ""),
            "/".join(filter(None, [e["objectRef"]["resource"], e["objectRef"].get("subresource")])),
            verb,
        )
        for e in events
        for verb in verbs(e)
    }
    rules = granted()
    assert used - rules == set(), f"calls without a rule: {sorted(used - rules)}"
    unused = rules - used - NOT_EXERCISED
    assert unused == set(), f"rules never exercised: {sorted(unused)}"


def test_an_idle_model_deployment_costs_no_request(cluster: Cluster) -> None:
    """Passes read the watch caches: once the rollout is done, the resyncs (every 2 s in
    these tests) still run, and the operator sends nothing but its open watches."""
    cluster.operator.start()
    cluster.apply(md("v1"))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1 Stable")
    real = cluster.kube.cluster

    def requests() -> list[str]:
        return [
            f"{e['verb']} {e['requestURI']}"
            for e in real.audit(user=OPERATOR, namespace=cluster.namespace)
            if e["verb"] != "watch"
        ]

    last = {"count": -1, "since": 0.0}

    def settled() -> bool:  # the rollout's last status writes and Events are done
        time.sleep(0.25)
        count = len(requests())
        if count != last["count"]:
            last.update(count=count, since=time.monotonic())
        return time.monotonic() - last["since"] > 3

    wait_for(settled, timeout=60, what="the operator to fall quiet")
    before, resyncs = (
        requests(),
        cluster.operator.sample("serinus_reconcile_wait_seconds_count", urgency="resync"),
    )
    time.sleep(5)  # an observation window of two resync periods and more
    after = cluster.operator.sample("serinus_reconcile_wait_seconds_count", urgency="resync")
    assert (after or 0) >= (resyncs or 0) + 2, "no resync pass ran in the window"
    assert requests()[len(before) :] == []

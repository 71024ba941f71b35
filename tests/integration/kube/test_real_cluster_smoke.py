"""The real control plane of tests/support/real_cluster.py does what the operator relies on:
a Deployment becomes available through the real controllers and the stand-in kubelet, its
ReplicaSet and pods are garbage-collected when it goes, the stand-in's faults hold a
Deployment back, and an API server restart keeps the data and the controllers working."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.real_cluster import NODE, RealCluster, wait_for

pytestmark = pytest.mark.integration

NS = "smoke"
APPS = f"/apis/apps/v1/namespaces/{NS}"


@pytest.fixture(scope="module")
def cluster(real_cluster: RealCluster) -> Iterator[RealCluster]:
    with real_cluster.client() as api:
        api.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
        wait_for(
            lambda: api.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default").is_success,
            what="the namespace's default ServiceAccount",
        )
        yield real_cluster


@pytest.fixture
def api(cluster: RealCluster) -> Iterator[httpx.Client]:
    with cluster.client(timeout=10) as client:
        yield client


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": "serinus/serving:test"}]},
            },
        },
    }


def items(api: httpx.Client, path: str, selector: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        api.get(path, params={"labelSelector": selector}).raise_for_status().json()["items"]
    )
    return found


def test_deployment_becomes_available_and_is_garbage_collected(
    cluster: RealCluster, api: httpx.Client
) -> None:
    api.post(f"{APPS}/deployments", json=deployment("fraud", 2)).raise_for_status()

    def available() -> dict[str, Any] | None:
        status = api.get(f"{APPS}/deployments/fraud").json().get("status") or {}
        return status if status.get("availableReplicas") == 2 else None

    status = wait_for(available, what="2 available replicas")
    assert status["readyReplicas"] == 2
    pods = items(api, f"/api/v1/namespaces/{NS}/pods", "app=fraud")
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} == {NODE}
    assert all(p["status"]["podIP"].startswith("127.0.0.") for p in pods)
    (rs,) = items(api, f"{APPS}/replicasets", "app=fraud")
    assert rs["metadata"]["ownerReferences"][0]["name"] == "fraud"

    api.delete(f"{APPS}/deployments/fraud").raise_for_status()
    wait_for(
        lambda: (
            not items(api, f"{APPS}/replicasets", "app=fraud")
            and not items(api, f"/api/v1/namespaces/{NS}/pods", "app=fraud")
        ),
        what="the ReplicaSet and pods to be garbage-collected",
    )
    assert not cluster.kubelet.errors


def test_unready_pods_keep_a_deployment_unavailable(
    cluster: RealCluster, api: httpx.Client
) -> None:
    cluster.kubelet.keep_unready(NS, "sick-")
    api.post(f"{APPS}/deployments", json=deployment("sick", 1)).raise_for_status()

    def unready() -> dict[str, Any] | None:
        pods = items(api, f"/api/v1/namespaces/{NS}/pods", "app=sick")
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = wait_for(unready, what="a running pod")
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
    assert ready == "False"
    assert not api.get(f"{APPS}/deployments/sick").json()["status"].get("availableReplicas")

    cluster.kubelet.heal(NS, "sick-")
    wait_for(
        lambda: api.get(f"{APPS}/deployments/sick").json()["status"].get("availableReplicas"),
        what="the healed replica to be available",
    )


def test_api_server_restart_keeps_the_data(cluster: RealCluster, api: httpx.Client) -> None:
    config = {"metadata": {"name": "survivor"}, "data": {"k": "v"}}
    api.post(f"/api/v1/namespaces/{NS}/configmaps", json=config).raise_for_status()
    cluster.stop_apiserver()
    with pytest.raises(httpx.ConnectError):
        api.get("/readyz")
    cluster.start_apiserver()
    survivor = api.get(f"/api/v1/namespaces/{NS}/configmaps/survivor").raise_for_status().json()
    assert survivor["data"] == {"k": "v"}

    # The controllers and the stand-in kubelet came back with it.
    api.post(f"{APPS}/deployments", json=deployment("after", 1)).raise_for_status()
    wait_for(
        lambda: api.get(f"{APPS}/deployments/after").json()["status"].get("availableReplicas"),
        what="a Deployment made after the restart to be available",
    )
    assert not cluster.kubelet.errors

"""A model in a store, on the real API server: the CRD takes the new URI forms,
credentials by Secret reference and a ServiceAccount, and refuses malformed ones; the
revision's Deployment the operator builds makes pods (the real ReplicaSet controller and
ServiceAccount admission) that get the Secret as their environment, the ServiceAccount's
token, and the claim mounted read-only."""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serinus_operator import api
from serinus_operator import resources as r
from serinus_operator.platforms.pinning import PinError
from serinus_operator.rollout.status import RevisionRef
from support.cluster import Cluster
from support.cluster import md as cluster_md
from support.real_cluster import wait_for
from support.real_kube import RealKube, on_platform
from support.stores import registry

pytestmark = pytest.mark.integration

MD: dict[str, Any] = {
    "apiVersion": "serinus.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud"},
    "spec": {
        "model": {
            "uri": "pvc://models-pvc/fraud/v7/model.onnx",
            "version": "v7",
            "profile": "s3://profiles/fraud/v7.json?region=eu-west-1",
            "credentials": {"secretRef": {"name": "fraud-store"}},
        },
        "serving": {"serviceAccountName": "fraud-reader"},
        "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}]}},
    },
}


@pytest.fixture(scope="module")
def namespace(real_kube: RealKube) -> Iterator[str]:
    ns = real_kube.new_namespace("stores")
    try:
        yield ns
    finally:
        real_kube.delete("v1", "namespaces", None, ns)


def test_the_crd_takes_store_uris_and_refuses_malformed_ones(
    real_kube: RealKube, namespace: str
) -> None:
    stored = real_kube.apply(MD, namespace=namespace)
    assert stored["spec"]["model"]["credentials"] == {"secretRef": {"name": "fraud-store"}}
    for uri in ("models:/fraud@champion", "oci://ghcr.io/acme/fraud:v7", "gs://b/m.onnx"):
        bad = copy.deepcopy(MD)
        bad["spec"]["model"]["uri"] = uri
        real_kube.apply(bad, namespace=namespace)
    for field, value in [
        ("uri", "pvc:///no-claim.onnx"),
        ("uri", "ftp://host/m.onnx"),
        ("credentials", {"secretRef": {"name": "Not_A_Name"}}),
    ]:
        bad = copy.deepcopy(MD)
        bad["spec"]["model"][field] = value
        with pytest.raises(httpx.HTTPStatusError) as refused:
            real_kube.apply(bad, namespace=namespace)
        assert refused.value.response.status_code == 422


def test_the_revision_pods_get_the_secret_the_identity_and_the_claim(
    real_kube: RealKube, namespace: str
) -> None:
    real_kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fraud-reader"}},
        namespace=namespace,
    )
    md = api.parse({**MD, "metadata": {"name": "fraud", "namespace": namespace}})
    model, serving = md.spec.model, md.spec.serving
    ref = RevisionRef(
        revision=api.revision_of(model, serving), version="v7", model=model, serving=serving
    )
    deployment = r.revision_deployment(md, ref, replicas=1, config=r.BuildConfig())
    real_kube.apply(deployment, namespace=namespace)

    def pods() -> list[Any]:
        selector = ",".join(
            f"{k}={v}" for k, v in r.revision_selector("fraud", ref.revision).items()
        )
        return real_kube.list("v1", "pods", namespace, selector=selector)

    wait_for(lambda: len(pods()) == 1, what="the ReplicaSet controller's pod")
    [pod] = pods()
    spec = pod["spec"]
    [server] = spec["containers"]
    assert server["envFrom"] == [{"secretRef": {"name": "fraud-store"}}]
    assert spec["serviceAccountName"] == "fraud-reader"
    # ServiceAccount admission projected the token: the identity webhooks' starting point.
    mounted = {m["mountPath"] for m in server["volumeMounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounted
    assert "/mnt/models/models-pvc" in mounted
    [claim] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "models-pvc", "readOnly": True}
    assert "fraud-store" not in str(pod.get("status", {}))  # a reference, never values


def test_a_model_in_a_store_is_fetched_by_an_init_container_the_server_reuses(
    real_kube: RealKube, namespace: str
) -> None:
    """The pod the real ReplicaSet controller makes (and the API server validates) fetches
    first, with the same credentials, into the volume the server reads; the server is told
    the copy is there."""
    raw = copy.deepcopy(MD)
    raw["metadata"] = {"name": "fetched", "namespace": namespace}
    raw["spec"]["model"] = {
        "uri": "s3://models/fraud/v8/?endpoint=http://minio.store:9000&path_style=true",
        "version": "v8",
        "sha256": "c" * 64,
        "credentials": {"secretRef": {"name": "fraud-store"}},
    }
    raw["spec"]["serving"] = {}
    md = api.parse(raw)
    model, serving = md.spec.model, md.spec.serving
    ref = RevisionRef(
        revision=api.revision_of(model, serving), version="v8", model=model, serving=serving
    )
    real_kube.apply(
        r.revision_deployment(md, ref, replicas=1, config=r.BuildConfig()), namespace=namespace
    )
    selector = ",".join(f"{k}={v}" for k, v in r.revision_selector("fetched", ref.revision).items())
    wait_for(
        lambda: len(real_kube.list("v1", "pods", namespace, selector=selector)) == 1,
        what="the ReplicaSet controller's pod",
    )
    [pod] = real_kube.list("v1", "pods", namespace, selector=selector)
    [fetch], [server] = pod["spec"]["initContainers"], pod["spec"]["containers"]
    assert fetch["args"] == [
        "fetch", "--model", model.uri, "--model-dir", "/models", "--sha256", "c" * 64,
    ]  # fmt: skip
    assert fetch["envFrom"] == server["envFrom"] == [{"secretRef": {"name": "fraud-store"}}]
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "ports" not in fetch and "readinessProbe" not in fetch
    assert {"name": "model", "mountPath": "/models"} in fetch["volumeMounts"]
    assert fetch["securityContext"] == server["securityContext"]
    args = server["args"]
    assert args[args.index("--model") + 1] == model.uri and "--prefetched" in args
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_the_model_secret_is_read_as_the_pods_environment(
    real_kube: RealKube, namespace: str
) -> None:
    """What the operator pins an alias with: the Secret's keys under ``serving.env``, as a
    pod's ``env`` overrides its ``envFrom``."""
    real_kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "fraud-store"},
            "data": {
                "MLFLOW_TRACKING_TOKEN": base64.b64encode(b"t0ken").decode(),
                "MLFLOW_TRACKING_URI": base64.b64encode(b"http://from-secret").decode(),
            },
        },
        namespace=namespace,
    )
    raw = copy.deepcopy(MD)
    raw["metadata"] = {"name": "fraud", "namespace": namespace}
    raw["spec"]["serving"] = {"env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow"}]}
    md = api.parse(raw)
    env = on_platform(real_kube, lambda p: p.model_env(md))
    assert env == {"MLFLOW_TRACKING_TOKEN": "t0ken", "MLFLOW_TRACKING_URI": "http://mlflow"}
    raw["spec"]["model"]["credentials"] = {"secretRef": {"name": "nobody"}}
    with pytest.raises(PinError, match="Secret nobody not found"):
        on_platform(real_kube, lambda p: p.model_env(api.parse(raw)))


def test_a_failed_fetch_is_quoted_in_the_status_and_the_rollback(cluster: Cluster) -> None:
    """The real operator, its RBAC and the real Deployment controller; the stand-in kubelet
    reports the fetch init container failing with what ``serinus fetch`` says. The status
    says why the candidate is not available while it waits, and the rollback says it too."""
    cluster.operator.start()
    manifest = cluster_md("v1", progressDeadline="4s")
    cluster.apply(manifest)
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1 stable")
    manifest = cluster_md("v2", progressDeadline="4s")
    meta = {"name": "fraud", "namespace": cluster.namespace}
    v2 = api.parse({**manifest, "metadata": meta}).spec.revision
    said = "cannot fetch the model: https://models.example.com/v2.onnx: HTTP 403"
    cluster.fail_fetch("fraud", v2, said)
    cluster.apply(manifest)
    waiting = cluster.wait_status(
        "fraud", lambda s: said in s.get("message", ""), what="the reason in the status"
    )
    assert f"(init container fetch: {said} (restarts: 3))" in waiting["message"]
    rolled = cluster.wait_status(
        "fraud",
        lambda s: (s.get("rolledBack") or {}).get("revision") == v2,
        timeout=40,
        what="rolled back after the progress deadline",
    )
    assert said in rolled["rolledBack"]["message"]
    assert said in rolled["message"]


def test_the_operator_pins_a_tag_and_a_new_push_starts_a_rollout(
    cluster: Cluster, tmp_path: Path
) -> None:
    """``serinus operator`` (kopf, its own process, its RBAC) and a real OCI registry: the
    tag is pinned to its manifest digest in the revision's template; asking again finds
    the same digest (no rollout); a push to the tag starts one to the new digest, on its
    own, with nothing changed in the spec."""
    with registry(tmp_path) as oci:
        first = oci.push("acme/fraud", "prod", {"model.onnx": b"model one"})
        cluster.operator.extra_args = ["--model-refresh-seconds", "1"]
        cluster.operator.start()
        manifest = cluster_md(
            "v1", strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 50}]}}
        )
        manifest["spec"]["model"]["uri"] = f"oci://{oci.address}/acme/fraud:prod"
        cluster.apply(manifest)
        pinned = f"oci://{oci.address}/acme/fraud@{first}"
        stable = cluster.wait_status(
            "fraud", lambda s: s.get("phase") == "Stable", what="the first revision stable"
        )["stable"]
        assert stable["template"]["model"]["uri"] == pinned
        time.sleep(3)  # three refresh periods: the tag is asked about again, same digest
        assert cluster.status("fraud")["stable"]["revision"] == stable["revision"]
        assert len(cluster.status("fraud")["history"]) == 1
        second = oci.push("acme/fraud", "prod", {"model.onnx": b"model two"})
        moved = cluster.wait_status(
            "fraud",
            lambda s: (
                s.get("phase") == "Stable"
                and s["stable"]["template"]["model"]["uri"].endswith(second)
            ),
            timeout=40,
            what="a rollout to the new digest, promoted",
        )
        assert moved["stable"]["revision"] != stable["revision"]
        assert [h["outcome"] for h in moved["history"]] == ["Promoted", "Promoted"]
    stored = cluster.get("fraud")
    assert stored is not None and stored["spec"]["model"]["uri"].endswith(":prod")

"""The install paths on a real API server (tests/support/real_cluster.py): ``kubectl apply
-k manifests/``, the Helm chart rendered offline and applied with kubectl, the printer
columns of ``kubectl get md``, the CRD's own validation of invalid ModelDeployments, and the
operator's children admitted by PodSecurity ``restricted``.

kubectl is the one on PATH, with the admin's kubeconfig (a person installing Serinus). The
pods of the Deployments applied here are created by the real ReplicaSet controller and only
marked Running and Ready by the stand-in kubelet: nothing runs in them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest
import yaml

from serinus_operator import api
from support.cluster import MD, Operator, md
from support.real_cluster import RealCluster, wait_for
from support.real_kube import (
    KUSTOMIZE_OBJECTS,
    OPERATOR_NAMESPACE,
    OPERATOR_SA,
    RBAC,
    RealKube,
    kubectl,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH"),
]

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "serinus"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
APPS = "apps/v1"
MD_CRD = "modeldeployments.serinus.dev"


def deployment_pods(kube: RealKube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The pods of Deployment ``name`` (through its ReplicaSets), once it has all its
    replicas ready; fails with the ReplicaSets' conditions (FailedCreate: a pod the API
    server refused, e.g. by PodSecurity) if it never has."""

    def ready() -> dict[str, Any] | None:
        found = kube.get(APPS, "deployments", namespace, name) or {}
        status = found.get("status") or {}
        want = (found.get("spec") or {}).get("replicas")
        return found if want and status.get("readyReplicas") == want else None

    try:
        deployment = wait_for(ready, what=f"Deployment {namespace}/{name} ready")
    except AssertionError as exc:
        conditions = [
            (rs["metadata"]["name"], (rs.get("status") or {}).get("conditions"))
            for rs in kube.list(APPS, "replicasets", namespace)
        ]
        raise AssertionError(f"{exc}\nReplicaSets: {conditions}") from None
    sets = {
        rs["metadata"]["name"]: rs
        for rs in kube.list(APPS, "replicasets", namespace)
        if any(o["uid"] == deployment["metadata"]["uid"] for o in rs["metadata"]["ownerReferences"])
    }
    for rs in sets.values():
        kinds = {c["type"] for c in (rs.get("status") or {}).get("conditions") or []}
        assert "ReplicaFailure" not in kinds, rs["status"]
    pods = [
        pod
        for pod in kube.list("v1", "pods", namespace)
        if any(o["name"] in sets for o in pod["metadata"].get("ownerReferences") or [])
    ]
    assert len(pods) == deployment["spec"]["replicas"], [p["metadata"]["name"] for p in pods]
    return pods


def failed_creates(kube: RealKube, namespace: str) -> list[str]:
    return [
        e["message"] for e in kube.list("v1", "events", namespace) if e["reason"] == "FailedCreate"
    ]


@pytest.fixture
def namespace(real_kube: RealKube) -> Iterator[str]:
    """A fresh namespace where PodSecurity enforces (and warns about) ``restricted``."""
    labels = {**RESTRICTED, "pod-security.kubernetes.io/warn": "restricted"}
    name = real_kube.new_namespace("install", labels=labels)
    try:
        yield name
    finally:
        real_kube.delete("v1", "namespaces", None, name)


# --- kubectl apply -k manifests/ -------------------------------------------------------------


def test_kubectl_apply_server_side_of_the_kustomization(
    real_kube: RealKube, real_cluster: RealCluster
) -> None:
    """``kubectl apply --server-side -k manifests/`` over the session's install, which
    applied the same CRD, ServiceAccount and RBAC under another field manager: no
    ``--force-conflicts`` is needed, as server-side apply reports a conflict only when two
    managers set a field to different values; with equal ones they share it."""
    out = kubectl(real_cluster, "apply", "--server-side", "--validate=strict", "-k", "manifests/")
    applied = {line.split()[0] for line in out.splitlines()}
    assert applied == KUSTOMIZE_OBJECTS, out
    try:
        # The RBAC that the other tests' operators run under is the one they expect.
        rbac = {d["kind"]: d for d in yaml.safe_load_all(RBAC.read_text()) if d}
        role = real_kube.get("rbac.authorization.k8s.io/v1", "clusterroles", None, OPERATOR_SA)
        assert role["rules"] == rbac["ClusterRole"]["rules"]
        managers = {m["manager"] for m in role["metadata"]["managedFields"]}
        assert managers == {"kubectl", "serinus-tests"}  # co-owned, no conflict
        binding = real_kube.get(
            "rbac.authorization.k8s.io/v1", "clusterrolebindings", None, OPERATOR_SA
        )
        assert binding["subjects"] == rbac["ClusterRoleBinding"]["subjects"]
        assert binding["roleRef"] == rbac["ClusterRoleBinding"]["roleRef"]
        assert real_kube.get("v1", "serviceaccounts", OPERATOR_NAMESPACE, OPERATOR_SA)
        crd = real_kube.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None, MD_CRD)
        assert crd["spec"]["names"]["shortNames"] == ["md"]
        ns = real_kube.get("v1", "namespaces", None, OPERATOR_NAMESPACE)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        service = real_kube.get("v1", "services", OPERATOR_NAMESPACE, "serinus-operator-metrics")
        assert service["spec"]["ports"][0]["port"] == 8000
        # The operator's pod is admitted under PodSecurity "restricted" (the namespace's
        # label) and created by the real ReplicaSet controller.
        (pod,) = deployment_pods(real_kube, OPERATOR_NAMESPACE, "serinus-operator")
        assert pod["spec"]["serviceAccountName"] == OPERATOR_SA
        assert failed_creates(real_kube, OPERATOR_NAMESPACE) == []
    finally:
        # What the session's install did not have: the operator's Deployment and Service
        # (their pods go with them), and the namespace's labels. The CRD, the
        # ServiceAccount and the RBAC stay: they are the session's, with equal content.
        real_kube.delete(APPS, "deployments", OPERATOR_NAMESPACE, "serinus-operator")
        real_kube.delete("v1", "services", OPERATOR_NAMESPACE, "serinus-operator-metrics")
        unlabel = {
            "labels": {
                "pod-security.kubernetes.io/enforce": None,
                "app.kubernetes.io/part-of": None,
            }
        }
        real_kube.patch("v1", "namespaces", None, OPERATOR_NAMESPACE, {"metadata": unlabel})
        wait_for(
            lambda: not real_kube.list("v1", "pods", OPERATOR_NAMESPACE),
            what="the operator's pods collected",
        )


# --- the Helm chart, without helm ------------------------------------------------------------


#: Helm's install order (``releaseutil.InstallOrder``) for the kinds the chart renders; the
#: rest after. kubectl applies in the order given: a Deployment applied before its
#: ServiceAccount gets its first pods refused ("error looking up service account").
INSTALL_ORDER = [
    "ServiceAccount",
    "ConfigMap",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
]


def render(values: dict[str, Any], *, release: str, namespace: str) -> list[dict[str, Any]]:
    """What ``helm install`` would create, in its order: the chart's CRDs, then its
    templates by kind."""
    with helm.Chart.load(CHART) as chart:
        crds = [doc for f in chart.crds for doc in yaml.safe_load_all(f["data"]) if doc]
        rendered = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    objects = [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith(".txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    return crds + sorted(objects, key=lambda o: rank.get(o["kind"], len(rank)))


def test_the_rendered_chart_applies_with_strict_validation(
    real_kube: RealKube, real_cluster: RealCluster, namespace: str
) -> None:
    """Two releases in one namespace: the defaults (every namespace: a ClusterRole and
    binding) and a namespaced HA install (two replicas electing a leader through a
    KopfPeering). Strict field validation refuses any field the API does not know, and the
    namespace's PodSecurity ``warn`` label would print a warning for a pod template that is
    not ``restricted``: kubectl must print nothing on stderr."""
    releases = {
        f"{namespace}-all": {},
        "ha": {"replicas": 2, "watchNamespaces": [namespace], "peering": {"name": "ha"}},
    }
    cluster_scoped: list[tuple[str, str]] = []
    try:
        for release, values in releases.items():
            objects = render(values, release=release, namespace=namespace)
            cluster_scoped += [
                (o["kind"], o["metadata"]["name"])
                for o in objects
                if o["kind"] in ("ClusterRole", "ClusterRoleBinding")
            ]
            out = kubectl(
                real_cluster,
                "apply",
                "--server-side",
                "--validate=strict",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(objects),
            )
            assert len(out.splitlines()) == len(objects), out
            # every object is there, read back by kubectl from the same manifest
            manifest = yaml.safe_dump_all(objects)
            found = kubectl(real_cluster, "get", "-f", "-", "-o", "name", stdin=manifest)
            assert len(found.split()) == len(objects), found
        assert ("ClusterRole", f"{namespace}-all-serinus") in cluster_scoped
        assert real_kube.get("kopf.dev/v1", "kopfpeerings", namespace, "ha")
        names = {"all": f"{namespace}-all-serinus", "ha": "ha-serinus"}
        pods = {key: deployment_pods(real_kube, namespace, name) for key, name in names.items()}
        assert (len(pods["all"]), len(pods["ha"])) == (1, 2)
        assert failed_creates(real_kube, namespace) == []
    finally:
        for kind, name in cluster_scoped:
            plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}
            real_kube.delete("rbac.authorization.k8s.io/v1", plural[kind], None, name)


# --- kubectl get md --------------------------------------------------------------------------


def columns(table: str) -> list[dict[str, str]]:
    """kubectl's table as rows of {header: cell}, cut at the headers' positions (a cell
    may hold spaces)."""
    header, *rows = table.rstrip("\n").splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]


def test_kubectl_get_shows_the_printer_columns(
    real_kube: RealKube, real_cluster: RealCluster, namespace: str
) -> None:
    """The columns come from the CRD's additionalPrinterColumns, computed by the API server
    (kubectl asks for a Table); the wide ones have priority 1. No operator runs here: the
    status is written through the status subresource as the operator would."""
    manifest = md("v2", strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 25}]}})
    manifest["metadata"]["namespace"] = namespace
    real_kube.create(manifest, "modeldeployments")
    status = {
        "phase": "Progressing",
        "message": "step 1 of 1: 25% on v2",
        "stable": {"revision": "1111111111", "version": "v1"},
        "candidate": {"revision": "2222222222", "version": "v2", "stage": "Canary"},
        "traffic": {"stable": 75, "candidate": 25, "mirror": 0},
    }
    real_kube.patch(*MD, namespace, "fraud", {"status": status}, subresource="status")

    (row,) = columns(kubectl(real_cluster, "get", "md", "-n", namespace))
    assert list(row) == [
        "NAME", "STRATEGY", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "MIRROR", "AGE"
    ]  # fmt: skip
    assert row | {"AGE": ""} == {
        "NAME": "fraud",
        "STRATEGY": "Canary",
        "PHASE": "Progressing",
        "STABLE": "v1",
        "CANDIDATE": "v2",
        "WEIGHT": "25",
        "MIRROR": "0",
        "AGE": "",
    }
    assert row["AGE"].endswith("s"), row
    (wide,) = columns(kubectl(real_cluster, "get", "md", "-n", namespace, "-o", "wide"))
    assert list(wide) == [
        "NAME",
        "STRATEGY",
        "PHASE",
        "STABLE",
        "CANDIDATE",
        "WEIGHT",
        "MIRROR",
        "STAGE",
        "MESSAGE",
        "AGE",
    ]
    assert (wide["MIRROR"], wide["STAGE"], wide["MESSAGE"]) == (
        "0",
        "Canary",
        "step 1 of 1: 25% on v2",
    )
    # the CRD's category: `kubectl get serinus` lists ModelDeployments too
    out = kubectl(real_cluster, "get", "serinus", "-n", namespace, "-o", "name")
    assert out.split() == ["modeldeployment.serinus.dev/fraud"]


# --- invalid ModelDeployments ----------------------------------------------------------------


def _steps(*steps: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec.update(strategy={"type": "Canary", "canary": {"steps": list(steps)}})


#: A mistake in a spec, and the field the API server names when it refuses it.
INVALID: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no strategy": (lambda spec: spec.pop("strategy"), "spec.strategy"),
    "setWeight and pause in one step": (
        _steps({"setWeight": 10, "pause": {}}),
        "spec.strategy.canary.steps",
    ),
    "min above max": (
        lambda spec: spec.update(
            analysis={"metrics": [{"name": "error-rate", "min": 2, "max": 1}]}
        ),
        "spec.analysis.metrics[0]",
    ),
    "Service provider with Canary": (
        lambda spec: spec.update(traffic={"provider": "Service"}),
        "spec.traffic.provider",
    ),
    "GatewayAPI without gatewayRef": (
        lambda spec: spec.update(traffic={"provider": "GatewayAPI"}),
        "spec.traffic",
    ),
    "webhook timeout 0s": (
        lambda spec: spec.update(
            webhooks=[
                {
                    "name": "gate",
                    "type": "PreRollout",
                    "url": "https://ci.example.com",
                    "timeout": "0s",
                }
            ]
        ),
        "spec.webhooks[0].timeout",
    ),
    "sha256 in uppercase": (
        lambda spec: spec["model"].update(sha256="AB" * 32),
        "spec.model.sha256",
    ),
    "an env name twice": (
        lambda spec: spec.update(
            serving={"env": [{"name": "MODE", "value": "a"}, {"name": "MODE", "value": "b"}]}
        ),
        "spec.serving.env[1]",
    ),
    "replicas 0": (lambda spec: spec.update(replicas=0), "spec.replicas"),
    "compare on a check with no baseline counts": (
        lambda spec: spec.update(
            analysis={"metrics": [{"name": "drift", "compare": {"maxDegradation": 0.01}}]}
        ),
        "spec.analysis.metrics[0]",
    ),
    "compare and a fixed bound together": (
        lambda spec: spec.update(
            analysis={
                "metrics": [
                    {"name": "error-rate", "max": 0.01, "compare": {"maxDegradation": 0.01}}
                ]
            }
        ),
        "spec.analysis.metrics[0]",
    ),
    "compare without maxDegradation": (
        lambda spec: spec.update(analysis={"metrics": [{"name": "accuracy", "compare": {}}]}),
        "spec.analysis.metrics[0].compare.maxDegradation",
    ),
    "a latency threshold on a check that is not latency": (
        lambda spec: spec.update(
            analysis={
                "metrics": [
                    {"name": "accuracy", "compare": {"maxDegradation": 0.01, "thresholdSeconds": 1}}
                ]
            }
        ),
        "spec.analysis.metrics[0]",
    ),
    "a latency threshold of zero": (
        lambda spec: spec.update(
            analysis={
                "metrics": [
                    {
                        "name": "latency-p99",
                        "compare": {"maxDegradation": 0.01, "thresholdSeconds": 0},
                    }
                ]
            }
        ),
        "spec.analysis.metrics[0].compare.thresholdSeconds",
    ),
}


def test_invalid_model_deployments_are_refused_by_the_api_server_and_by_parse(
    real_kube: RealKube, namespace: str
) -> None:
    """Each mistake is refused by the CRD's schema and CEL rules (422, naming the field),
    and by ``api.parse`` (which ``serinus local`` uses without an API server) at that field
    or inside it."""
    path = real_kube.path(*MD, namespace)
    refusals = {}
    for case, (mistake, field) in INVALID.items():
        manifest = md("v1")
        manifest["metadata"]["namespace"] = namespace
        mistake(manifest["spec"])
        response = real_kube.client.post(path, json=manifest, params={"fieldValidation": "Strict"})
        assert response.status_code == 422, (case, response.text)
        status = response.json()
        causes = [c.get("field") for c in status["details"]["causes"]]
        assert field in causes, (case, status["message"])
        refusals[case] = status["message"]
        with pytest.raises(api.SpecError) as refused:
            api.parse(manifest)
        assert refused.value.field.startswith(field), (case, refused.value)
    assert not real_kube.list(*MD, namespace)
    # The API server's own words for two of them (kubectl shows these to a person).
    assert (
        "spec.model.sha256 in body should match '^[0-9a-f]{64}$'" in refusals["sha256 in uppercase"]
    )
    assert 'spec.serving.env[1]: Duplicate value: {"name":"MODE"}' in refusals["an env name twice"]


NEAR_MISSES = ("latency-p80", "latency-p9999", "latency-99", "request-count", "errors")


def test_the_crd_takes_a_compare_check_with_its_defaults(
    real_kube: RealKube, namespace: str
) -> None:
    manifest = md("v1")
    manifest["metadata"]["namespace"] = namespace
    compare = {"maxDegradation": 0.005}
    manifest["spec"]["analysis"] = {"metrics": [
        {"name": "error-rate", "compare": compare},
        {"name": "latency-p99", "compare": {"maxDegradation": 0.01}},
        {"name": "latency-p50", "compare": {"maxDegradation": 0.01, "thresholdSeconds": 0.1}},
    ]}  # fmt: skip
    answer = real_kube.client.post(
        real_kube.path(*MD, namespace), json=manifest, params={"dryRun": "All"}
    )
    assert answer.status_code == 201, answer.text
    stored = answer.json()["spec"]["analysis"]["metrics"][0]["compare"]
    assert stored == {
        "maxDegradation": 0.005,
        "baseline": "stable",
        "confidence": 0.95,
        "minSamples": 100,
    }
    assert api.parse(manifest).spec.analysis is not None


def test_the_crd_accepts_exactly_the_builtin_checks(real_kube: RealKube, namespace: str) -> None:
    """One list of built-in checks (``api.BUILTIN_CHECKS``): the CRD's CEL rule, evaluated
    by the API server itself (a dry run), accepts a metric without a query exactly when
    ``api.parse`` does, and each accepted name has a query (tests/unit/analysis)."""
    path = real_kube.path(*MD, namespace)
    for name in (*api.BUILTIN_CHECKS, *NEAR_MISSES):
        manifest = md("v1")
        manifest["metadata"]["namespace"] = namespace
        manifest["spec"]["analysis"] = {"metrics": [{"name": name, "max": 1}]}
        answer = real_kube.client.post(path, json=manifest, params={"dryRun": "All"})
        builtin = name in api.BUILTIN_CHECKS
        assert answer.status_code == (201 if builtin else 422), (name, answer.text)
        if builtin:
            assert api.parse(manifest).spec.analysis is not None
        else:
            with pytest.raises(api.SpecError, match="not a built-in metric"):
                api.parse(manifest)


# --- PodSecurity "restricted" and the operator's children ------------------------------------


def test_operator_children_are_admitted_under_pod_security_restricted(
    real_kube: RealKube, tmp_path: Path
) -> None:
    """The real operator in a namespace that enforces PodSecurity ``restricted`` (latest):
    the API server refuses any pod that is not hardened (the ReplicaSet controller then
    reports FailedCreate and ReplicaFailure), so pods of the revision's Deployment and of the
    router's mean the operator's pod templates pass."""
    namespace = real_kube.new_namespace("restricted", labels=RESTRICTED)
    operator = Operator(kube=real_kube, workdir=tmp_path, namespace=namespace)
    try:
        operator.start()
        manifest = md("v1")
        manifest["metadata"]["namespace"] = namespace
        real_kube.apply(manifest)

        def stable() -> dict[str, Any] | None:
            found = real_kube.get(*MD, namespace, "fraud") or {}
            status = found.get("status") or {}
            return status if status.get("phase") == "Stable" else None

        try:
            status = wait_for(stable, what="fraud Stable")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nFailedCreate: {failed_creates(real_kube, namespace)}\n"
                f"--- operator log ---\n{operator.log_text()[-4000:]}"
            ) from None
        revision = status["stable"]["revision"]
        revision_pods = deployment_pods(real_kube, namespace, f"fraud-{revision}")
        router_pods = deployment_pods(real_kube, namespace, "fraud-router")
        assert len(revision_pods) == 2 and router_pods
        for pod in revision_pods + router_pods:
            security = pod["spec"]["securityContext"]
            assert security["runAsNonRoot"] is True, pod["metadata"]["name"]
        assert failed_creates(real_kube, namespace) == []
        # Deleted while the operator runs: its finalizer is removed and the children go.
        real_kube.delete(*MD, namespace, "fraud")
        wait_for(lambda: not real_kube.list(*MD, namespace), what="the ModelDeployment gone")
        wait_for(lambda: not real_kube.list("v1", "pods", namespace), what="the pods collected")
    finally:
        operator.stop()
        for found in real_kube.list(*MD, namespace):  # only if the test failed half-way
            real_kube.patch(
                *MD, namespace, found["metadata"]["name"], {"metadata": {"finalizers": None}}
            )
        real_kube.delete("v1", "namespaces", None, namespace)


def test_a_pod_that_is_not_hardened_is_refused(real_kube: RealKube, namespace: str) -> None:
    """The control for the tests above: this API server does enforce PodSecurity (a plain
    pod is refused with 403, saying what is missing)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    with pytest.raises(httpx.HTTPStatusError) as refused:
        real_kube.create(pod, "pods")
    assert refused.value.response.status_code == 403
    message = refused.value.response.json()["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "allowPrivilegeEscalation != false" in message
    assert "runAsNonRoot != true" in message

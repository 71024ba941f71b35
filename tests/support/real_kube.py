"""The tests' hands on the real control plane of :mod:`support.real_cluster`.

:class:`RealKube` is a small admin client (the same REST helpers the tests always used:
``get``, ``list``, ``create``, ``patch``, ``delete``, plus server-side ``apply``) and knows
the install: the CRDs from ``crds/`` and the chart, the operator's ServiceAccount bound to
``manifests/install/rbac.yaml``, and a kubeconfig holding that ServiceAccount's real token.
So the operator under test is authorized by the API server's RBAC as it is on a cluster: a
verb the install does not grant is a 403.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from support.real_cluster import RealCluster, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRDS = [
    ROOT / "crds" / "modeldeployment.yaml",
    ROOT / "charts" / "serinus" / "crds" / "kopf-peering.yaml",
]
RBAC = ROOT / "manifests" / "install" / "rbac.yaml"
OPERATOR_NAMESPACE = "serinus-system"
OPERATOR_SA = "serinus-operator"
FIELD_MANAGER = "serinus-tests"

#: kind -> (plural, namespaced) for what the tests apply; anything else names its plural.
_PLURALS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "ServiceAccount": ("serviceaccounts", True),
    "Secret": ("secrets", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ConfigMap": ("configmaps", True),
    "Service": ("services", True),
    "Deployment": ("deployments", True),
    "ModelDeployment": ("modeldeployments", True),
}
_namespaces = itertools.count(1)

#: What ``kubectl apply -k manifests/`` creates, as kubectl names it.
KUSTOMIZE_OBJECTS = frozenset(
    {
        "namespace/serinus-system",
        "customresourcedefinition.apiextensions.k8s.io/modeldeployments.serinus.dev",
        "serviceaccount/serinus-operator",
        "clusterrole.rbac.authorization.k8s.io/serinus-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/serinus-operator",
        "clusterrole.rbac.authorization.k8s.io/serinus-view",
        "clusterrole.rbac.authorization.k8s.io/serinus-edit",
        "service/serinus-operator-metrics",
        "deployment.apps/serinus-operator",
    }
)


def kubectl(cluster: RealCluster, *args: str, stdin: str | None = None) -> str:
    """``kubectl ARGS`` as the admin (``KUBECONFIG``, which plugins read too), from the
    repository's root, with this virtualenv's ``kubectl-serinus`` plugin on PATH; fails on
    a non-zero exit or anything on stderr (the API server's warnings are printed there)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0 and not done.stderr, (
        f"kubectl {' '.join(args)}: exit {done.returncode}\n{done.stderr}{done.stdout}"
    )
    return done.stdout


def base(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


class RealKube:
    """An admin (system:masters) client of a :class:`RealCluster`."""

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster
        self.url = cluster.server
        self.client = cluster.client(timeout=15)

    def close(self) -> None:
        self.client.close()

    # --------------------------------------------------------------- REST helpers
    @staticmethod
    def path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
        out = base(api_version) + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
        return out if name is None else f"{out}/{name}"

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any:
        response = self.client.get(self.path(api_version, plural, namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def list(
        self, api_version: str, plural: str, namespace: str | None, *, selector: str | None = None
    ) -> list[Any]:
        params = {"labelSelector": selector} if selector else None
        response = self.client.get(self.path(api_version, plural, namespace), params=params)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        items: list[Any] = response.json().get("items", [])
        return items

    def create(self, obj: Mapping[str, Any], plural: str) -> Any:
        meta = obj["metadata"]
        response = self.client.post(
            self.path(obj["apiVersion"], plural, meta.get("namespace")), json=dict(obj)
        )
        _raise(response)
        return response.json()

    def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Any:
        path = self.path(api_version, plural, namespace, name)
        if subresource:
            path += f"/{subresource}"
        response = self.client.patch(
            path, json=dict(body), headers={"content-type": "application/merge-patch+json"}
        )
        _raise(response)
        return response.json()

    def delete(self, api_version: str, plural: str, namespace: str | None, name: str) -> None:
        response = self.client.delete(self.path(api_version, plural, namespace, name))
        if response.status_code != 404:
            _raise(response)

    def apply(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> Any:
        """Server-side apply, as ``kubectl apply --server-side --force-conflicts``."""
        kind = obj["kind"]
        plural, namespaced = _PLURALS[kind]
        meta = obj["metadata"]
        ns = (meta.get("namespace") or namespace) if namespaced else None
        body = dict(obj)
        if ns is not None:
            body["metadata"] = {**meta, "namespace": ns}
        response = self.client.patch(
            self.path(obj["apiVersion"], plural, ns, meta["name"]),
            content=yaml.safe_dump(body).encode(),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            headers={"content-type": "application/apply-patch+yaml"},
        )
        _raise(response)
        return response.json()

    def apply_all(self, docs: Iterable[Mapping[str, Any] | None], **kw: Any) -> None:
        for doc in docs:
            if doc:
                self.apply(doc, **kw)

    # --------------------------------------------------------------- the install
    def install(self) -> None:
        """The CRDs, the operator's namespace, ServiceAccount and RBAC."""
        for crd in CRDS:
            self.apply_all(yaml.safe_load_all(crd.read_text()))
        for crd in CRDS:
            for doc in yaml.safe_load_all(crd.read_text()):
                if doc:
                    self.wait_established(doc["metadata"]["name"])
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": OPERATOR_SA, "namespace": OPERATOR_NAMESPACE},
            }
        )
        self.apply_all(yaml.safe_load_all(RBAC.read_text()))

    def wait_established(self, crd: str) -> None:
        def established() -> bool:
            found = self.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None, crd)
            conditions = ((found or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, what=f"CRD {crd} Established")

    def new_namespace(self, prefix: str = "t", *, labels: Mapping[str, str] | None = None) -> str:
        """A fresh namespace with its default ServiceAccount (what pods need)."""
        name = f"{prefix}-{next(_namespaces)}"
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        wait_for(
            lambda: self.get("v1", "serviceaccounts", name, "default"),
            what=f"namespace {name}'s default ServiceAccount",
        )
        return name

    def token(self, namespace: str, service_account: str, *, seconds: int = 7200) -> str:
        """A real, bound ServiceAccount token (the TokenRequest API, as the kubelet asks)."""
        response = self.client.post(
            self.path("v1", "serviceaccounts", namespace, service_account) + "/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        _raise(response)
        token: str = response.json()["status"]["token"]
        return token

    def kubeconfig(
        self,
        namespace: str = "default",
        *,
        service_account: tuple[str, str] = (OPERATOR_NAMESPACE, OPERATOR_SA),
    ) -> dict[str, Any]:
        """A kubeconfig authenticating as ``service_account`` with a real token."""
        token = self.token(*service_account)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.cluster.ca_path),
                    },
                }
            ],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "real",
                    "context": {"cluster": "real", "user": "sa", "namespace": namespace},
                }
            ],
            "current-context": "real",
        }


def _raise(response: httpx.Response) -> None:
    """raise_for_status, with the API server's own message (it says what was refused)."""
    if response.is_success:
        return
    raise httpx.HTTPStatusError(
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text[:2000]}",
        request=response.request,
        response=response,
    )


def on_platform(kube: RealKube, work: Any) -> Any:
    """``await work(platform)`` with a :class:`KubernetesPlatform` of the admin's
    credentials (no watch cache: every read is a request), in a loop of its own."""
    import asyncio

    from serinus_operator.platforms.kubernetes import Credentials, KubeClient, KubernetesPlatform

    async def go() -> Any:
        d = kube.cluster.dir
        credentials = Credentials(
            server=kube.url,
            ca_path=str(kube.cluster.ca_path),
            cert_path=str(d / "admin.crt"),
            key_path=str(d / "admin.key"),
        )
        client = KubeClient(credentials)
        try:
            return await work(KubernetesPlatform(client))
        finally:
            await client.aclose()

    return asyncio.run(go())

"""``view``, ``edit`` and ``admin`` users and ModelDeployments, on the real API server: the
ClusterRoles of ``manifests/install/user-roles.yaml`` (the chart renders the same, see
tests/unit/install/test_user_roles.py) are aggregated into the built-in roles by the real
kube-controller-manager's clusterrole-aggregation controller. A ServiceAccount bound to
``edit`` can promote (the merge patch of the ``serinus.dev/action`` annotation that
``kubectl serinus promote`` writes); one bound to ``view`` can read but not promote."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from serinus_operator.api import ACTION_ANNOTATION
from support.cluster import md
from support.real_cluster import wait_for
from support.real_kube import ROOT, RealKube

pytestmark = pytest.mark.integration

USER_ROLES = ROOT / "manifests" / "install" / "user-roles.yaml"
MD = "/apis/serinus.dev/v1alpha1/namespaces/{ns}/modeldeployments"


def aggregated(kube: RealKube, role: str) -> bool:
    found = kube.get("rbac.authorization.k8s.io/v1", "clusterroles", None, role) or {}
    return any(
        "serinus.dev" in rule.get("apiGroups", [])
        and "modeldeployments" in rule.get("resources", [])
        for rule in found.get("rules") or []
    )


@pytest.fixture
def namespace(real_kube: RealKube) -> Iterator[str]:
    real_kube.apply_all(yaml.safe_load_all(USER_ROLES.read_text()))
    for role in ("view", "edit", "admin"):
        wait_for(lambda role=role: aggregated(real_kube, role), what=f"{role} aggregated")
    ns = real_kube.new_namespace("users")
    try:
        yield ns
    finally:
        real_kube.delete("v1", "namespaces", None, ns)


def person(kube: RealKube, namespace: str, role: str) -> httpx.Client:
    """A client authenticated as a ServiceAccount bound to the built-in ``role`` in
    ``namespace`` (as ``kubectl create rolebinding --clusterrole=ROLE`` does)."""
    name = f"a-{role}"
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        namespace=namespace,
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )
    token = kube.token(namespace, name)
    return httpx.Client(
        base_url=kube.url,
        verify=ssl.create_default_context(cafile=str(kube.cluster.ca_path)),
        headers={"authorization": f"Bearer {token}"},
        timeout=15,
    )


def promote(client: httpx.Client, namespace: str, nonce: str) -> httpx.Response:
    """What ``kubectl serinus promote fraud`` sends."""
    return client.patch(
        f"{MD.format(ns=namespace)}/fraud",
        content=f'{{"metadata":{{"annotations":{{"{ACTION_ANNOTATION}":"promote:{nonce}"}}}}}}',
        headers={"content-type": "application/merge-patch+json"},
    )


def test_edit_can_promote_and_view_can_only_read(real_kube: RealKube, namespace: str) -> None:
    manifest: dict[str, Any] = md("v1")
    manifest["metadata"]["namespace"] = namespace
    real_kube.apply(manifest)
    viewer, editor = person(real_kube, namespace, "view"), person(real_kube, namespace, "edit")
    with viewer, editor:
        listed = viewer.get(MD.format(ns=namespace))
        assert listed.status_code == 200, listed.text
        assert [i["metadata"]["name"] for i in listed.json()["items"]] == ["fraud"]
        assert viewer.get(f"{MD.format(ns=namespace)}/fraud").status_code == 200

        refused = promote(viewer, namespace, "v1")
        assert refused.status_code == 403, refused.text
        assert 'cannot patch resource "modeldeployments"' in refused.json()["message"]

        accepted = promote(editor, namespace, "e1")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["metadata"]["annotations"][ACTION_ANNOTATION] == "promote:e1"
        # Status is the operator's alone.
        status = editor.patch(
            f"{MD.format(ns=namespace)}/fraud/status",
            content='{"status":{"phase":"Stable"}}',
            headers={"content-type": "application/merge-patch+json"},
        )
        assert status.status_code == 403, status.text

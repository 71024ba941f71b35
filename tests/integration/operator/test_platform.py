"""The Kubernetes platform's API calls against the faithful kmock API: idempotent apply,
preconditions, the status subresource, owner references (and the fixture's own fidelity)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from serinus_operator.platforms.base import Conflict, ObjectRef
from serinus_operator.platforms.kubernetes import (
    APPLIED_ANNOTATION,
    Credentials,
    KubeClient,
    KubernetesPlatform,
    md_path,
)
from support.kube_api import KubeApi

pytestmark = pytest.mark.integration

NS = "ml"


@pytest.fixture
def kube() -> Iterator[KubeApi]:
    api = KubeApi()
    try:
        yield api
    finally:
        api.close()


def run(kube: KubeApi, work: Any) -> Any:
    async def go() -> Any:
        client = KubeClient(Credentials(server=kube.url, token="t"))
        try:
            return await work(KubernetesPlatform(client))
        finally:
            await client.aclose()

    return asyncio.run(go())


def config_map(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": NS},
        "data": {"k": value},
    }


def test_apply_writes_only_what_changed(kube: KubeApi) -> None:
    async def work(p: KubernetesPlatform) -> None:
        await p.apply(config_map("a"))
        first = kube.get("v1", "configmaps", NS, "x")
        await p.apply(config_map("a"))
        assert (
            kube.get("v1", "configmaps", NS, "x")["metadata"]["resourceVersion"]
            == (first["metadata"]["resourceVersion"])
        ), "an unchanged object was written again"
        await p.apply(config_map("b"))
        after = kube.get("v1", "configmaps", NS, "x")
        assert after["data"] == {"k": "b"}
        assert (
            after["metadata"]["annotations"][APPLIED_ANNOTATION]
            != (first["metadata"]["annotations"][APPLIED_ANNOTATION])
        )

    run(kube, work)


def md_object() -> dict[str, Any]:
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": NS},
        "spec": {"model": {"uri": "https://m/v1.onnx", "version": "v1"}},
        "status": {"phase": "Stable"},
    }


def test_status_is_a_subresource_with_optimistic_locking(kube: KubeApi) -> None:
    created = kube.create(md_object(), "modeldeployments")
    assert "status" not in created, "status is not writable through the main resource"
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    ref = ObjectRef(NS, "fraud", created["metadata"]["uid"])
    rv = created["metadata"]["resourceVersion"]

    async def work(p: KubernetesPlatform) -> None:
        stored = await p.write_status(ref, {"phase": "Progressing"}, resource_version=rv)
        assert stored["status"] == {"phase": "Progressing"}
        with pytest.raises(Conflict):  # the object changed since rv was read
            await p.write_status(ref, {"phase": "Stable"}, resource_version=rv)
        # The main resource ignores status; a spec change bumps the generation.
        patched = await p.client.merge_patch(
            md_path(NS, "fraud"), {"spec": {"replicas": 3}, "status": {"phase": "Hacked"}}
        )
        assert patched["status"] == {"phase": "Progressing"}
        assert patched["metadata"]["generation"] == 2
        annotated = await p.request_action(NS, "fraud", "promote:1")
        assert annotated["metadata"]["generation"] == 2, "annotations are not spec"

    run(kube, work)


def test_deleting_the_owner_collects_its_children(kube: KubeApi) -> None:
    owner = kube.create(md_object(), "modeldeployments")
    uid = owner["metadata"]["uid"]
    child = config_map("a")
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "serinus.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud",
            "uid": uid,
            "controller": True,
        }
    ]
    kube.create(child, "configmaps")
    kube.delete("serinus.dev/v1alpha1", "modeldeployments", NS, "fraud")
    assert kube.get("v1", "configmaps", NS, "x") is None

"""The Kubernetes platform's API calls against a real API server: idempotent apply,
preconditions, the status subresource, owner references collected by the real garbage
collector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serinus_operator.platforms.base import Conflict, ObjectRef
from serinus_operator.platforms.kubernetes import (
    APPLIED_ANNOTATION,
    KubernetesPlatform,
    md_path,
)
from support.real_cluster import wait_for
from support.real_kube import RealKube, on_platform

pytestmark = pytest.mark.integration

NS = "platform"


@pytest.fixture(scope="module")
def kube(real_kube: RealKube) -> Iterator[RealKube]:
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        yield real_kube
    finally:
        real_kube.delete("v1", "namespaces", None, NS)


@pytest.fixture(autouse=True)
def clean(kube: RealKube) -> None:
    """Each test starts without the objects the others make."""
    kube.delete("v1", "configmaps", NS, "x")
    kube.delete("serinus.dev/v1alpha1", "modeldeployments", NS, "fraud")
    wait_for(
        lambda: (
            kube.get("v1", "configmaps", NS, "x") is None
            and kube.get("serinus.dev/v1alpha1", "modeldeployments", NS, "fraud") is None
        ),
        what="a clean namespace",
    )


run = on_platform  # every test here runs its calls on a platform of its own


def config_map(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": NS},
        "data": {"k": value},
    }


def test_apply_writes_only_what_changed(kube: RealKube) -> None:
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
        "spec": {
            "model": {"uri": "https://m/v1.onnx", "version": "v1"},
            "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}]}},
        },
        "status": {"phase": "Stable"},
    }


def test_status_is_a_subresource_with_optimistic_locking(kube: RealKube) -> None:
    created = kube.create(md_object(), "modeldeployments")
    # Status is not writable through the main resource: what was sent is dropped, and the
    # CRD's default (kstatus' "not yet observed") stands in until the operator writes.
    assert created["status"] == {"observedGeneration": -1}
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    ref = ObjectRef(NS, "fraud", created["metadata"]["uid"])
    rv = created["metadata"]["resourceVersion"]

    async def work(p: KubernetesPlatform) -> None:
        stored = await p.write_status(ref, {"phase": "Progressing"}, resource_version=rv)
        assert stored["status"] == {"observedGeneration": -1, "phase": "Progressing"}
        with pytest.raises(Conflict):  # the object changed since rv was read
            await p.write_status(ref, {"phase": "Stable"}, resource_version=rv)
        # The main resource ignores status; a spec change bumps the generation.
        patched = await p.client.merge_patch(
            md_path(NS, "fraud"), {"spec": {"replicas": 3}, "status": {"phase": "Hacked"}}
        )
        assert patched["status"] == {"observedGeneration": -1, "phase": "Progressing"}
        assert patched["metadata"]["generation"] == 2
        annotated = await p.request_action(NS, "fraud", "promote:1")
        assert annotated["metadata"]["generation"] == 2, "annotations are not spec"

    run(kube, work)


def test_deleting_the_owner_collects_its_children(kube: RealKube) -> None:
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
    wait_for(
        lambda: kube.get("v1", "configmaps", NS, "x") is None,
        what="the garbage collector to delete the child",
    )

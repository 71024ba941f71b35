"""Children are owned, not guessed: written with server-side apply under one field manager,
watched, and put back within seconds when someone deletes or edits them, with an Event on
the ModelDeployment saying which. And the role Services ``<name>-stable`` and
``<name>-candidate`` follow the rollout. All on the real API server, with the real operator
process (and, for the platform's own calls, the platform against the same server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integration.operator.test_platform import run  # the platform on the admin's credentials
from serinus_operator.platforms.base import ObjectRef
from serinus_operator.platforms.kubernetes import (
    APPLIED_ANNOTATION,
    FIELD_MANAGER,
    RESTORED_REASON,
    KubernetesPlatform,
    NotOwned,
)
from support.cluster import Cluster, md, wait_for
from support.real_kube import RealKube

pytestmark = pytest.mark.integration

#: "Within seconds": the watch event wakes the loop at once; this is the test's patience.
SECONDS = 15


def routed(cluster: Cluster) -> str:
    """v1 stable behind the router: the ModelDeployment's revision."""
    cluster.operator.start()
    cluster.apply(md("v1"))
    status = cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")
    wait_for(lambda: cluster.kube.get("v1", "services", cluster.namespace, "fraud"), what="fraud")
    revision: str = status["stable"]["revision"]
    return revision


def restored_messages(cluster: Cluster) -> str:
    return "\n".join(
        e["message"] for e in cluster.event_objects("fraud") if e["reason"] == RESTORED_REASON
    )


def wait_restored(cluster: Cluster, *parts: str) -> str:
    def said() -> str | None:
        text = restored_messages(cluster)
        return text if all(p in text for p in parts) else None

    return wait_for(
        said,
        timeout=SECONDS,
        what=f"a {RESTORED_REASON} Event saying {parts}",
        why=lambda: cluster.operator.log_text()[-4000:],
    )


def service(cluster: Cluster, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = cluster.kube.get("v1", "services", cluster.namespace, name)
    return found


# --- put back ---------------------------------------------------------------------------------


def test_a_deleted_router_service_and_routes_configmap_are_recreated(cluster: Cluster) -> None:
    routed(cluster)
    ns = cluster.namespace
    before = cluster.kube.get("v1", "services", ns, "fraud")
    table = cluster.routes("fraud")
    assert table and not restored_messages(cluster)
    managers = {(m["manager"], m["operation"]) for m in before["metadata"]["managedFields"]}
    assert (FIELD_MANAGER, "Apply") in managers
    assert (FIELD_MANAGER, "Update") not in managers  # every write was an apply

    cluster.kube.delete("v1", "services", ns, "fraud")
    cluster.kube.delete("v1", "configmaps", ns, "fraud-routes")

    def recreated() -> bool:
        now = cluster.kube.get("v1", "services", ns, "fraud")
        return bool(now) and now["metadata"]["uid"] != before["metadata"]["uid"]

    wait_for(recreated, timeout=SECONDS, what="the router Service recreated")
    wait_for(lambda: cluster.routes("fraud") == table, timeout=SECONDS, what="the routes back")
    wait_restored(
        cluster,
        "Service fraud was deleted: created it again",
        "ConfigMap fraud-routes was deleted: created it again",
    )
    types = {e["type"] for e in cluster.event_objects("fraud") if e["reason"] == RESTORED_REASON}
    assert types == {"Warning"}
    assert "was deleted by someone else" in cluster.operator.log_text()


def test_a_hand_edited_service_selector_is_put_back(cluster: Cluster) -> None:
    revision = routed(cluster)
    ns = cluster.namespace
    router = service(cluster, "fraud")
    assert router is not None
    selector = router["spec"]["selector"]
    # What `kubectl edit svc fraud` does: an update by another manager.
    hijacked = {k: None for k in selector} | {"app": "something-else"}
    cluster.kube.patch("v1", "services", ns, "fraud", {"spec": {"selector": hijacked}})
    stable = service(cluster, f"fraud-{revision}")
    assert stable is not None
    cluster.kube.patch(
        "v1", "services", ns, f"fraud-{revision}", {"spec": {"selector": {"app": "x"}}}
    )

    def back() -> bool:
        a, b = service(cluster, "fraud"), service(cluster, f"fraud-{revision}")
        return bool(a and b) and (
            a["spec"]["selector"] == selector
            and b["spec"]["selector"] == stable["spec"]["selector"]
        )

    wait_for(back, timeout=SECONDS, what="both selectors put back")
    wait_restored(
        cluster,
        "Service fraud was changed (spec.selector",
        f"Service fraud-{revision} was changed (spec.selector",
    )
    now = service(cluster, "fraud")
    assert now is not None
    assert now["metadata"]["annotations"][APPLIED_ANNOTATION]
    assert "changed by someone else" in cluster.operator.log_text()


def test_unrelated_edits_are_left_alone(cluster: Cluster) -> None:
    """A label or annotation of someone else's (a GitOps tool's, a person's) is not the
    operator's to remove, and no Event says otherwise."""
    routed(cluster)
    ns = cluster.namespace
    cluster.kube.patch(
        "v1", "services", ns, "fraud", {"metadata": {"labels": {"example.com/team": "risk"}}}
    )
    cluster.kube.patch(
        *("serinus.dev/v1alpha1", "modeldeployments", ns, "fraud"),
        {"metadata": {"labels": {"example.com/poke": "1"}}},
    )  # a pass, for sure
    wait_for(
        lambda: "example.com/poke" in (cluster.get("fraud") or {})["metadata"]["labels"],
        what="the poke",
    )
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="still stable")
    found = service(cluster, "fraud")
    assert found is not None and found["metadata"]["labels"]["example.com/team"] == "risk"
    assert not restored_messages(cluster)


# --- the role Services ------------------------------------------------------------------------


def selected(cluster: Cluster, service_name: str) -> set[str]:
    """The pods a Service's selector picks among those the real controllers made. (The
    stand-in kubelet's pod IPs are loopback addresses, which EndpointSlices refuse, so the
    selector is read as the EndpointSlice controller would apply it.)"""
    found = service(cluster, service_name)
    if not found:
        return set()
    selector = ",".join(f"{k}={v}" for k, v in sorted(found["spec"]["selector"].items()))
    pods = cluster.kube.list("v1", "pods", cluster.namespace, selector=selector)
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def selects(cluster: Cluster, name: str, revision: str) -> bool:
    pods = selected(cluster, name)
    return bool(pods) and all(p.startswith(f"fraud-{revision}-") for p in pods)


def test_role_services_follow_the_rollout(cluster: Cluster) -> None:
    v1 = routed(cluster)
    assert wait_for(lambda: selects(cluster, "fraud-stable", v1), what="fraud-stable on v1")
    assert service(cluster, "fraud-candidate") is None
    port = service(cluster, "fraud-stable")["spec"]["ports"]  # type: ignore[index]
    assert [(p["port"], p["targetPort"]) for p in port] == [(8080, "http")]

    cluster.apply(md("v2"))
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 50, what="50%")
    v2 = s["candidate"]["revision"]
    assert wait_for(lambda: selects(cluster, "fraud-candidate", v2), what="fraud-candidate")
    assert selects(cluster, "fraud-stable", v1)
    owner = service(cluster, "fraud-candidate")["metadata"]["ownerReferences"]  # type: ignore[index]
    assert [(o["kind"], o["name"], o["controller"]) for o in owner] == [
        ("ModelDeployment", "fraud", True)
    ]

    cluster.annotate_action("fraud", "promote-full:n1")
    cluster.wait_status(
        "fraud", lambda s: s.get("phase") == "Stable" and not s.get("candidate"), what="v2"
    )
    wait_for(
        lambda: service(cluster, "fraud-candidate") is None, timeout=SECONDS, what="no candidate"
    )
    assert wait_for(lambda: selects(cluster, "fraud-stable", v2), what="fraud-stable on v2")
    assert not restored_messages(cluster)  # the operator's own deletion is no restoration


# --- the platform's own calls -----------------------------------------------------------------

NS = "children"


@pytest.fixture(scope="module")
def kube(real_kube: RealKube) -> Iterator[RealKube]:
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        yield real_kube
    finally:
        real_kube.delete("v1", "namespaces", None, NS)


def config_map(
    name: str, annotations: dict[str, str], *, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ConfigMap; with ``owner`` (an object as stored), controlled by it."""
    meta: dict[str, Any] = {"name": name, "namespace": NS, "annotations": annotations}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def test_what_is_no_longer_applied_is_removed(kube: RealKube) -> None:
    roles = {"serinus.dev/stable": "a", "serinus.dev/candidate": "b"}

    async def work(p: KubernetesPlatform) -> None:
        await p.apply(config_map("removed", roles))
        stored = await p.apply(config_map("removed", {"serinus.dev/stable": "b"}))
        assert "serinus.dev/candidate" not in stored["metadata"]["annotations"]
        assert stored["metadata"]["annotations"]["serinus.dev/stable"] == "b"

    run(kube, work)


def test_fields_written_before_server_side_apply_are_taken_over(kube: RealKube) -> None:
    """An operator before server-side apply created children with POST and merge patches:
    the API server records those as Updates of manager ``serinus-operator`` (its user agent),
    and fields owned that way would outlive the operator no longer applying them."""
    roles = {"serinus.dev/stable": "a", "serinus.dev/candidate": "b"}
    response = kube.client.post(
        f"/api/v1/namespaces/{NS}/configmaps",
        json=config_map("legacy", roles),
        headers={"user-agent": "serinus-operator/0.1.0"},
    )
    response.raise_for_status()
    assert [
        (m["manager"], m["operation"]) for m in response.json()["metadata"]["managedFields"]
    ] == [(FIELD_MANAGER, "Update")]

    async def work(p: KubernetesPlatform) -> None:
        stored = await p.apply(config_map("legacy", {"serinus.dev/stable": "c"}))
        assert stored["metadata"]["annotations"] == {
            "serinus.dev/stable": "c",
            APPLIED_ANNOTATION: stored["metadata"]["annotations"][APPLIED_ANNOTATION],
        }
        managers = [(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]]
        assert managers == [(FIELD_MANAGER, "Apply")]
        assert p._restored == {}  # an upgrade is not a restoration

    run(kube, work)


def test_a_child_of_another_owner_is_not_taken_over(kube: RealKube) -> None:
    mine = kube.create(config_map("owner-a", {}), "configmaps")
    theirs = kube.create(config_map("owner-b", {}), "configmaps")
    kube.create(config_map("taken", {}, owner=theirs), "configmaps")

    async def work(p: KubernetesPlatform) -> None:
        with pytest.raises(NotOwned, match="another owner"):
            await p.apply(config_map("taken", {}, owner=mine))

    run(kube, work)
    found = kube.get("v1", "configmaps", NS, "taken")
    assert [o["name"] for o in found["metadata"]["ownerReferences"]] == ["owner-b"]


def test_the_restored_event_is_posted_once(kube: RealKube) -> None:
    """A deleted child applied again is reported once, in one Event named by what was
    restored (a repeated post of it is answered 409, which counts as posted)."""
    owner = kube.create(
        {
            "apiVersion": "serinus.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "fraud", "namespace": NS},
            "spec": {
                "model": {"uri": "https://m/v1.onnx", "version": "v1"},
                "strategy": {"type": "BlueGreen"},
            },
        },
        "modeldeployments",
    )
    uid = owner["metadata"]["uid"]
    ref = ObjectRef(NS, "fraud", uid)

    async def work(p: KubernetesPlatform) -> None:
        await p.apply(config_map("routes", {}, owner=owner))
        assert await p.report_restored(ref)  # nothing to report
        kube.delete("v1", "configmaps", NS, "routes")
        await p.apply(config_map("routes", {}, owner=owner))
        assert await p.report_restored(ref)
        assert await p.report_restored(ref)  # reported already: nothing more

    try:
        run(kube, work)
        events = [
            e
            for e in kube.list("v1", "events", NS)
            if e["involvedObject"].get("uid") == uid and e["reason"] == RESTORED_REASON
        ]
        assert [e["message"] for e in events] == [
            "Put back what was changed outside the operator: "
            "ConfigMap routes was deleted: created it again"
        ]
        assert events[0]["involvedObject"]["kind"] == "ModelDeployment"
        assert events[0]["type"] == "Warning"
    finally:
        kube.delete("serinus.dev/v1alpha1", "modeldeployments", NS, "fraud")

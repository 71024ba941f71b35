"""The pure builders in ``serinus_operator.resources``: shape, names, labels, selectors, owner
references, and every object through ``kubernetes-validate --strict`` (Kubernetes 1.37).

HTTPRoutes are outside ``kubernetes-validate`` (it has no Gateway API schemas): they are
validated against the vendored upstream standard-channel CRD schemas with their CEL rules
(see ``kit.py``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest

from serinus_operator import resources as r
from serinus_operator.api import GatewayRef
from serinus_serving.router.table import parse_table
from unit.traffic import kit

pytestmark = pytest.mark.unit

UID = "6f1b6d2e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
COMMON = {
    "app.kubernetes.io/name": "fraud",
    "app.kubernetes.io/managed-by": "serinus",
    "app.kubernetes.io/part-of": "serinus",
    "serinus.dev/model": "fraud",
}
GATEWAY = GatewayRef(name="public", namespace="gateways", section_name="https")


def all_builder_outputs() -> list[tuple[str, dict[str, Any]]]:
    table = r.routing_table(
        "fraud", "ml", weights={"7f3c": 90, "9a1e": 10}, port=8080, shadow="9a1e"
    )
    out: list[tuple[str, dict[str, Any]]] = [
        ("revision_service", r.revision_service("fraud", "ml", "7f3c", port=8080)),
        (
            "revision_service+owner",
            r.revision_service("fraud", "ml", "9a1e", port=9000, owner_uid=UID),
        ),
        ("public_service/router", r.public_service("fraud", "ml", owner_uid=UID)),
        (
            "public_service/revision",
            r.public_service("fraud", "ml", revision="7f3c", port=8080, annotations={"a.b/c": "d"}),
        ),
        ("routing_configmap", r.routing_configmap("fraud", "ml", table=table, owner_uid=UID)),
    ]
    for weights, mirror, percent in [
        ({"7f3c": 100}, None, 100),
        ({"7f3c": 90, "9a1e": 10}, None, 100),
        ({"7f3c": 100, "9a1e": 0}, "9a1e", 100),
        ({"7f3c": 100, "9a1e": 0}, "9a1e", 25),
        ({"7f3c": 0, "9a1e": 100}, None, 100),
    ]:
        route = r.http_route(
            "fraud",
            "ml",
            gateway=GATEWAY,
            weights=weights,
            port=8080,
            mirror=mirror,
            mirror_percent=percent,
            hostnames=("fraud.example.com",),
            owner_uid=UID,
        )
        out.append((f"http_route/{weights}/{mirror}/{percent}", route))
    out.append(
        (
            "http_route/minimal",
            r.http_route("fraud", "ml", gateway=GatewayRef("gw"), weights={"7f3c": 100}, port=80),
        )
    )
    return out


OUTPUTS = all_builder_outputs()


@pytest.mark.parametrize(("what", "obj"), OUTPUTS, ids=[what for what, _ in OUTPUTS])
def test_every_builder_output_is_valid(what: str, obj: dict[str, Any]) -> None:
    kit.validate_any(obj)


def test_owner_reference() -> None:
    assert r.owner_reference("fraud", UID) == {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@pytest.mark.parametrize(
    ("revision", "port"), [("7f3c", 8080), ("9a1e0b2c3d", 9000), ("a", 1), ("b", 65535)]
)
def test_revision_service(revision: str, port: int) -> None:
    svc = r.revision_service("fraud", "ml", revision, port=port, owner_uid=UID)
    assert svc["metadata"]["name"] == f"fraud-{revision}"
    assert svc["metadata"]["namespace"] == "ml"
    assert svc["metadata"]["labels"] == {
        **COMMON,
        "app.kubernetes.io/instance": f"fraud-{revision}",
        "app.kubernetes.io/component": "server",
        "serinus.dev/revision": revision,
    }
    assert svc["metadata"]["ownerReferences"] == [r.owner_reference("fraud", UID)]
    assert svc["spec"]["selector"] == {
        "serinus.dev/model": "fraud",
        "serinus.dev/revision": revision,
    }
    [p] = svc["spec"]["ports"]
    assert (p["port"], p["targetPort"], p["name"]) == (port, "http", "http")
    kit.k8s_validate(svc)


def test_no_owner_reference_without_uid() -> None:
    assert "ownerReferences" not in r.revision_service("fraud", "ml", "a", port=1)["metadata"]


@pytest.mark.parametrize(
    ("revision", "selector"),
    [
        (None, {"serinus.dev/model": "fraud", "app.kubernetes.io/component": "router"}),
        ("7f3c", {"serinus.dev/model": "fraud", "serinus.dev/revision": "7f3c"}),
    ],
)
def test_public_service_selects_router_or_revision(
    revision: str | None, selector: dict[str, str]
) -> None:
    svc = r.public_service("fraud", "ml", revision=revision, owner_uid=UID)
    assert svc["metadata"]["name"] == "fraud"
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["port"] == r.PUBLIC_PORT
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "traffic"
    assert "serinus.dev/revision" not in svc["metadata"]["labels"]
    kit.k8s_validate(svc)


def test_router_and_revision_selectors_do_not_overlap() -> None:
    """A revision Service never selects router pods and the public Service never selects
    serving pods: router pods carry no revision label, serving pods are not 'router'."""
    router_pod = {**r.labels("fraud", component="router"), **r.router_selector("fraud")}
    server_pod = r.labels("fraud", component="server", revision="7f3c")
    rev_sel, router_sel = r.revision_selector("fraud", "7f3c"), r.router_selector("fraud")
    assert rev_sel.items() <= server_pod.items()
    assert not rev_sel.items() <= router_pod.items()
    assert router_sel.items() <= router_pod.items()
    assert not router_sel.items() <= server_pod.items()


@pytest.mark.parametrize(
    ("weights", "shadow", "percent"),
    [
        ({"7f3c": 100}, None, 100),
        ({"7f3c": 90, "9a1e": 10}, None, 100),
        ({"7f3c": 50, "9a1e": 50}, "9a1e", 100),
        ({"7f3c": 100, "9a1e": 0}, "9a1e", 10),
        ({"7f3c": 0, "9a1e": 100}, None, 100),
    ],
)
def test_routing_configmap_is_a_table_the_router_accepts(
    weights: dict[str, int], shadow: str | None, percent: int
) -> None:
    table = r.routing_table(
        "fraud",
        "ml",
        weights=weights,
        port=8080,
        shadow=shadow,
        shadow_percent=percent,
        versions={"9a1e": "v7"},
    )
    cm = r.routing_configmap("fraud", "ml", table=table, owner_uid=UID)
    kit.k8s_validate(cm)
    assert cm["metadata"]["name"] == "fraud-routes"
    assert list(cm["data"]) == ["routes.json"]
    parsed = parse_table(cm["data"]["routes.json"])
    assert parsed.model == "fraud"
    assert parsed.weights == weights
    for revision, backend in parsed.backends.items():
        assert backend.url == f"http://fraud-{revision}.ml.svc:8080"
        assert (backend.host, backend.port) == (f"fraud-{revision}.ml.svc", 8080)
    assert parsed.backends.get("9a1e") is None or parsed.backends["9a1e"].version == "v7"
    if shadow is None:
        assert parsed.shadow is None
    else:
        assert parsed.shadow is not None
        assert (parsed.shadow.revision, parsed.shadow.percent) == (shadow, percent)


def test_routing_configmap_is_deterministic() -> None:
    def build() -> dict[str, Any]:
        t = r.routing_table("fraud", "ml", weights={"a": 60, "b": 40}, port=8080)
        return r.routing_configmap("fraud", "ml", table=t)

    assert json.dumps(build()) == json.dumps(build())


def test_backend_url() -> None:
    assert r.backend_url("fraud", "ml", "7f3c", port=8080) == "http://fraud-7f3c.ml.svc:8080"


def test_http_route_shape() -> None:
    route = r.http_route(
        "fraud",
        "ml",
        gateway=GATEWAY,
        weights={"7f3c": 100, "9a1e": 0},
        port=8080,
        mirror="9a1e",
        mirror_percent=30,
        hostnames=("fraud.example.com",),
        annotations={"serinus.dev/stable": "7f3c"},
        owner_uid=UID,
    )
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "fraud"
    assert route["metadata"]["ownerReferences"] == [r.owner_reference("fraud", UID)]
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert spec["hostnames"] == ["fraud.example.com"]
    [rule] = spec["rules"]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "fraud-7f3c", "port": 8080, "weight": 100},
        {"group": "", "kind": "Service", "name": "fraud-9a1e", "port": 8080, "weight": 0},
    ]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "fraud-9a1e", "port": 8080},
                "percent": 30,
            },
        }
    ]


def test_http_route_full_mirror_leaves_percent_out() -> None:
    route = r.http_route(
        "fraud",
        "ml",
        gateway=GATEWAY,
        weights={"a": 100, "b": 0},
        port=80,
        mirror="b",
        mirror_percent=100,
    )
    assert "percent" not in route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert "hostnames" not in route["spec"]


@pytest.mark.parametrize("percent", [1, 50, 99, 100])
def test_http_route_mirror_percent(percent: int) -> None:
    """``percent`` is written only below 100 (it needs Gateway API v1.3+ standard channel);
    a full mirror leaves it out, which every Gateway API version reads as 100%."""
    route = r.http_route(
        "fraud",
        "ml",
        gateway=GATEWAY,
        weights={"a": 100, "b": 0},
        port=8080,
        mirror="b",
        mirror_percent=percent,
    )
    assert kit.httproute_errors(route) == []
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror.get("percent") == (percent if percent < 100 else None)


def test_gateway_validation_is_real() -> None:
    """The HTTPRoute checks catch mistakes: unknown fields, bounds, and the extra rules."""
    good = r.http_route("fraud", "ml", gateway=GATEWAY, weights={"a": 100}, port=8080)
    assert kit.httproute_errors(good) == []

    unknown = copy.deepcopy(good)
    unknown["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 1
    bad_weight = copy.deepcopy(good)
    bad_weight["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    no_port = copy.deepcopy(good)  # a Service backend without a port: a rule, not the schema
    del no_port["spec"]["rules"][0]["backendRefs"][0]["port"]
    both = r.http_route(
        "fraud",
        "ml",
        gateway=GATEWAY,
        weights={"a": 100, "b": 0},
        port=80,
        mirror="b",
        mirror_percent=50,
    )
    both["spec"]["rules"][0]["filters"][0]["requestMirror"]["fraction"] = {"numerator": 1}
    for broken in (unknown, bad_weight, no_port, both):
        assert kit.httproute_errors(broken), broken


def test_kubernetes_validate_has_no_gateway_api_schema() -> None:
    """Why HTTPRoutes are checked against the schema in kit.py instead."""
    route = r.http_route("fraud", "ml", gateway=GATEWAY, weights={"a": 100}, port=8080)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(route, kit.K8S_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    svc = r.revision_service("fraud", "ml", "a", port=8080)
    svc["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kit.k8s_validate(svc)

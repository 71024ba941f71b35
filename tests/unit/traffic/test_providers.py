"""Traffic providers: desired -> read round trips (table-driven and a hypothesis property),
every object valid (core objects by ``kubernetes-validate --strict`` for Kubernetes 1.37,
HTTPRoutes against the vendored Gateway API CRD schemas and CEL rules, see ``kit.py``), the
router's ``routes.json`` accepted by ``parse_table`` with the same weights, what each provider
rejects, and ``read`` on objects as an API server returns them or as someone edited them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator.api import PROVIDER_STRATEGIES, SpecError, StrategyType, TrafficProvider
from serinus_operator.resources.config import BuildConfig
from serinus_operator.rollout.actions import SetTraffic
from serinus_operator.traffic import (
    GatewayAPIProvider,
    RouterProvider,
    Routes,
    ServiceProvider,
    UnsupportedRoutes,
    check_spec,
    make_provider,
)
from serinus_serving.router.table import parse_table
from unit.operator.kit import crd
from unit.traffic import kit

pytestmark = pytest.mark.unit

UID = "0d6c2f3a-9a1e-4c1b-8f00-5e0b6a7d8c9e"
PROVIDERS = ["Router", "GatewayAPI", "Service"]
WEIGHTS = [0, 10, 50, 100]
MIRRORS = [0, 100, 25]


def provider_and_md(kind: str) -> tuple[Any, Any]:
    return make_provider(kind), kit.md(kind, hostnames=("fraud.example.com",))


def supported(kind: str, routes: Routes) -> bool:
    return kind != "Service" or (routes.candidate_weight in (0, 100) and not routes.mirror_percent)


CASES = [Routes("7f3c")] + [
    Routes("7f3c", "9a1e", weight, mirror) for weight in WEIGHTS for mirror in MIRRORS
]


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("routes", CASES, ids=str)
def test_desired_then_read_round_trips(kind: str, routes: Routes) -> None:
    provider, md = provider_and_md(kind)
    if not supported(kind, routes):
        with pytest.raises(UnsupportedRoutes, match="Router or GatewayAPI"):
            provider.desired(md, routes)
        return
    objects = provider.desired(md, routes, owner_uid=UID)
    for obj in objects:
        kit.validate_any(obj)
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
        assert obj["metadata"]["labels"]["serinus.dev/model"] == "fraud"
    assert provider.read(objects) == routes
    assert provider.read(as_found(objects)) == routes
    assert provider.read(list(reversed(objects))) == routes


def as_found(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as an API server returns them: server-set metadata, defaults, status."""
    out = []
    for obj in copy.deepcopy(objects):
        obj["metadata"].update(
            uid="1111", resourceVersion="42", generation=3, creationTimestamp="2026-01-01T00:00:00Z"
        )
        obj["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/last-applied"] = "{}"
        if obj["kind"] == "Service":
            obj["spec"].update(clusterIP="10.96.0.12", sessionAffinity="None")
            obj["status"] = {"loadBalancer": {}}
        if obj["kind"] == "HTTPRoute":
            obj = kit.server_defaults(obj)
            obj["status"] = {"parents": []}
        out.append(obj)
    return out


@st.composite
def any_routes(draw: st.DrawFn) -> Routes:
    label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")
    stable = draw(label)
    candidate = draw(st.none() | label.filter(lambda c: c != stable))
    if candidate is None:
        return Routes(stable)
    return Routes(
        stable,
        candidate,
        draw(st.integers(0, 100)),
        draw(st.integers(0, 100)),
    )


@pytest.mark.parametrize("kind", PROVIDERS)
@settings(max_examples=150, deadline=None)
@given(routes=any_routes())
def test_read_inverts_desired_for_any_routes(kind: str, routes: Routes) -> None:
    provider, md = provider_and_md(kind)
    if not supported(kind, routes):
        with pytest.raises(UnsupportedRoutes):
            provider.desired(md, routes)
        return
    assert provider.read(provider.desired(md, routes)) == routes


@settings(max_examples=20, deadline=None)  # kubernetes-validate reloads its schemas per call
@given(routes=any_routes())
def test_every_object_is_valid_for_any_routes(routes: Routes) -> None:
    for kind in PROVIDERS:
        provider, md = provider_and_md(kind)
        if supported(kind, routes):
            for obj in provider.desired(md, routes, owner_uid=UID):
                kit.validate_any(obj)


@pytest.mark.parametrize("routes", CASES, ids=str)
def test_router_table_is_accepted_by_the_router(routes: Routes) -> None:
    provider, md = provider_and_md("Router")
    [cm] = [o for o in provider.desired(md, routes) if o["kind"] == "ConfigMap"]
    table = parse_table(cm["data"]["routes.json"])
    assert table.weights == routes.weights
    assert sum(table.weights.values()) == 100
    if routes.mirror_percent:
        assert table.shadow is not None
        assert (table.shadow.revision, table.shadow.percent) == (
            routes.candidate,
            routes.mirror_percent,
        )
    else:
        assert table.shadow is None
    assert {b.url for b in table.backends.values()} == {
        f"http://fraud-{rev}.ml.svc:8080" for rev in routes.weights
    }


def test_routes_from_set_traffic() -> None:
    action = SetTraffic(stable="7f3c", candidate="9a1e", candidate_weight=10, mirror_percent=50)
    routes = Routes.of(action)
    assert routes == Routes("7f3c", "9a1e", 10, 50)
    assert routes.stable_weight == action.stable_weight == 90
    assert Routes.of(SetTraffic(stable="7f3c")) == Routes("7f3c")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a", None, 10, 0), "need a candidate"),
        (("a", None, 0, 5), "need a candidate"),
        (("a", "a", 0, 0), "same revision"),
        (("a", "b", 101, 0), "candidate_weight"),
        (("a", "b", 0, -1), "mirror_percent"),
        (("A_b", None, 0, 0), "DNS label"),
    ],
)
def test_routes_refuse_nonsense(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Routes(*args)


# --- what each provider writes ---------------------------------------------------------------


def test_router_writes_public_service_and_routes_configmap() -> None:
    provider, md = provider_and_md("Router")
    svc, cm = provider.desired(md, Routes("7f3c", "9a1e", 10, 0))
    assert (svc["kind"], svc["metadata"]["name"]) == ("Service", "fraud")
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "router"
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "fraud-routes")
    assert cm["metadata"]["annotations"] == {
        "serinus.dev/stable": "7f3c",
        "serinus.dev/candidate": "9a1e",
    }


@pytest.mark.parametrize("kind", PROVIDERS)
def test_only_the_router_runs_something_besides_its_routes(kind: str) -> None:
    """The router's pods and permissions come from its provider, not from a platform's
    special case; the other providers rely on what the cluster already runs."""
    provider, md = provider_and_md(kind)
    config = BuildConfig(router_image="example.com/router:1")
    objects = provider.runtime(md, config=config, owner_uid=UID)
    if kind != "Router":
        assert objects == []
        return
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
    ]
    pod = objects[3]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "example.com/router:1"
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == UID for o in objects)


def test_gateway_writes_one_httproute_with_the_specs_gateway_and_hostnames() -> None:
    provider = make_provider("GatewayAPI")
    md = kit.md("GatewayAPI", gateway={"name": "edge"}, hostnames=("a.example.com",))
    [route] = provider.desired(md, Routes("7f3c", "9a1e", 50, 0))
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}
    ]
    assert route["spec"]["hostnames"] == ["a.example.com"]
    assert "filters" not in route["spec"]["rules"][0]


def test_gateway_without_gateway_ref_is_refused() -> None:
    with pytest.raises(UnsupportedRoutes, match="gatewayRef"):
        make_provider("GatewayAPI").desired(kit.md("Router"), Routes("a"))


@pytest.mark.parametrize(("weight", "active"), [(0, "7f3c"), (100, "9a1e")])
def test_service_switches_the_selector(weight: int, active: str) -> None:
    provider, md = provider_and_md("Service")
    [svc] = provider.desired(md, Routes("7f3c", "9a1e", weight, 0))
    assert svc["metadata"]["name"] == "fraud"
    assert svc["spec"]["selector"] == {"serinus.dev/model": "fraud", "serinus.dev/revision": active}


# --- check -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("strategy", list(StrategyType))
def test_check_strategy(kind: str, strategy: StrategyType) -> None:
    provider = make_provider(kind)
    message = provider.check(strategy)
    spec_message = provider.check(kit.md("Router", strategy=strategy.value).spec.strategy)
    assert message == spec_message
    if kind == "Service" and strategy != StrategyType.BLUE_GREEN:
        assert message is not None
        assert strategy.value in message
        assert "BlueGreen" in message
        assert "Router or GatewayAPI" in message
    else:
        assert message is None


def service_rule(node: Any) -> str | None:
    """The CRD's CEL rule tying traffic.provider Service to strategies."""
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            if "provider != 'Service'" in rule["rule"]:
                return str(rule["rule"])
        node = list(node.values())
    if isinstance(node, list):
        return next((r for r in map(service_rule, node) if r is not None), None)
    return None


@pytest.mark.parametrize("strategy", list(StrategyType))
def test_service_strategies_are_one_fact(strategy: StrategyType) -> None:
    """ "Service only with BlueGreen" is stated once, in ``api.PROVIDER_STRATEGIES``: api
    validation and the provider read it, and the CRD's CEL rule (so that ``kubectl apply``
    refuses the spec) must agree with it."""
    celpy = pytest.importorskip("celpy")
    allowed = strategy in PROVIDER_STRATEGIES[TrafficProvider.SERVICE]
    assert ServiceProvider.strategies == PROVIDER_STRATEGIES[TrafficProvider.SERVICE]
    assert (ServiceProvider().check(strategy) is None) == allowed
    if allowed:
        check_spec(kit.md("Service", strategy=strategy.value).spec)
    else:
        with pytest.raises(SpecError, match=r"spec\.traffic\.provider"):
            kit.md("Service", strategy=strategy.value)
    rule = service_rule(crd())
    assert rule is not None
    env = celpy.Environment()
    spec = {"traffic": {"provider": "Service"}, "strategy": {"type": strategy.value}}
    assert bool(env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(spec)})) == (
        allowed
    )


@pytest.mark.parametrize(
    ("kind", "metric", "refused"),
    [
        ("Router", {"name": "agreement", "min": 0.97}, False),
        ("GatewayAPI", {"name": "agreement", "min": 0.97}, True),
        ("Service", {"name": "agreement", "min": 0.97}, True),
        (
            "GatewayAPI",
            {"name": "agree", "query": "sum(rate(serinus_shadow_requests_total[1m]))", "min": 1},
            True,
        ),
        ("GatewayAPI", {"name": "error-rate", "max": 0.01}, False),
        ("Service", {"name": "latency-p99", "max": 0.2}, False),
    ],
)
def test_check_analysis(kind: str, metric: dict[str, Any], refused: bool) -> None:
    message = make_provider(kind).check_analysis(kit.md("Router", metrics=[metric]).spec.analysis)
    if refused:
        assert message is not None
        assert metric["name"] in message
        assert "Router" in message
    else:
        assert message is None
    assert make_provider(kind).check_analysis(None) is None


def test_make_provider() -> None:
    assert isinstance(make_provider(TrafficProvider.ROUTER), RouterProvider)
    assert isinstance(make_provider("GatewayAPI"), GatewayAPIProvider)
    assert isinstance(make_provider(TrafficProvider.SERVICE), ServiceProvider)
    with pytest.raises(ValueError, match="unknown traffic provider 'Istio'"):
        make_provider("Istio")
    provider = make_provider("Router", port=9000, public_port=8000)
    svc, cm = provider.desired(kit.md(), Routes("a"))
    assert svc["spec"]["ports"][0]["port"] == 8000
    assert "fraud-a.ml.svc:9000" in cm["data"]["routes.json"]


# --- read on objects that do not describe the routes -----------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _table_edit(change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(obj: dict[str, Any]) -> None:
        if obj["kind"] == "ConfigMap":
            table = json.loads(obj["data"]["routes.json"])
            change(table)
            obj["data"]["routes.json"] = json.dumps(table)

    return edit


def _rule_edit(change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(obj: dict[str, Any]) -> None:
        change(obj["spec"]["rules"][0])

    return edit


def _drop_roles(obj: dict[str, Any]) -> None:
    obj["metadata"].pop("annotations", None)


BROKEN: list[tuple[str, str, Edit]] = [
    ("Router", "no roles", _drop_roles),
    ("Router", "invalid table", _table_edit(lambda t: t["revisions"]["9a1e"].update(weight=5))),
    (
        "Router",
        "unknown revision",
        _table_edit(lambda t: t["revisions"].update(zzz=t["revisions"].pop("9a1e"))),
    ),
    (
        "Router",
        "other port",
        _table_edit(lambda t: t["revisions"]["9a1e"].update(url="http://fraud-9a1e.ml.svc:9999")),
    ),
    (
        "Router",
        "shadow to stable",
        _table_edit(lambda t: t.update(shadow={"revision": "7f3c", "percent": 10})),
    ),
    (
        "Router",
        "fractional shadow",
        _table_edit(lambda t: t.update(shadow={"revision": "9a1e", "percent": 12.5})),
    ),
    (
        "Router",
        "not JSON",
        lambda o: (
            o.get("data", {}).update({"routes.json": "{"}) if o["kind"] == "ConfigMap" else None
        ),
    ),
    ("GatewayAPI", "no roles", _drop_roles),
    ("GatewayAPI", "weights not 100", _rule_edit(lambda r: r["backendRefs"][0].update(weight=1))),
    ("GatewayAPI", "weight defaulted", _rule_edit(lambda r: r["backendRefs"][0].pop("weight"))),
    ("GatewayAPI", "other port", _rule_edit(lambda r: r["backendRefs"][1].update(port=1))),
    ("GatewayAPI", "other kind", _rule_edit(lambda r: r["backendRefs"][1].update(kind="Pod"))),
    (
        "GatewayAPI",
        "unknown backend",
        _rule_edit(lambda r: r["backendRefs"][1].update(name="other-9a1e")),
    ),
    (
        "GatewayAPI",
        "duplicate backend",
        _rule_edit(lambda r: r["backendRefs"].append(dict(r["backendRefs"][1]))),
    ),
    (
        "GatewayAPI",
        "mirror elsewhere",
        _rule_edit(
            lambda r: r["filters"][0]["requestMirror"]["backendRef"].update(name="fraud-7f3c")
        ),
    ),
    ("GatewayAPI", "two rules", lambda o: o["spec"]["rules"].append(o["spec"]["rules"][0])),
    ("Service", "no roles", _drop_roles),
    (
        "Service",
        "unknown revision",
        lambda o: o["spec"]["selector"].update({"serinus.dev/revision": "zzz"}),
    ),
    ("Service", "router selector", lambda o: o["spec"].update(selector={"serinus.dev/model": "x"})),
]


@pytest.mark.parametrize(("kind", "what", "edit"), BROKEN, ids=[f"{k}-{w}" for k, w, _ in BROKEN])
def test_read_refuses_objects_that_do_not_describe_routes(kind: str, what: str, edit: Edit) -> None:
    provider, md = provider_and_md(kind)
    routes = Routes(
        "7f3c", "9a1e", 100 if kind == "Service" else 10, 0 if kind == "Service" else 30
    )
    objects = provider.desired(md, routes)
    assert provider.read(objects) == routes
    for obj in objects:
        edit(obj)
    assert provider.read(objects) is None


@pytest.mark.parametrize("kind", PROVIDERS)
def test_read_nothing_is_none(kind: str) -> None:
    provider, md = provider_and_md(kind)
    assert provider.read([]) is None
    objects = provider.desired(md, Routes("a"))
    assert provider.read(objects + copy.deepcopy(objects)) is None  # ambiguous: two of each


@pytest.mark.parametrize(
    ("mirror", "expected"),
    [
        ({"fraction": {"numerator": 1, "denominator": 4}}, 25),
        ({"fraction": {"numerator": 30}}, 30),
        ({"fraction": {"numerator": 1, "denominator": 3}}, None),
        ({}, 100),
    ],
)
def test_gateway_reads_mirror_fraction(mirror: dict[str, Any], expected: int | None) -> None:
    provider, md = provider_and_md("GatewayAPI")
    [route] = provider.desired(md, Routes("a", "b", 0, 50))
    request_mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    del request_mirror["percent"]
    request_mirror.update(mirror)
    found = provider.read([route])
    assert (None if found is None else found.mirror_percent) == expected

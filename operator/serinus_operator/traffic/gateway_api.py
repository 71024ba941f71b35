"""GatewayAPI provider: an ``HTTPRoute`` with weighted ``backendRefs`` per revision Service
and, for shadow, a ``RequestMirror`` filter.

There is **no agreement comparison** with this provider: a Gateway mirrors requests but
discards the mirrored responses, so nothing compares the candidate's predictions with the
stable's, and the ``agreement`` metric has no data. ``check_analysis`` says so.

Mirroring less than 100 % writes ``requestMirror.percent``, which is in the Gateway API
standard channel from v1.3 (experimental channel in v1.2); at 100 % the field is left out,
so full mirroring works on every version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from serinus_operator.api import AnalysisSpec, ModelDeployment, StrategySpec, StrategyType
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.httproute import HTTPROUTE_API_VERSION, http_route
from serinus_operator.resources.meta import MODEL_LABEL, REVISION_PORT
from serinus_operator.traffic._analysis import needs_router
from serinus_operator.traffic.base import (
    Routes,
    UnsupportedRoutes,
    find,
    mapping,
    roles,
    routes_or_none,
)


def _service_revision(ref: Mapping[str, Any], model: str, port: int) -> str | None:
    """The revision whose Service ``ref`` points at, on ``port``; else ``None``."""
    if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
        return None
    name, prefix = ref.get("name"), f"{model}-"
    if not isinstance(name, str) or not name.startswith(prefix) or ref.get("port") != port:
        return None
    if "namespace" in ref:
        return None
    return name[len(prefix) :]


def _mirror_percent(mirror: Mapping[str, Any]) -> int | None:
    percent, fraction = mirror.get("percent"), mirror.get("fraction")
    if percent is not None and fraction is not None:
        return None
    if fraction is not None:
        numerator = mapping(fraction).get("numerator")
        denominator = mapping(fraction).get("denominator", 100)
        if not isinstance(numerator, int) or not isinstance(denominator, int) or denominator < 1:
            return None
        if (numerator * 100) % denominator:
            return None
        return numerator * 100 // denominator
    if percent is None:
        return 100
    return percent if isinstance(percent, int) and not isinstance(percent, bool) else None


class GatewayAPIProvider:
    """Traffic split and mirroring by any Gateway API implementation."""

    kind = "GatewayAPI"

    def __init__(self, *, port: int = REVISION_PORT) -> None:
        self.port = port

    def check(self, strategy: StrategySpec | StrategyType) -> str | None:
        return None

    def check_analysis(self, analysis: AnalysisSpec | None) -> str | None:
        metric = needs_router(analysis)
        if metric is None:
            return None
        return (
            f"metric {metric!r} needs the serinus router's shadow comparison, which the "
            "GatewayAPI provider does not have (a Gateway discards mirrored responses): "
            "remove the metric or use traffic.provider Router"
        )

    def runtime(
        self, md: ModelDeployment, *, config: BuildConfig, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        return []  # the Gateway controller routes

    def desired(
        self, md: ModelDeployment, routes: Routes, *, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        gateway = md.spec.traffic.gateway_ref
        if gateway is None:
            raise UnsupportedRoutes(
                "spec.traffic.gatewayRef is required with provider GatewayAPI: name the Gateway"
            )
        return [
            http_route(
                md.name,
                md.namespace,
                gateway=gateway,
                weights=routes.weights,
                port=self.port,
                mirror=routes.mirror,
                mirror_percent=routes.mirror_percent,
                hostnames=md.spec.traffic.hostnames,
                annotations=routes.role_annotations,
                owner_uid=owner_uid,
            )
        ]

    def read(self, objects: Iterable[Mapping[str, Any]]) -> Routes | None:
        found = find(objects, api_version=HTTPROUTE_API_VERSION, kind="HTTPRoute")
        if len(found) != 1:
            return None
        route = found[0]
        named = roles(route)
        model = mapping(mapping(route.get("metadata")).get("labels")).get(MODEL_LABEL)
        rules = mapping(route.get("spec")).get("rules")
        if named is None or not isinstance(model, str) or not isinstance(rules, list):
            return None
        if len(rules) != 1:
            return None
        stable, candidate = named
        rule = mapping(rules[0])
        weights: dict[str, int] = {}
        for raw in rule.get("backendRefs") or []:
            ref = mapping(raw)
            revision = _service_revision(ref, model, self.port)
            weight = ref.get("weight", 1)
            if revision is None or revision in weights or not isinstance(weight, int):
                return None
            weights[revision] = weight
        if set(weights) != {stable} | ({candidate} if candidate else set()):
            return None
        if sum(weights.values()) != 100:
            return None
        mirrors = [
            mapping(mapping(f).get("requestMirror"))
            for f in rule.get("filters") or []
            if mapping(f).get("type") == "RequestMirror"
        ]
        mirror = 0
        if mirrors:
            if len(mirrors) > 1 or candidate is None:
                return None
            target = _service_revision(mapping(mirrors[0].get("backendRef")), model, self.port)
            percent = _mirror_percent(mirrors[0])
            if target != candidate or percent is None:
                return None
            mirror = percent
        weight = 0 if candidate is None else weights[candidate]
        return routes_or_none(stable, candidate, weight, mirror)

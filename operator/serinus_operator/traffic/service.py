"""Service provider: blue-green only, by switching the public Service's selector.

Objects: the public Service ``<name>``, selecting the pods of the *active* revision - the
stable one, or the candidate once it takes 100 %. No mesh and no router are involved, so
weights other than 0 and 100 and mirroring are impossible: ``check`` rejects the Canary and
Shadow strategies and ``desired`` refuses such routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from serinus_operator.api import (
    PROVIDER_STRATEGIES,
    AnalysisSpec,
    ModelDeployment,
    StrategySpec,
    StrategyType,
)
from serinus_operator.api import TrafficProvider as ApiProvider
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import MODEL_LABEL, PUBLIC_PORT, REVISION_LABEL
from serinus_operator.resources.services import public_service
from serinus_operator.traffic._analysis import needs_router
from serinus_operator.traffic.base import (
    Routes,
    UnsupportedRoutes,
    find,
    mapping,
    roles,
    routes_or_none,
    strategy_type,
)

#: The strategies a selector switch can run (they never split or mirror live traffic):
#: ``api.PROVIDER_STRATEGIES``, the one statement of this fact.
STRATEGIES: frozenset[StrategyType] = PROVIDER_STRATEGIES[ApiProvider.SERVICE]


class ServiceProvider:
    """Blue-green by a Service selector: no split, no mirror, no extra component."""

    kind = "Service"
    strategies = STRATEGIES

    def __init__(self, *, public_port: int = PUBLIC_PORT) -> None:
        self.public_port = public_port

    def check(self, strategy: StrategySpec | StrategyType) -> str | None:
        kind = strategy_type(strategy)
        if kind in self.strategies:
            return None
        allowed = " or ".join(sorted(s.value for s in self.strategies))
        return (
            f"traffic.provider Service switches a Service selector and cannot split or mirror "
            f"traffic, which strategy {kind} needs: use strategy.type {allowed}, or "
            "traffic.provider Router or GatewayAPI"
        )

    def check_analysis(self, analysis: AnalysisSpec | None) -> str | None:
        metric = needs_router(analysis)
        if metric is None:
            return None
        return (
            f"metric {metric!r} needs the serinus router's shadow comparison, which the "
            "Service provider does not have: remove the metric or use traffic.provider Router"
        )

    @staticmethod
    def active(routes: Routes) -> str:
        """The revision the public Service selects; raises for a split or a mirror."""
        if routes.mirror_percent:
            raise UnsupportedRoutes(
                f"traffic.provider Service cannot mirror traffic ({routes.mirror_percent}% "
                "asked): use Router or GatewayAPI"
            )
        if routes.candidate_weight == 0:
            return routes.stable
        if routes.candidate_weight == 100 and routes.candidate is not None:
            return routes.candidate
        raise UnsupportedRoutes(
            f"traffic.provider Service sends all traffic to one revision and cannot send "
            f"{routes.candidate_weight}% to the candidate: use Router or GatewayAPI"
        )

    def runtime(
        self, md: ModelDeployment, *, config: BuildConfig, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        return []  # the Service routes itself

    def desired(
        self, md: ModelDeployment, routes: Routes, *, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            public_service(
                md.name,
                md.namespace,
                revision=self.active(routes),
                port=self.public_port,
                annotations=routes.role_annotations,
                owner_uid=owner_uid,
            )
        ]

    def read(self, objects: Iterable[Mapping[str, Any]]) -> Routes | None:
        public = []
        for svc in find(objects, api_version="v1", kind="Service"):
            meta = mapping(svc.get("metadata"))
            if meta.get("name") == mapping(meta.get("labels")).get(MODEL_LABEL):
                public.append(svc)
        if len(public) != 1:
            return None
        named = roles(public[0])
        selector = mapping(mapping(public[0].get("spec")).get("selector"))
        model = mapping(mapping(public[0].get("metadata")).get("labels")).get(MODEL_LABEL)
        if named is None or selector.get(MODEL_LABEL) != model:
            return None
        stable, candidate = named
        active = selector.get(REVISION_LABEL)
        if active == stable:
            return routes_or_none(stable, candidate, 0, 0)
        if candidate is not None and active == candidate:
            return routes_or_none(stable, candidate, 100, 0)
        return None

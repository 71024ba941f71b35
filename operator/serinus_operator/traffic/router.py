"""Router provider (the default): the serinus router reads its routing table from a
ConfigMap, through the API, and applies changes within a second.

Objects: the public Service ``<name>`` (selecting the router pods) and the ConfigMap
``<name>-routes`` whose ``routes.json`` is the routing table of ``docs/traffic.md``. Shadow
is ``table.shadow`` with ``percent``; the router compares the two predictions, which feeds
the ``agreement`` metric. It runs every strategy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from serinus_operator.api import AnalysisSpec, ModelDeployment, StrategySpec, StrategyType
from serinus_operator.resources.meta import PUBLIC_PORT, REVISION_PORT, ROUTES_KEY, routes_name
from serinus_operator.resources.routing import backend_url, routing_configmap, routing_table
from serinus_operator.resources.services import public_service
from serinus_operator.traffic.base import Routes, find, mapping, roles, routes_or_none
from serinus_serving.router.table import TableError, parse_table


class RouterProvider:
    """Weighted split, header pinning and shadow with comparison, by the serinus router."""

    kind = "Router"

    def __init__(self, *, port: int = REVISION_PORT, public_port: int = PUBLIC_PORT) -> None:
        self.port = port
        self.public_port = public_port

    def check(self, strategy: StrategySpec | StrategyType) -> str | None:
        return None

    def check_analysis(self, analysis: AnalysisSpec | None) -> str | None:
        return None

    def table(self, md: ModelDeployment, routes: Routes) -> dict[str, Any]:
        """The routing table for ``routes``."""
        return routing_table(
            md.name,
            md.namespace,
            weights=routes.weights,
            port=self.port,
            shadow=routes.mirror,
            shadow_percent=routes.mirror_percent,
        )

    def desired(
        self, md: ModelDeployment, routes: Routes, *, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            public_service(md.name, md.namespace, port=self.public_port, owner_uid=owner_uid),
            routing_configmap(
                md.name,
                md.namespace,
                table=self.table(md, routes),
                annotations=routes.role_annotations,
                owner_uid=owner_uid,
            ),
        ]

    def read(self, objects: Iterable[Mapping[str, Any]]) -> Routes | None:
        found = [
            cm
            for cm in find(objects, api_version="v1", kind="ConfigMap")
            if ROUTES_KEY in mapping(cm.get("data"))
        ]
        if len(found) != 1:
            return None
        configmap = found[0]
        named = roles(configmap)
        raw = configmap["data"][ROUTES_KEY]
        if named is None or not isinstance(raw, str):
            return None
        try:
            table = parse_table(raw)
        except TableError:
            return None
        stable, candidate = named
        meta = mapping(configmap.get("metadata"))
        namespace = meta.get("namespace")
        if meta.get("name") != routes_name(table.model) or not isinstance(namespace, str):
            return None
        if set(table.backends) != {stable} | ({candidate} if candidate else set()):
            return None
        for revision, backend in table.backends.items():
            if backend.url != backend_url(table.model, namespace, revision, port=self.port):
                return None
        mirror = 0
        if table.shadow is not None:
            if table.shadow.revision != candidate or not table.shadow.percent.is_integer():
                return None
            mirror = int(table.shadow.percent)
        weight = 0 if candidate is None else table.backends[candidate].weight
        return routes_or_none(stable, candidate, weight, mirror)

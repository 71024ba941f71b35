"""Router provider (the default): the serinus router reads its routing table from a
ConfigMap, through the API, and applies changes within a second.

Objects: the public Service ``<name>`` (selecting the router pods) and the ConfigMap
``<name>-routes`` whose ``routes.json`` is the routing table of ``docs/traffic.md``. Shadow
is ``table.shadow`` with ``percent``; the router compares the two predictions, which feeds
the ``agreement`` metric. It runs every strategy.

The table is the contract between the operator and the router: the operator writes it with
``resources.routing.routing_table`` and reads it back here as plain JSON, never through the
router's code (``serinus_serving.router.table``); the unit tests check that the router parses
every table the operator writes, and that ``read`` accepts nothing the router would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from serinus_operator.api import AnalysisSpec, ModelDeployment, StrategySpec, StrategyType
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import PUBLIC_PORT, REVISION_PORT, ROUTES_KEY, routes_name
from serinus_operator.resources.router import router_disruption_budget, router_objects
from serinus_operator.resources.routing import routing_configmap, routing_table
from serinus_operator.resources.services import public_service
from serinus_operator.traffic.base import Routes, find, mapping, roles, routes_or_none


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
        return self._table(md.name, md.namespace, routes)

    def _table(self, name: str, namespace: str, routes: Routes) -> dict[str, Any]:
        return routing_table(
            name,
            namespace,
            weights=routes.weights,
            port=self.port,
            shadow=routes.mirror,
            shadow_percent=routes.mirror_percent,
        )

    def runtime(
        self, md: ModelDeployment, *, config: BuildConfig, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            *router_objects(md.name, md.namespace, config=config, owner_uid=owner_uid),
            router_disruption_budget(md.name, md.namespace, owner_uid=owner_uid),
        ]

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
        """The routes of the one routes ConfigMap in ``objects``: the weights and shadow of its
        table, the roles of its annotations, and only if the table is exactly the one
        ``desired`` writes for those routes (so the router accepts it and steers by it)."""
        found = [
            cm
            for cm in find(objects, api_version="v1", kind="ConfigMap")
            if ROUTES_KEY in mapping(cm.get("data"))
        ]
        if len(found) != 1:
            return None
        configmap = found[0]
        named = roles(configmap)
        table = _json_object(configmap["data"][ROUTES_KEY])
        meta = mapping(configmap.get("metadata"))
        model, namespace = table.get("model"), meta.get("namespace")
        if named is None or not isinstance(model, str) or not isinstance(namespace, str):
            return None
        if meta.get("name") != routes_name(model):
            return None
        stable, candidate = named
        routes = routes_or_none(
            stable, candidate, _weight(table, candidate), _shadow_percent(table)
        )
        if routes is None or _canonical(table) != _canonical(self._table(model, namespace, routes)):
            return None
        return routes


def _canonical(table: Mapping[str, Any]) -> str:
    """The table as JSON in one spelling: ``1``, ``1.0`` and ``true`` stay different."""
    return json.dumps(table, sort_keys=True)


def _json_object(raw: object) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or an empty one."""
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _weight(table: Mapping[str, Any], candidate: str | None) -> Any:
    """The candidate's weight as the table gives it (``Routes`` checks it)."""
    if candidate is None:
        return 0
    return mapping(mapping(table.get("revisions")).get(candidate)).get("weight")


def _shadow_percent(table: Mapping[str, Any]) -> Any:
    """The shadow's percent as the table gives it (``Routes`` checks it), 0 without one."""
    if "shadow" not in table:
        return 0
    return mapping(table["shadow"]).get("percent")

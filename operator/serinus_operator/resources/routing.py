"""The serinus router's routing table and the ConfigMap that carries it.

The table is the JSON format of ``docs/traffic.md``: a wire format, the contract with the
router, which parses it with its own code (``serinus_serving.router.table``; the operator does
not import it, ``tests/unit/traffic/test_router_contract.py`` checks that both sides agree).
The router watches the ConfigMap through the API, so a change applies within a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from serinus_operator.resources.meta import (
    COMPONENT_TRAFFIC,
    ROUTES_KEY,
    labels,
    object_meta,
    revision_name,
    routes_name,
)


def backend_url(md_name: str, namespace: str, revision: str, *, port: int) -> str:
    """``http://<name>-<revision>.<namespace>.svc:<port>``: a revision's Service."""
    return f"http://{revision_name(md_name, revision)}.{namespace}.svc:{port}"


def routing_table(
    md_name: str,
    namespace: str,
    *,
    weights: Mapping[str, int],
    port: int,
    shadow: str | None = None,
    shadow_percent: int = 100,
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The routing table: ``weights`` maps revision to percent (adding up to 100), in the
    order given; ``shadow`` names the revision that receives ``shadow_percent`` % copies."""
    revisions: dict[str, Any] = {}
    for revision, weight in weights.items():
        entry: dict[str, Any] = {
            "url": backend_url(md_name, namespace, revision, port=port),
            "weight": weight,
        }
        if versions and revision in versions:
            entry["version"] = versions[revision]
        revisions[revision] = entry
    table: dict[str, Any] = {"model": md_name, "revisions": revisions}
    if shadow is not None:
        table["shadow"] = {"revision": shadow, "percent": shadow_percent}
    return table


def routing_configmap(
    md_name: str,
    namespace: str,
    *,
    table: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """ConfigMap ``<name>-routes`` with the table as JSON under ``routes.json``.

    The JSON is deterministic (same table, same bytes), so re-applying an unchanged table
    is a no-op for the API server and for the router.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            routes_name(md_name),
            namespace,
            labels=labels(md_name, component=COMPONENT_TRAFFIC),
            annotations=annotations,
            owner=None if owner_uid is None else (md_name, owner_uid),
        ),
        "data": {ROUTES_KEY: json.dumps(table, indent=2) + "\n"},
    }

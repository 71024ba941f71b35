"""Names, labels, selectors and owner references shared by every child object.

Every builder in this package is pure: it returns a plain ``dict`` ready for the API
server, and never talks to one. The executor (``platforms/kubernetes.py``) applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from serinus_operator.api import GROUP, KIND, VERSION

MODEL_LABEL: Final = f"{GROUP}/model"
REVISION_LABEL: Final = f"{GROUP}/revision"
STABLE_ANNOTATION: Final = f"{GROUP}/stable"
CANDIDATE_ANNOTATION: Final = f"{GROUP}/candidate"

MANAGED_BY: Final = "serinus"
PART_OF: Final = "serinus"

COMPONENT_SERVER: Final = "server"  # a revision's serving pods and their Service
COMPONENT_ROUTER: Final = "router"  # the serinus router's pods
COMPONENT_TRAFFIC: Final = "traffic"  # the public Service, routing table, HTTPRoute

#: The name of the container port that serving and router pods expose; Services target it
#: by name, so a Service never needs to know the container's port number.
HTTP_PORT_NAME: Final = "http"
#: The port of each revision's Service (``<name>-<revision>``).
REVISION_PORT: Final = 8080
#: The port of the public Service (``<name>``) that clients call.
PUBLIC_PORT: Final = 80
#: The ConfigMap key holding the router's routing table.
ROUTES_KEY: Final = "routes.json"


def revision_name(md_name: str, revision: str) -> str:
    """``<name>-<revision>``: the Deployment and Service of one revision."""
    return f"{md_name}-{revision}"


def routes_name(md_name: str) -> str:
    """``<name>-routes``: the router's routing-table ConfigMap."""
    return f"{md_name}-routes"


def labels(
    md_name: str, *, component: str, revision: str | None = None, instance: str | None = None
) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels plus ``serinus.dev/model`` and, for a
    revision's objects, ``serinus.dev/revision``."""
    out = {
        "app.kubernetes.io/name": md_name,
        "app.kubernetes.io/instance": instance
        or (md_name if revision is None else revision_name(md_name, revision)),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        MODEL_LABEL: md_name,
    }
    if revision is not None:
        out[REVISION_LABEL] = revision
    return out


def revision_selector(md_name: str, revision: str) -> dict[str, str]:
    """Selects the serving pods of one revision (and only those: router pods carry no
    ``serinus.dev/revision`` label)."""
    return {MODEL_LABEL: md_name, REVISION_LABEL: revision}


def router_selector(md_name: str) -> dict[str, str]:
    """Selects the serinus router pods of one ModelDeployment."""
    return {MODEL_LABEL: md_name, "app.kubernetes.io/component": COMPONENT_ROUTER}


def owner_reference(md_name: str, uid: str) -> dict[str, Any]:
    """The ownerReference that makes a child go away with its ModelDeployment."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": md_name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    name: str,
    namespace: str,
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """``metadata`` with labels, optional annotations and, given ``(md_name, uid)``, the
    owner reference."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(*owner)]
    return meta

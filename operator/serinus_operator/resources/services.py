"""Services: one per revision, and the public one that clients call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serinus_operator.resources.meta import (
    COMPONENT_SERVER,
    COMPONENT_TRAFFIC,
    HTTP_PORT_NAME,
    PUBLIC_PORT,
    labels,
    object_meta,
    revision_name,
    revision_selector,
    router_selector,
)


def _service(meta: dict[str, Any], selector: Mapping[str, str], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": port,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def revision_service(
    md_name: str,
    namespace: str,
    revision: str,
    *,
    port: int,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """Service ``<name>-<revision>`` in front of one revision's serving pods.

    It listens on ``port`` and targets the pods' container port named ``http``; the router
    and the HTTPRoute address revisions through it.
    """
    meta = object_meta(
        revision_name(md_name, revision),
        namespace,
        labels=labels(md_name, component=COMPONENT_SERVER, revision=revision),
        owner=None if owner_uid is None else (md_name, owner_uid),
    )
    return _service(meta, revision_selector(md_name, revision), port)


def public_service(
    md_name: str,
    namespace: str,
    *,
    revision: str | None = None,
    port: int = PUBLIC_PORT,
    annotations: Mapping[str, str] | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """Service ``<name>``, the address clients call.

    With ``revision=None`` it selects the serinus router pods (Router provider); with a
    revision it selects that revision's serving pods directly (Service provider: a
    blue-green switch is a change of this selector).
    """
    meta = object_meta(
        md_name,
        namespace,
        labels=labels(md_name, component=COMPONENT_TRAFFIC),
        annotations=annotations,
        owner=None if owner_uid is None else (md_name, owner_uid),
    )
    selector = (
        router_selector(md_name) if revision is None else revision_selector(md_name, revision)
    )
    return _service(meta, selector, port)

"""Gateway API ``HTTPRoute`` (``gateway.networking.k8s.io/v1``) for the GatewayAPI provider."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from serinus_operator.api import GatewayRef
from serinus_operator.resources.meta import (
    COMPONENT_TRAFFIC,
    labels,
    object_meta,
    revision_name,
)

GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
HTTPROUTE_API_VERSION: Final = f"{GATEWAY_GROUP}/v1"


def service_backend_ref(md_name: str, revision: str, *, port: int) -> dict[str, Any]:
    """A ``BackendObjectReference`` to the revision's Service (group and kind explicit)."""
    return {"group": "", "kind": "Service", "name": revision_name(md_name, revision), "port": port}


def parent_ref(gateway: GatewayRef) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace is not None:
        ref["namespace"] = gateway.namespace
    if gateway.section_name is not None:
        ref["sectionName"] = gateway.section_name
    return ref


def http_route(
    md_name: str,
    namespace: str,
    *,
    gateway: GatewayRef,
    weights: Mapping[str, int],
    port: int,
    mirror: str | None = None,
    mirror_percent: int = 100,
    hostnames: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """HTTPRoute ``<name>``: one rule whose ``backendRefs`` split traffic by ``weights``
    (revision -> weight, in the order given) between the revisions' Services, and, with
    ``mirror``, a ``RequestMirror`` filter copying ``mirror_percent`` % of requests to that
    revision.

    ``percent`` is written only below 100: an absent ``percent`` mirrors everything, which
    every Gateway API version accepts, while ``percent`` itself is in the standard channel
    from Gateway API v1.3 (experimental in v1.2).
    """
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [
            {**service_backend_ref(md_name, revision, port=port), "weight": weight}
            for revision, weight in weights.items()
        ],
    }
    if mirror is not None:
        request_mirror: dict[str, Any] = {
            "backendRef": service_backend_ref(md_name, mirror, port=port)
        }
        if mirror_percent < 100:
            request_mirror["percent"] = mirror_percent
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": request_mirror}]
    spec: dict[str, Any] = {"parentRefs": [parent_ref(gateway)]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    spec["rules"] = [rule]
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": object_meta(
            md_name,
            namespace,
            labels=labels(md_name, component=COMPONENT_TRAFFIC),
            annotations=annotations,
            owner=None if owner_uid is None else (md_name, owner_uid),
        ),
        "spec": spec,
    }

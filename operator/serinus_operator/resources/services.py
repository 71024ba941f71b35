"""Services: one per revision, the public one that clients call, and one per role.

The role Services ``<name>-stable`` and ``<name>-candidate`` select whichever revision has
that role now, so that a load test, a dashboard or a person can address "the candidate"
without knowing its revision hash (``fraud-candidate.ml:8080``). They listen on the port of
the revision Services; the operator moves their selectors with every traffic change and
deletes ``<name>-candidate`` when there is no candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from serinus_operator.api import GROUP
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

STABLE_ROLE: Final = "stable"
CANDIDATE_ROLE: Final = "candidate"
ROLES: Final = (STABLE_ROLE, CANDIDATE_ROLE)
#: On a role Service: the role it stands for (``stable`` or ``candidate``).
ROLE_LABEL: Final = f"{GROUP}/role"


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


def role_service_name(md_name: str, role: str) -> str:
    """``<name>-stable`` or ``<name>-candidate``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return f"{md_name}-{role}"


def role_service(
    md_name: str,
    namespace: str,
    role: str,
    revision: str,
    *,
    port: int,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """Service ``<name>-<role>`` selecting the serving pods of ``revision``, the one that has
    ``role`` (``stable`` or ``candidate``) now; ports as the revision Services'."""
    service_labels = labels(md_name, component=COMPONENT_TRAFFIC)
    service_labels[ROLE_LABEL] = role
    meta = object_meta(
        role_service_name(md_name, role),
        namespace,
        labels=service_labels,
        owner=None if owner_uid is None else (md_name, owner_uid),
    )
    return _service(meta, revision_selector(md_name, revision), port)

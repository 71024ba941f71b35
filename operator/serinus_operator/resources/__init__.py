"""Pure builders for the Kubernetes objects the operator creates: plain dicts, no I/O."""

from serinus_operator.resources.httproute import http_route, parent_ref, service_backend_ref
from serinus_operator.resources.meta import (
    CANDIDATE_ANNOTATION,
    HTTP_PORT_NAME,
    MODEL_LABEL,
    PUBLIC_PORT,
    REVISION_LABEL,
    REVISION_PORT,
    ROUTES_KEY,
    STABLE_ANNOTATION,
    labels,
    object_meta,
    owner_reference,
    revision_name,
    revision_selector,
    router_selector,
    routes_name,
)
from serinus_operator.resources.routing import backend_url, routing_configmap, routing_table
from serinus_operator.resources.services import public_service, revision_service

__all__ = [
    "CANDIDATE_ANNOTATION",
    "HTTP_PORT_NAME",
    "MODEL_LABEL",
    "PUBLIC_PORT",
    "REVISION_LABEL",
    "REVISION_PORT",
    "ROUTES_KEY",
    "STABLE_ANNOTATION",
    "backend_url",
    "http_route",
    "labels",
    "object_meta",
    "owner_reference",
    "parent_ref",
    "public_service",
    "revision_name",
    "revision_selector",
    "revision_service",
    "router_selector",
    "routes_name",
    "routing_configmap",
    "routing_table",
    "service_backend_ref",
]

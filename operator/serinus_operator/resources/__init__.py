"""Pure builders for the Kubernetes objects the operator creates: plain dicts, no I/O."""

from serinus_operator.resources.config import DEFAULT_IMAGE, BuildConfig
from serinus_operator.resources.deployments import (
    RevisionTemplate,
    revision_deployment,
    serve_args,
)
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
from serinus_operator.resources.router import (
    router_args,
    router_deployment,
    router_disruption_budget,
    router_name,
    router_objects,
    router_role,
    router_role_binding,
    router_service_account,
)
from serinus_operator.resources.routing import backend_url, routing_configmap, routing_table
from serinus_operator.resources.services import public_service, revision_service

__all__ = [
    "CANDIDATE_ANNOTATION",
    "DEFAULT_IMAGE",
    "HTTP_PORT_NAME",
    "MODEL_LABEL",
    "PUBLIC_PORT",
    "REVISION_LABEL",
    "REVISION_PORT",
    "ROUTES_KEY",
    "STABLE_ANNOTATION",
    "BuildConfig",
    "RevisionTemplate",
    "backend_url",
    "http_route",
    "labels",
    "object_meta",
    "owner_reference",
    "parent_ref",
    "public_service",
    "revision_deployment",
    "revision_name",
    "revision_selector",
    "revision_service",
    "router_args",
    "router_deployment",
    "router_disruption_budget",
    "router_name",
    "router_objects",
    "router_role",
    "router_role_binding",
    "router_selector",
    "router_service_account",
    "routes_name",
    "routing_configmap",
    "routing_table",
    "serve_args",
    "service_backend_ref",
]

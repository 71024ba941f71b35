"""Helpers for the traffic tests: ModelDeployments, and validators for every object kind.

Core objects (Service, ConfigMap) are validated by ``kubernetes-validate`` in strict mode
against Kubernetes 1.37. ``kubernetes-validate`` ships no Gateway API schemas (it raises
``SchemaNotFoundError`` for ``gateway.networking.k8s.io/v1``), no pip package ships the
Gateway API CRDs, and no network is reachable at test time. So HTTPRoutes are checked
against a schema written here for the part of ``gateway.networking.k8s.io/v1`` HTTPRoute
that Serinus writes (parentRefs, hostnames, rules with backendRefs and a RequestMirror
filter), with unknown fields rejected as strict field validation does, plus the API's rules
that a schema cannot express (a Service backend needs a port; ``percent`` and ``fraction``
exclude each other). ``metadata`` goes through ``kubernetes-validate``'s ObjectMeta. This is
weaker than the real CRD, which the integration tests install on their real API server
(``hack/kube/gateway-api.sh`` takes it from the ``sigs.k8s.io/gateway-api`` Go module at
build time), so the HTTPRoutes the operator writes there meet the real schema and CEL rules.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema
import kubernetes_validate

from serinus_operator import api

K8S_VERSION = "1.37"


# --- ModelDeployments ------------------------------------------------------------------------

STRATEGIES: dict[str, dict[str, Any]] = {
    "Canary": {"type": "Canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}},
    "Shadow": {"type": "Shadow", "shadow": {"mirrorPercent": 50}},
    "BlueGreen": {"type": "BlueGreen"},
}


def md(
    provider: str = "Router",
    *,
    name: str = "fraud",
    namespace: str = "ml",
    strategy: str | None = None,
    hostnames: tuple[str, ...] = (),
    gateway: Mapping[str, str] | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> api.ModelDeployment:
    """A parsed ModelDeployment using ``provider``."""
    traffic: dict[str, Any] = {"provider": provider}
    if provider == "GatewayAPI":
        traffic["gatewayRef"] = dict(gateway or {"name": "public", "namespace": "gateways"})
    if hostnames:
        traffic["hostnames"] = list(hostnames)
    kind = strategy or ("BlueGreen" if provider == "Service" else "Canary")
    spec: dict[str, Any] = {
        "model": {"uri": "https://models.example/fraud-v7.onnx", "version": "v7"},
        "strategy": STRATEGIES[kind],
        "traffic": traffic,
    }
    if metrics:
        spec["analysis"] = {"metrics": metrics}
    return api.parse(
        {
            "apiVersion": "serinus.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": spec,
        }
    )


# --- core objects ----------------------------------------------------------------------------


def k8s_validate(obj: Mapping[str, Any]) -> None:
    """``kubernetes-validate --strict`` for one object; raises on any mistake."""
    kubernetes_validate.validate(dict(obj), K8S_VERSION, strict=True)


# --- Gateway API -----------------------------------------------------------------------------

_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_HOSTNAME = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_BACKEND_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "group": {"type": "string", "maxLength": 253},
        "kind": {"type": "string", "minLength": 1, "maxLength": 63},
        "name": _NAME,
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    },
}
_MIRROR_REF = {
    **_BACKEND_REF,
    "properties": {k: v for k, v in _BACKEND_REF["properties"].items() if k != "weight"},
}
_FILTER = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["RequestMirror"]},
        "requestMirror": {
            "type": "object",
            "required": ["backendRef"],
            "additionalProperties": False,
            "properties": {
                "backendRef": _MIRROR_REF,
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "fraction": {
                    "type": "object",
                    "required": ["numerator"],
                    "additionalProperties": False,
                    "properties": {
                        "numerator": {"type": "integer", "minimum": 0},
                        "denominator": {"type": "integer", "minimum": 1},
                    },
                },
            },
        },
    },
}
_MATCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                "value": {"type": "string", "maxLength": 1024},
            },
        }
    },
}
HTTPROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object"},
        "status": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["rules"],
            "additionalProperties": False,
            "properties": {
                "parentRefs": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "group": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": _NAME,
                            "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
                            "sectionName": {"type": "string", "minLength": 1, "maxLength": 253},
                            "port": _PORT,
                        },
                    },
                },
                "hostnames": {"type": "array", "maxItems": 16, "items": _HOSTNAME},
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matches": {"type": "array", "maxItems": 64, "items": _MATCH},
                            "filters": {"type": "array", "maxItems": 16, "items": _FILTER},
                            "backendRefs": {
                                "type": "array",
                                "maxItems": 16,
                                "items": _BACKEND_REF,
                            },
                        },
                    },
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft7Validator(HTTPROUTE_SCHEMA)


def _backend_rules(ref: Mapping[str, Any], where: str) -> list[str]:
    is_service = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
    return [f"{where}: a Service backend needs a port"] if is_service and "port" not in ref else []


def httproute_errors(obj: Mapping[str, Any]) -> list[str]:
    """Every violation of ``obj`` against the schema above and the API's extra rules."""
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _VALIDATOR.iter_errors(obj)
    ]
    if errors:
        return errors
    for i, rule in enumerate(obj["spec"]["rules"]):
        for j, ref in enumerate(rule.get("backendRefs", [])):
            errors += _backend_rules(ref, f"rules[{i}].backendRefs[{j}]")
        for j, flt in enumerate(rule.get("filters", [])):
            mirror = flt.get("requestMirror")
            if flt["type"] == "RequestMirror" and mirror is None:
                errors.append(f"rules[{i}].filters[{j}]: RequestMirror needs requestMirror")
            if mirror is not None:
                errors += _backend_rules(mirror["backendRef"], f"rules[{i}].filters[{j}]")
                if "percent" in mirror and "fraction" in mirror:
                    errors.append(
                        f"rules[{i}].filters[{j}]: percent and fraction exclude each other"
                    )
    return errors


def server_defaults(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What an API server adds to an HTTPRoute on create: group/kind of refs, weights, and
    the catch-all path match."""
    out: dict[str, Any] = copy.deepcopy(dict(obj))
    for ref in out["spec"].get("parentRefs", []):
        ref.setdefault("group", "gateway.networking.k8s.io")
        ref.setdefault("kind", "Gateway")
    for rule in out["spec"]["rules"]:
        rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
        for ref in rule.get("backendRefs", []):
            ref.setdefault("group", "")
            ref.setdefault("kind", "Service")
            ref.setdefault("weight", 1)
        for flt in rule.get("filters", []):
            mirror_ref = flt.get("requestMirror", {}).get("backendRef")
            if mirror_ref is not None:
                mirror_ref.setdefault("group", "")
                mirror_ref.setdefault("kind", "Service")
    return out


def validate_any(obj: Mapping[str, Any]) -> None:
    """Validate a core object with kubernetes-validate, an HTTPRoute with the schema above."""
    if obj["apiVersion"].startswith("gateway.networking.k8s.io/"):
        assert obj["kind"] == "HTTPRoute"
        k8s_validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})
        errors = httproute_errors(obj)
        assert not errors, errors
    else:
        k8s_validate(obj)

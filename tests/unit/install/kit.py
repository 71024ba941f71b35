"""Helpers for the install tests: render the Helm chart offline, validate what it renders.

The chart renders in-process with ``helm-python-sdk`` (Helm's Go SDK behind a C ABI: no
helm binary, no cluster), which also applies ``values.schema.json`` as ``helm install`` does.

Core objects are validated by ``kubernetes-validate`` in strict mode. It ships no schemas for
custom resources, and nothing installable here ships the Prometheus Operator's CRDs, so
ServiceMonitor, PodMonitor and PrometheusRule are checked against schemas written here for
the part of ``monitoring.coreos.com/v1`` the chart writes, with unknown fields rejected as
strict field validation does; kopf's peering objects against the chart's own CRD. Their
``metadata`` goes through ``kubernetes-validate``'s ObjectMeta. This is weaker than a real
API server with those CRDs installed: the opt-in e2e suite installs the chart for real.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import yaml

from unit.traffic.kit import k8s_validate

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "serinus"
RELEASE = "serinus"
NAMESPACE = "serinus-system"


def render(values: Mapping[str, Any] | None = None, *, name: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart's templates render for ``values`` (CRDs not included)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(
            values=dict(values or {}), name=name, namespace=NAMESPACE, is_install=True
        )
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def notes(values: Mapping[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values=dict(values or {}), name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the chart installs from its crds/ folder."""
    with helm.Chart.load(CHART) as chart:
        files = chart.crds
    return [doc for f in files for doc in yaml.safe_load_all(f["data"]) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


# --- custom resources ------------------------------------------------------------------------

_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    r"(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _LABELS,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
    },
}


def _monitor(endpoints_key: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["selector", endpoints_key],
        "additionalProperties": False,
        "properties": {
            "selector": _SELECTOR,
            "namespaceSelector": _NAMESPACE_SELECTOR,
            endpoints_key: {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
    }


_RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _LABELS,
        "annotations": _LABELS,
    },
}
_RULES_SPEC = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "rules"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": _DURATION,
                    "rules": {"type": "array", "items": _RULE},
                },
            },
        }
    },
}
_PEERING_SPEC: dict[str, Any] = {"type": "object"}

SPEC_SCHEMAS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _monitor("endpoints"),
    ("monitoring.coreos.com/v1", "PodMonitor"): _monitor("podMetricsEndpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _RULES_SPEC,
}
#: kopf peering objects carry no spec; the chart's CRD accepts only ``status``.
PEERING_KINDS = {("kopf.dev/v1", "ClusterKopfPeering"), ("kopf.dev/v1", "KopfPeering")}


def custom_resource_errors(obj: Mapping[str, Any]) -> list[str]:
    key = (obj["apiVersion"], obj["kind"])
    top = set(obj) - {"apiVersion", "kind", "metadata"}
    if key in PEERING_KINDS:
        return [f"unexpected field {f}" for f in sorted(top - {"status"})]
    schema = SPEC_SCHEMAS[key]
    errors = [f"unexpected field {f}" for f in sorted(top - {"spec"})]
    if "spec" not in obj:
        return [*errors, "no spec"]
    validator = jsonschema.Draft7Validator(schema)
    return errors + [
        f"spec.{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(obj["spec"])
    ]


def validate(obj: Mapping[str, Any]) -> None:
    """``kubernetes-validate --strict`` for core objects, the schemas above for the others."""
    key = (obj["apiVersion"], obj["kind"])
    if key in SPEC_SCHEMAS or key in PEERING_KINDS:
        k8s_validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})
        errors = custom_resource_errors(obj)
        assert not errors, f"{obj['kind']} {obj['metadata'].get('name')}: {errors}"
    else:
        k8s_validate(obj)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())

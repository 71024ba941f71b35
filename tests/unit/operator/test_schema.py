"""The CRD's schema and the API's dataclasses describe the same fields: one is never edited alone.

``walk`` lays the dataclasses' wire fields (``api.wire``: camelCase names, ``wire(...)``
metadata) over the CRD's ``openAPIV3Schema``, key by key, both ways: a field on one side
only, a different JSON type, enum, bound, default or required-ness is a problem. The spec is
held to all of that; the status (written only by the operator) to keys, types and enums.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from serinus_operator import api
from serinus_operator.api import wire
from serinus_operator.rollout.status import RolloutStatus, Traffic
from unit.operator.kit import openapi_schema

pytestmark = pytest.mark.unit

#: CRD properties no dataclass field writes, and why.
ONLY_IN_CRD: dict[str, str] = {
    "status.pendingEvents": "the outbox (outbox.py) writes it next to the rollout's status",
}
JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass
class Key:
    """One key of an object on the wire: the field written there and/or keys nested in it."""

    slot: wire.Slot | None = None
    nested: dict[str, Key] = field(default_factory=dict)


def keys(cls: type) -> dict[str, Key]:
    tree: dict[str, Key] = {}
    for slot in wire.slots(cls):
        if slot.meta.inline:
            tree.update(keys(slot.hint))
            continue
        node = tree
        for part in slot.parts[:-1]:
            node = node.setdefault(part, Key()).nested
        node.setdefault(slot.parts[-1], Key()).slot = slot
    return tree


def walk(cls: type, node: Mapping[str, Any], path: str, spec: bool) -> Iterator[str]:
    """Every disagreement between dataclass ``cls`` and the CRD's schema ``node``."""
    yield from _object(keys(cls), node, path, spec, cls.__name__)


def _object(
    tree: dict[str, Key], node: Mapping[str, Any], path: str, spec: bool, owner: str
) -> Iterator[str]:
    if node.get("type") != "object":
        yield f"{path}: {owner} writes an object, the CRD says {node.get('type')}"
        return
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return  # kept as is, e.g. a revision's template (the spec's own schema checks it)
    props = node.get("properties", {})
    for key in props.keys() - tree.keys():
        if f"{path}.{key}" not in ONLY_IN_CRD:
            yield f"{path}.{key}: in the CRD, but no field of {owner} is written there"
    for key, entry in tree.items():
        where = f"{path}.{key}"
        if key not in props:
            yield f"{where}: {owner} has it, the CRD does not"
            continue
        if entry.slot is not None:
            yield from _field(entry.slot, props[key], where, spec)
            if spec and "." not in entry.slot.key:
                required = key in node.get("required", [])
                if required != entry.slot.required:
                    yield f"{where}: required {entry.slot.required} here, {required} in the CRD"
        if entry.nested:
            yield from _object(entry.nested, props[key], where, spec, owner)


def _field(slot: wire.Slot, node: Mapping[str, Any], path: str, spec: bool) -> Iterator[str]:
    if slot.meta.codec is not None:
        if node.get("type") != slot.meta.codec.json_type:
            yield f"{path}: written as {slot.meta.codec.json_type}, the CRD says {node.get('type')}"
        return
    hint, _ = wire.optional(slot.hint)
    yield from _value(hint, node, path, spec)
    if spec and hint in (int, float):
        crd = (node.get("minimum"), node.get("maximum"))
        if crd != (slot.meta.minimum, slot.meta.maximum):
            yield f"{path}: bounds {(slot.meta.minimum, slot.meta.maximum)} here, {crd} in the CRD"
    if spec:
        yield from _default(slot, hint, node, path)


def _value(hint: Any, node: Mapping[str, Any], path: str, spec: bool) -> Iterator[str]:
    item = wire.sequence_item(hint)
    if wire.is_record(hint):
        yield from walk(hint, node, path, spec)
        return
    expected = "array" if item is not None else "object" if wire.is_mapping(hint) else "string"
    expected = JSON_TYPES.get(hint, expected)
    if node.get("type") != expected:
        yield f"{path}: {expected} here, {node.get('type')} in the CRD"
    elif item is not None:
        yield from _value(item, node.get("items", {}), f"{path}[]", spec)
    elif wire.is_mapping(hint) and node.get("additionalProperties", {}).get("type") != "string":
        yield f"{path}: a map of strings here, not in the CRD"
    elif wire.is_enum(hint) and ("enum" in node or spec):
        values = sorted(str(member.value) for member in hint)
        if sorted(node.get("enum", [])) != values:
            yield f"{path}: one of {values} here, {node.get('enum')} in the CRD"
    elif hint is datetime and node.get("format") != "date-time":
        yield f"{path}: a time here, the CRD has no format: date-time"
    elif hint is timedelta and "pattern" not in node:
        yield f"{path}: a duration here, the CRD takes any string"


def _default(slot: wire.Slot, hint: Any, node: Mapping[str, Any], path: str) -> Iterator[str]:
    """The spec's defaults are the CRD's, so that a spec parses the same defaulted or not."""
    ours, theirs = slot.default, node.get("default", wire.MISSING)
    scalar = hint in JSON_TYPES or hint is timedelta or wire.is_enum(hint)
    if not scalar or ours is None or ours is wire.MISSING:
        if theirs is not wire.MISSING:
            yield f"{path}: no default value here, {theirs!r} in the CRD"
        return
    if theirs is wire.MISSING:
        yield f"{path}: default {wire.value_of(ours)!r} here, none in the CRD"
    elif (api.parse_duration(theirs, path) if hint is timedelta else theirs) != ours:
        yield f"{path}: default {wire.value_of(ours)!r} here, {theirs!r} in the CRD"


def schema(part: str) -> dict[str, Any]:
    node: dict[str, Any] = openapi_schema()["properties"][part]
    return node


def test_the_spec_dataclasses_and_the_crd_spec_schema_agree() -> None:
    assert list(walk(api.ModelDeploymentSpec, schema("spec"), "spec", spec=True)) == []


def test_the_status_dataclasses_and_the_crd_status_schema_agree() -> None:
    assert list(walk(RolloutStatus, schema("status"), "status", spec=False)) == []


# --- the walk catches a field added on one side only -----------------------------------------


@dataclass(frozen=True)
class _TrafficPlus(Traffic):
    weight_cap: int = 0


@dataclass(frozen=True)
class _AnalysisPlus(api.AnalysisSpec):
    max_duration: timedelta = timedelta(minutes=1)


def test_a_status_field_missing_from_the_crd_is_caught() -> None:
    node = schema("status")["properties"]["traffic"]
    assert list(walk(_TrafficPlus, node, "status.traffic", spec=False)) == [
        "status.traffic.weightCap: _TrafficPlus has it, the CRD does not"
    ]


def test_a_crd_property_missing_from_the_types_is_caught() -> None:
    node = copy.deepcopy(schema("spec"))
    analysis = node["properties"]["analysis"]
    analysis["properties"]["maxDuration"] = {"type": "string", "pattern": "s$"}
    node["properties"]["model"]["properties"]["sha256"]["type"] = "integer"
    assert set(walk(api.ModelDeploymentSpec, node, "spec", spec=True)) == {
        "spec.analysis.maxDuration: in the CRD, but no field of AnalysisSpec is written there",
        "spec.model.sha256: string here, integer in the CRD",
    }
    assert list(walk(_AnalysisPlus, analysis, "a", spec=True)) == [
        "a.maxDuration: default '1m' here, none in the CRD"
    ]


def test_a_bound_default_enum_or_requirement_that_drifts_is_caught() -> None:
    node = copy.deepcopy(schema("spec"))
    node["properties"]["replicas"]["maximum"] = 500
    node["properties"]["progressDeadline"]["default"] = "5m"
    node["properties"]["traffic"]["properties"]["provider"]["enum"] = ["Router"]
    node["required"].remove("strategy")
    assert set(walk(api.ModelDeploymentSpec, node, "spec", spec=True)) == {
        "spec.progressDeadline: default '10m' here, '5m' in the CRD",
        "spec.replicas: bounds (1, 1000) here, (1, 500) in the CRD",
        "spec.strategy: required True here, False in the CRD",
        "spec.traffic.provider: one of ['GatewayAPI', 'Router', 'Service'] here, "
        "['Router'] in the CRD",
    }

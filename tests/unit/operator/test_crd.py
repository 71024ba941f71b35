"""The CRD: structure, examples against its schema, and its CEL rules evaluated for real.

The CEL rules run in ``cel-python`` the way the API server runs them: on the defaulted
object, with ``number`` fields as doubles. Every mistake a rule catches is also caught by
``api`` (``serinus local`` has no API server), so each negative case checks both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from serinus_operator import api
from unit.operator.kit import (
    BLUE_GREEN,
    EXAMPLES,
    SHADOW,
    SHADOW_CANARY,
    Sim,
    apply_defaults,
    crd,
    manifest,
    openapi_schema,
    schema_errors,
    spec_dict,
)

pytestmark = pytest.mark.unit

celpy = pytest.importorskip("celpy")


# --- a small CEL harness ---------------------------------------------------------------------


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _coerce(schema: Mapping[str, Any], value: Any) -> Any:
    """JSON numbers in ``number`` fields are doubles in CEL, as in the API server."""
    if schema.get("type") == "number" and isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: _coerce(props.get(k, extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_coerce(schema.get("items", {}), x) for x in value]
    return value


def cel_results(
    schema: Mapping[str, Any], value: Any, path: str = ""
) -> Iterator[tuple[str, str, bool]]:
    """(path, message, passed) for every rule that applies somewhere in ``value``."""
    for rule in schema.get("x-kubernetes-validations", []):
        result = _program(rule["rule"]).evaluate(
            {"self": celpy.json_to_cel(_coerce(schema, value))}
        )
        assert isinstance(result, celpy.celtypes.BoolType), f"{path}: {rule['rule']} -> {result!r}"
        yield path, rule.get("message", rule["rule"]), bool(result)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from cel_results(sub, value[key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from cel_results(schema["items"], item, f"{path}[{i}]")


def cel_failures(obj: Mapping[str, Any]) -> list[str]:
    defaulted = apply_defaults(openapi_schema(), obj)
    return [f"{p}: {m}" for p, m, ok in cel_results(openapi_schema(), defaulted) if not ok]


def all_rules(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield rule["rule"]
        for v in node.values():
            yield from all_rules(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_rules(v)


def schema_nodes(
    node: Mapping[str, Any], path: str = ""
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


# --- structure -------------------------------------------------------------------------------


def test_crd_identity() -> None:
    doc = crd()
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["metadata"]["name"] == f"{api.PLURAL}.{api.GROUP}"
    spec = doc["spec"]
    assert (spec["group"], spec["scope"]) == (api.GROUP, "Namespaced")
    assert spec["names"]["kind"] == api.KIND
    assert spec["names"]["plural"] == api.PLURAL
    assert spec["names"]["shortNames"] == ["md"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (api.VERSION, True, True)
    assert version["subresources"] == {
        "status": {},
        # kubectl scale, an HPA or KEDA set spec.replicas; status carries what they read
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns_tell_the_story() -> None:
    columns = crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = {c["name"]: c["jsonPath"] for c in columns if not c.get("priority")}
    assert shown == {
        "Strategy": ".spec.strategy.type",
        "Phase": ".status.phase",
        "Stable": ".status.stable.version",
        "Candidate": ".status.candidate.version",
        "Weight": ".status.traffic.candidate",
        "Mirror": ".status.traffic.mirror",  # a shadow's share: Weight is 0 then
        "Age": ".metadata.creationTimestamp",
    }
    sim = Sim.started(spec_dict("v1"))
    sim.new_version("v2")
    sim.step()
    status = sim.status.to_dict()
    for column in columns:
        path = column["jsonPath"].split(".")[1:]
        if path[0] != "status":
            continue
        node: Any = status
        for key in path[1:]:
            node = node[key]
        assert node is not None


def test_schema_is_structural() -> None:
    for path, node in schema_nodes(openapi_schema()):
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert "type" in node, f"{path or 'root'} has no type"
        if node["type"] == "array":
            assert "items" in node, path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"].get("required", []), f"{path}: map key {key} not required"
        if "default" in node:
            assert not schema_errors_for(node, node["default"]), path


def test_cel_rules_pass_on_every_default() -> None:
    """The API server runs a node's CEL rules on its default when the CRD is registered."""
    checked = 0
    for path, node in schema_nodes(openapi_schema()):
        if "default" in node:
            for where, message, passed in cel_results(node, node["default"], path):
                checked += 1
                assert passed, f"{where}: default {node['default']!r} breaks {message!r}"
    assert checked, "no default with a rule was checked"


def test_spec_requires_a_strategy_in_the_crd_and_the_api() -> None:
    spec = spec_dict()
    del spec["strategy"]
    assert schema_errors(manifest(spec))
    with pytest.raises(api.SpecError, match=r"spec\.strategy"):
        api.parse_spec(spec)


def schema_errors_for(node: Mapping[str, Any], value: Any) -> list[str]:
    import jsonschema

    from unit.operator.kit import to_json_schema

    return [
        e.message for e in jsonschema.Draft202012Validator(to_json_schema(node)).iter_errors(value)
    ]


def test_every_cel_rule_compiles_and_lists_are_bounded() -> None:
    rules = list(all_rules(openapi_schema()))
    assert len(rules) >= 12
    for rule in rules:
        _program(rule)
    for path, node in schema_nodes(openapi_schema()):
        if node.get("x-kubernetes-validations") and node.get("type") == "array":
            assert "maxItems" in node, f"{path}: CEL over an unbounded list is too costly"


def test_status_schema_bounds_history_like_the_engine() -> None:
    from serinus_operator.rollout.status import HISTORY_LIMIT

    history = openapi_schema()["properties"]["status"]["properties"]["history"]
    assert history["maxItems"] == HISTORY_LIMIT


# --- examples --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_and_parse_the_same_with_or_without_defaults(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert obj["apiVersion"] == f"{api.GROUP}/{api.VERSION}"
    assert obj["kind"] == api.KIND
    assert schema_errors(obj) == []
    defaulted = apply_defaults(openapi_schema(), obj)
    assert schema_errors(defaulted) == []
    assert cel_failures(obj) == []
    assert api.parse(obj).spec == api.parse(defaulted).spec


def test_there_is_an_example_per_strategy() -> None:
    kinds = {
        yaml.safe_load(p.read_text())["spec"].get("strategy", {}).get("type") for p in EXAMPLES
    }
    assert {"Canary", "Shadow", "BlueGreen"} <= kinds
    assert any(p.stem == "minimal" for p in EXAMPLES)


@pytest.mark.parametrize("strategy", [SHADOW, SHADOW_CANARY, BLUE_GREEN], ids=str)
def test_crd_defaults_and_api_defaults_agree(strategy: dict[str, Any]) -> None:
    analysis = {"metrics": [{"name": "agreement", "min": 0.9}]}
    obj = manifest(spec_dict(strategy=strategy, analysis=analysis))
    defaulted = apply_defaults(openapi_schema(), obj)
    assert api.parse(obj).spec == api.parse(defaulted).spec
    assert cel_failures(obj) == []


# --- what the schema and CEL rules reject (and the api package too) -------------------------


def with_spec(**changes: Any) -> dict[str, Any]:
    spec = spec_dict(analysis={"metrics": [{"name": "error-rate", "max": 0.01}]})
    for key, value in changes.items():
        spec[key] = value
    return manifest(spec)


CEL_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "shadow with setWeight steps",
        with_spec(strategy={"type": "Shadow", "canary": {"steps": [{"setWeight": 10}]}}),
        "Shadow strategy takes no setWeight steps",
    ),
    (
        "blue-green with steps",
        with_spec(strategy={"type": "BlueGreen", "canary": {"steps": [{"setWeight": 10}]}}),
        "canary steps never run",
    ),
    ("canary without steps", with_spec(strategy={"type": "Canary"}), "needs canary.steps"),
    (
        "shadow then canary without steps",
        with_spec(strategy={"type": "Shadow", "shadow": {"then": "Canary"}}),
        "needs canary.steps to continue",
    ),
    (
        "shadow block on a canary",
        with_spec(strategy=spec_dict()["strategy"] | {"shadow": {}}),
        "shadow is only used",
    ),
    (
        "blueGreen block on a shadow",
        with_spec(strategy={"type": "Shadow", "blueGreen": {}}),
        "blueGreen is only used",
    ),
    (
        "step with both",
        with_spec(strategy={"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}),
        "exactly one of setWeight, pause or setCanaryScale",
    ),
    (
        "canary scale with two sizes",
        with_spec(
            strategy={"canary": {"steps": [{"setCanaryScale": {"replicas": 2, "weight": 10}}]}}
        ),
        "exactly one of replicas, weight or matchTrafficWeight",
    ),
    (
        "empty step",
        with_spec(strategy={"canary": {"steps": [{}]}}),
        "exactly one of setWeight, pause or setCanaryScale",
    ),
    (
        "zero shadow",
        with_spec(strategy={"type": "Shadow", "shadow": {"duration": "0s"}}),
        "longer than 0s",
    ),
    (
        "metric without threshold",
        with_spec(analysis={"metrics": [{"name": "drift"}]}),
        "set min, max or both",
    ),
    (
        "min above max",
        with_spec(analysis={"metrics": [{"name": "drift", "min": 1, "max": 0.5}]}),
        "min must not exceed max",
    ),
    (
        "custom metric without query",
        with_spec(analysis={"metrics": [{"name": "approvals", "min": 1}]}),
        "add a PromQL query",
    ),
    (
        "gateway without ref",
        with_spec(traffic={"provider": "GatewayAPI"}),
        "needs gatewayRef",
    ),
    ("service with canary", with_spec(traffic={"provider": "Service"}), "only with strategy.type"),
    ("zero deadline", with_spec(progressDeadline="0"), "progressDeadline must be longer"),
    ("zero deadline 0s", with_spec(progressDeadline="0m0s"), "progressDeadline must be longer"),
    (
        "sub-second interval",
        with_spec(analysis={"interval": "500ms", "metrics": [{"name": "drift", "max": 1}]}),
        "at least 1s",
    ),
]


@pytest.mark.parametrize(("case", "obj", "message"), CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_cel_rules_reject_mistakes_and_so_does_the_api(
    case: str, obj: dict[str, Any], message: str
) -> None:
    assert schema_errors(obj) == [], case  # only a CEL rule can catch these
    failures = cel_failures(obj)
    assert any(message in f for f in failures), failures
    with pytest.raises(api.SpecError):
        api.parse(obj)


def test_long_names_are_rejected_by_cel_and_the_api() -> None:
    obj = with_spec()
    obj["metadata"]["name"] = "n" * 53
    assert any("at most 52" in f for f in cel_failures(obj))
    with pytest.raises(api.SpecError):
        api.parse(obj)


def test_built_in_metric_names_pass_the_cel_rule() -> None:
    names = ["error-rate", "drift", "agreement", "latency-p50", "latency-p99", "latency-p999"]
    obj = with_spec(analysis={"metrics": [{"name": n, "max": 1} for n in names]})
    assert cel_failures(obj) == []
    api.parse(obj)


SCHEMA_CASES: list[tuple[str, dict[str, Any]]] = [
    ("weight above 100", with_spec(strategy={"canary": {"steps": [{"setWeight": 101}]}})),
    ("negative weight", with_spec(strategy={"canary": {"steps": [{"setWeight": -1}]}})),
    ("no steps", with_spec(strategy={"canary": {"steps": []}})),
    ("unknown strategy", with_spec(strategy={"type": "Linear"})),
    ("bad duration", with_spec(progressDeadline="10 minutes")),
    ("zero replicas", with_spec(replicas=0)),
    ("bad sha", with_spec(model={"uri": "/m.onnx", "version": "v1", "sha256": "nope"})),
    ("ftp uri", with_spec(model={"uri": "ftp://b/m.onnx", "version": "v1"})),
    ("pvc without claim", with_spec(model={"uri": "pvc:///m.onnx", "version": "v1"})),
    (
        "bad secret name",
        with_spec(
            model={
                "uri": "s3://b/m",
                "version": "v1",
                "credentials": {"secretRef": {"name": "A_B"}},
            }
        ),
    ),
    ("bad service account", with_spec(serving={"serviceAccountName": "-sa"})),
    ("no version", with_spec(model={"uri": "/m.onnx"})),
    ("typo", with_spec(strategyy={})),
    ("mirror 0", with_spec(strategy={"type": "Shadow", "shadow": {"mirrorPercent": 0}})),
    ("noData", with_spec(analysis={"noData": "Skip", "metrics": [{"name": "drift", "max": 1}]})),
    ("bad name", with_spec(analysis={"metrics": [{"name": "Drift", "max": 1}]})),
    ("fractional cpu", with_spec(serving={"resources": {"requests": {"cpu": 0.5}}})),
]


@pytest.mark.parametrize(("case", "obj"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_rejects_mistakes_and_so_does_the_api(case: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj), case
    with pytest.raises(api.SpecError):
        api.parse(copy.deepcopy(obj))

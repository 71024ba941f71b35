"""Parsing the ModelDeployment: defaults, durations, revisions and errors that name the fix."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator import api
from unit.operator.kit import EXAMPLES, manifest, spec_dict

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("0s", 0),
        ("500ms", 0.5),
        ("30s", 30),
        ("2m", 120),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("1h0m10s", 3610),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert api.parse_duration(text, "f") == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "5 m", "1d", "m", "-1s", "1h 30m", "s30", "1.s"])
def test_bad_durations_name_the_field_and_the_fix(text: str) -> None:
    with pytest.raises(api.SpecError) as err:
        api.parse_duration(text, "spec.analysis.interval")
    assert err.value.field == "spec.analysis.interval"
    assert "'30s'" in err.value.message


def test_durations_must_be_strings() -> None:
    with pytest.raises(api.SpecError, match="duration string"):
        api.parse_duration(30, "spec.progressDeadline")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000))
def test_format_duration_round_trips(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert api.parse_duration(api.format_duration(value), "f") == value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_parses(path: Any) -> None:
    md = api.parse(yaml.safe_load(path.read_text()))
    assert len(md.spec.revision) == api.REVISION_LENGTH
    assert md.request is None


def test_defaults_match_the_design() -> None:
    spec = api.parse_spec(
        {
            "model": {"uri": "/models/a.onnx", "version": "v1"},
            "strategy": {"canary": {"steps": [{"setWeight": 5}]}},
        }
    )
    assert spec.replicas == 1
    assert spec.strategy.type == api.StrategyType.CANARY
    assert spec.strategy.scale_down_delay == timedelta(seconds=30)
    assert spec.progress_deadline == timedelta(minutes=10)
    assert spec.traffic.provider == api.TrafficProvider.ROUTER
    assert spec.analysis is None
    shadow = api.parse_spec(spec_dict(strategy={"type": "Shadow"})).strategy.shadow
    assert shadow == api.ShadowSpec(100, timedelta(minutes=10), api.ShadowThen.PROMOTE)
    analysis = api.parse_analysis({"metrics": [{"name": "drift", "max": 0.2}]})
    assert analysis is not None
    assert (analysis.interval, analysis.failure_limit, analysis.inconclusive_limit) == (
        timedelta(seconds=30),
        1,
        3,
    )
    assert (analysis.no_data, analysis.min_requests) == (api.NoDataPolicy.INCONCLUSIVE, 1)


def test_revision_is_a_stable_hash_of_model_and_serving_only() -> None:
    base = api.parse_spec(spec_dict("v1"))
    assert base.revision == api.parse_spec(spec_dict("v1")).revision
    assert base.revision != api.parse_spec(spec_dict("v2")).revision
    scaled = api.parse_spec(spec_dict("v1", replicas=9, progressDeadline="1h"))
    assert scaled.revision == base.revision
    explicit = spec_dict("v1", serving={"batching": {"maxBatchSize": 0, "maxLatencyMs": 2}})
    assert api.parse_spec(explicit).revision == base.revision  # defaults spelled out: same
    image = api.parse_spec(spec_dict("v1", serving={"image": "ghcr.io/x/serve:2"}))
    assert image.revision != base.revision
    env_a = spec_dict("v1", serving={"env": [{"name": "A", "value": "1"}, {"name": "B"}]})
    env_b = spec_dict(
        "v1", serving={"env": [{"name": "B", "value": ""}, {"name": "A", "value": "1"}]}
    )
    assert api.parse_spec(env_a).revision == api.parse_spec(env_b).revision


def test_revision_is_pinned() -> None:
    """Changing how revisions hash would roll out every ModelDeployment on upgrade."""
    model = api.ModelSpec("https://models.example.com/v1.onnx", "v1")
    assert api.revision_of(model, api.ServingSpec()) == api.revision_of(
        model, api.ServingSpec(batching=api.BatchingSpec(0, 2.0))
    )
    assert api.revision_of(model, api.ServingSpec()) == "e68dc52d7e"


def mutate(path: str, value: Any) -> dict[str, Any]:
    """A valid canary spec with one field set (``value=None`` deletes it)."""
    spec: dict[str, Any] = spec_dict("v1")
    spec["analysis"] = {"metrics": [{"name": "error-rate", "max": 0.01}]}
    node = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]  # type: ignore[index]
    last = keys[-1]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "field", "hint"),
    [
        ("model", None, "spec.model", "model.uri"),
        ("model.uri", "ftp://host/m.onnx", "spec.model.uri", "s3://"),
        ("model.uri", "pvc:///m.onnx", "spec.model.uri", "pvc://CLAIM/PATH"),
        ("model.credentials", {"secretRef": {"name": "Bad_Name"}}, "secretRef.name", "Secret"),
        ("model.credentials", {"secretRef": {}}, "secretRef.name", "required"),
        ("serving.serviceAccountName", "-x", "serving.serviceAccountName", "ServiceAccount"),
        ("model.version", None, "spec.model.version", "required"),
        ("model.sha256", "ABC", "spec.model.sha256", "64 lowercase hex"),
        ("model.shaa256", "x", "spec.model.shaa256", "did you mean 'sha256'"),
        ("replicas", 0, "spec.replicas", "from 1 to 1000"),
        ("replicas", "2", "spec.replicas", "integer"),
        ("progressDeadline", "ten minutes", "spec.progressDeadline", "'1h30m'"),
        ("progressDeadline", "0s", "spec.progressDeadline", "longer than 0s"),
        ("strategy.type", "Linear", "spec.strategy.type", "Canary | Shadow | BlueGreen"),
        ("strategy.canary", None, "spec.strategy.canary", "canary.steps"),
        ("strategy.canary.steps", [], "spec.strategy.canary.steps", "at least one step"),
        ("strategy.canary.steps", [{"setWeight": 10, "pause": {}}], "steps[0]", "exactly one"),
        ("strategy.canary.steps", [{}], "steps[0]", "exactly one"),
        ("strategy.canary.steps", [{"setWeight": 101}], "steps[0].setWeight", "0 to 100"),
        ("strategy.canary.steps", [{"pause": {"duration": "1x"}}], "pause.duration", "unit"),
        ("strategy.shadow", {"duration": "1m"}, "spec.strategy.shadow", "type: Shadow"),
        ("strategy.blueGreen", {}, "spec.strategy.blueGreen", "type: BlueGreen"),
        ("analysis.metrics", [], "spec.analysis.metrics", "at least one metric"),
        ("analysis.metrics", [{"name": "error-rate"}], "metrics[0]", "min, max or both"),
        ("analysis.metrics", [{"name": "x", "max": 1}], "metrics[0].query", "PromQL"),
        ("analysis.metrics", [{"name": "Error", "max": 1}], "metrics[0].name", "lowercase"),
        (
            "analysis.metrics",
            [{"name": "drift", "min": 2, "max": 1}],
            "metrics[0].min",
            "swap them",
        ),
        (
            "analysis.metrics",
            [{"name": "drift", "max": 1}, {"name": "drift", "max": 2}],
            "metrics[1].name",
            "twice",
        ),
        (
            "analysis.metrics",
            [{"name": "drift", "compare": {"maxDegradation": 0.01}}],
            "metrics[0].compare",
            "error-rate, client-error-rate, accuracy",
        ),
        (
            "analysis.metrics",
            [{"name": "error-rate", "max": 0.01, "compare": {"maxDegradation": 0.01}}],
            "metrics[0].compare",
            "not both",
        ),
        ("analysis.metrics", [{"name": "error-rate", "compare": {}}], "maxDegradation", "0.005"),
        (
            "analysis.metrics",
            [{"name": "accuracy", "compare": {"maxDegradation": 0.01, "confidence": 0.3}}],
            "compare.confidence",
            "0.5",
        ),
        (
            "analysis.metrics",
            [{"name": "accuracy", "compare": {"maxDegradation": 0.01, "baseline": "previous"}}],
            "compare.baseline",
            "stable",
        ),
        (
            "analysis.metrics",
            [{"name": "accuracy", "compare": {"maxDegradation": 0.01, "thresholdSeconds": 0.2}}],
            "compare.thresholdSeconds",
            "latency-pNN checks only",
        ),
        (
            "analysis.metrics",
            [{"name": "latency-p99", "compare": {"maxDegradation": 0.01, "thresholdSeconds": 0}}],
            "compare.thresholdSeconds",
            "longer than 0",
        ),
        ("analysis.noData", "Ignore", "spec.analysis.noData", "Inconclusive | Fail | Pass"),
        ("analysis.interval", "500ms", "spec.analysis.interval", "at least 1s"),
        ("analysis.failureLimit", -1, "spec.analysis.failureLimit", "0 to 100"),
        ("traffic.provider", "Service", "spec.traffic.provider", "BlueGreen"),
        ("traffic.provider", "GatewayAPI", "spec.traffic.gatewayRef", "name the Gateway"),
        ("serving.batching.maxLatencyMs", 5000, "maxLatencyMs", "0 to 1000"),
        ("serving.env", [{"name": "A"}, {"name": "A"}], "env[1].name", "twice"),
        ("serving.env", [{"name": "A", "value": 1}], "env[0].value", "quote numbers"),
        ("serving.resources.requests", {"cpu": True}, "requests.cpu", "quantity"),
        ("extra", 1, "spec.extra", "known fields"),
    ],
)
def test_spec_errors_name_the_field_and_the_fix(
    path: str, value: Any, field: str, hint: str
) -> None:
    with pytest.raises(api.SpecError) as err:
        api.parse_spec(mutate(path, value))
    assert field in err.value.field
    assert hint in err.value.message
    assert str(err.value).startswith(err.value.field)


@pytest.mark.parametrize(
    ("strategy", "field", "hint"),
    [
        (
            {"type": "Shadow", "canary": {"steps": [{"setWeight": 5}]}},
            "spec.strategy.canary",
            "shadow.then is Promote",
        ),
        (
            {"type": "Shadow", "shadow": {"then": "Canary"}},
            "spec.strategy.canary",
            "required",
        ),
        (
            {"type": "BlueGreen", "canary": {"steps": [{"setWeight": 5}]}},
            "spec.strategy.canary",
            "type is BlueGreen",
        ),
        ({"type": "Shadow", "shadow": {"duration": "0s"}}, "shadow.duration", "longer than 0s"),
        ({"type": "Shadow", "shadow": {"mirrorPercent": 0}}, "mirrorPercent", "1 to 100"),
        ({"type": "Shadow", "shadow": {"then": "Wait"}}, "shadow.then", "Promote | Canary"),
    ],
)
def test_strategy_mistakes(strategy: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(api.SpecError) as err:
        api.parse_spec(spec_dict(strategy=strategy))
    assert field in err.value.field
    assert hint in err.value.message


def test_windows_shorter_than_the_interval_are_refused() -> None:
    spec = spec_dict(
        strategy={"type": "Shadow", "shadow": {"duration": "20s"}},
        analysis={"interval": "1m", "metrics": [{"name": "agreement", "min": 0.9}]},
    )
    with pytest.raises(api.SpecError, match=r"shorter than analysis\.interval"):
        api.parse_spec(spec)
    blue_green = {"type": "BlueGreen", "blueGreen": {"previewDuration": "0s"}}
    api.parse_spec(spec | {"strategy": blue_green})  # 0s means no preview: fine


def test_metadata_is_checked() -> None:
    obj = manifest(spec_dict())
    assert api.parse(obj).namespace == "ml"
    long = copy.deepcopy(obj)
    long["metadata"]["name"] = "a" * 53
    with pytest.raises(api.SpecError, match="at most 52"):
        api.parse(long)
    no_ns = copy.deepcopy(obj)
    del no_ns["metadata"]["namespace"]
    assert api.parse(no_ns).namespace == "default"


@pytest.mark.parametrize(
    ("value", "action", "nonce"),
    [
        ("promote:1712345678", api.ManualAction.PROMOTE, "1712345678"),
        ("promote-full:abc", api.ManualAction.PROMOTE_FULL, "abc"),
        ("abort:2024-01-01T00:00:00Z", api.ManualAction.ABORT, "2024-01-01T00:00:00Z"),
        (" retry : x ", api.ManualAction.RETRY, "x"),
    ],
)
def test_action_annotation_parses(value: str, action: api.ManualAction, nonce: str) -> None:
    obj = manifest(spec_dict())
    obj["metadata"]["annotations"] = {api.ACTION_ANNOTATION: value}
    assert api.parse(obj).request == api.ActionRequest(action, nonce)


@pytest.mark.parametrize(
    ("value", "hint"),
    [("promote", "'<action>:<nonce>'"), ("skip:1", "promote, promote-full"), ("pause:", "empty")],
)
def test_bad_action_annotation(value: str, hint: str) -> None:
    with pytest.raises(api.SpecError) as err:
        api.parse_action(value)
    assert err.value.field == "metadata.annotations[serinus.dev/action]"
    assert hint in err.value.message
    obj = manifest(spec_dict())
    obj["metadata"]["annotations"] = {api.ACTION_ANNOTATION: value}
    md = api.parse(obj)  # a bad request never degrades the object
    assert md.request is None
    assert md.invalid_request == api.InvalidRequest(value, str(err.value))


def test_a_compare_check_parses_with_its_defaults() -> None:
    raw = spec_dict("v1", analysis={"metrics": [
        {"name": "accuracy", "compare": {"maxDegradation": 0.01}, "dryRun": True},
    ]})  # fmt: skip
    [metric] = api.parse_spec(raw).analysis.metrics  # type: ignore[union-attr]
    assert metric.compare == api.CompareSpec(max_degradation=0.01)
    assert (metric.compare.confidence, metric.compare.min_samples) == (0.95, 100)
    assert metric.dry_run and metric.min is None and metric.max is None


def test_a_latency_compare_takes_an_optional_fixed_threshold() -> None:
    raw = spec_dict("v1", analysis={"metrics": [
        {"name": "latency-p99", "compare": {"maxDegradation": 0.01}},
        {"name": "latency-p50", "compare": {"maxDegradation": 0.02, "thresholdSeconds": 0.25}},
    ]})  # fmt: skip
    p99, p50 = api.parse_spec(raw).analysis.metrics  # type: ignore[union-attr]
    assert p99.compare == api.CompareSpec(max_degradation=0.01)
    assert p50.compare == api.CompareSpec(max_degradation=0.02, threshold_seconds=0.25)

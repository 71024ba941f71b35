"""Test kit for the ModelDeployment API and the rollout engine.

``Sim`` drives ``decide`` the way an operator would - observe, decide, apply - against a
simulated world, and checks on *every* decision the invariants the engine promises:
traffic bounds, no traffic to a revision that is not ready, 100% to stable right after a
rollback, determinism, idempotency, restart from status alone, and a status that validates
against the CRD's schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from serinus_operator import api
from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict
from serinus_operator.rollout import (
    CallWebhooks,
    Decision,
    EnsureRevision,
    Notify,
    Observed,
    Reason,
    RemoveRevision,
    RevisionObservation,
    RolloutStatus,
    ScaleDown,
    SetTraffic,
    WebhookResult,
    decide,
)
from serinus_operator.rollout.patch import merge_diff
from support.rfc7386 import merge_patch

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "crds" / "modeldeployment.yaml"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
T0 = datetime(2025, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)

# --- CRD schema helpers ----------------------------------------------------------------------


@cache
def crd() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return data


def openapi_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def to_json_schema(node: Any) -> Any:
    """Convert the CRD's OpenAPI v3 subset to JSON Schema (draft 2020-12).

    ``x-kubernetes-*`` keys go; ``nullable`` becomes a null type; objects with declared
    properties reject unknown fields (the API server would prune them silently, which would
    hide a typo in an example) unless they preserve unknown fields.
    """
    if isinstance(node, list):
        return [to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("nullable"):
        out.pop("nullable")
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if node.get("type") == "object" and "properties" in node and not preserve:
        out.setdefault("additionalProperties", False)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


@cache
def _validator(part: str) -> jsonschema.protocols.Validator:
    schema = openapi_schema() if part == "root" else openapi_schema()["properties"][part]
    cls = jsonschema.validators.validator_for({}, default=jsonschema.Draft202012Validator)
    return cls(to_json_schema(schema), format_checker=cls.FORMAT_CHECKER)


def schema_errors(obj: Mapping[str, Any], part: str = "root") -> list[str]:
    errors = _validator(part).iter_errors(obj)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """What the API server's defaulting does: fill ``default`` values, recursively."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], x) for x in value]
    return value


# --- specs -----------------------------------------------------------------------------------

CANARY: dict[str, Any] = {
    "type": "Canary",
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "2m"}},
            {"setWeight": 50},
            {"pause": {}},
            {"setWeight": 80},
        ]
    },
}
SHADOW: dict[str, Any] = {
    "type": "Shadow",
    "shadow": {"mirrorPercent": 50, "duration": "10m", "then": "Promote"},
}
SHADOW_CANARY: dict[str, Any] = {
    "type": "Shadow",
    "shadow": {"mirrorPercent": 100, "duration": "5m", "then": "Canary"},
    "canary": {"steps": [{"setWeight": 30}, {"pause": {"duration": "3m"}}]},
}
BLUE_GREEN: dict[str, Any] = {
    "type": "BlueGreen",
    "blueGreen": {
        "autoPromote": True,
        "previewDuration": "5m",
        "postPromotionDuration": "5m",
        "scaleDownDelay": "10m",
    },
}
ANALYSIS: dict[str, Any] = {
    "interval": "30s",
    "failureLimit": 1,
    "inconclusiveLimit": 2,
    "noData": "Inconclusive",
    "minRequests": 10,
    "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "agreement", "min": 0.97}],
}


def spec_dict(
    version: str = "v1",
    strategy: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": {"uri": f"https://models.example.com/{version}.onnx", "version": version},
        "replicas": 2,
        "strategy": copy.deepcopy(dict(strategy or CANARY)),
        "progressDeadline": "10m",
    }
    if analysis is not None:
        out["analysis"] = copy.deepcopy(dict(analysis))
    return out | extra


def manifest(spec: Mapping[str, Any], name: str = "fraud") -> dict[str, Any]:
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": copy.deepcopy(dict(spec)),
    }


# --- invariants ------------------------------------------------------------------------------


def check_invariants(d: Decision, observed: Observed) -> None:
    s, t = d.status, d.status.traffic
    assert 0 <= t.candidate <= 100, t
    assert 0 <= t.stable <= 100, t
    assert t.stable + t.candidate == 100, t
    assert 0 <= t.mirror <= 100, t
    c = s.candidate
    if t.candidate or t.mirror:
        assert c is not None, "traffic to a candidate that is not there"
        assert observed.ready(c.ref.revision), f"traffic to {c.ref.revision}, not ready"
    routes = d.of(SetTraffic)
    assert len(routes) == (1 if s.stable is not None else 0)
    for r in routes:
        assert r.candidate_weight == t.candidate
        assert r.mirror_percent == t.mirror
        assert s.stable is not None
        assert r.stable == s.stable.ref.revision
        assert r.candidate == (c.ref.revision if c else None)
    reasons = {n.reason for n in d.of(Notify)}
    if reasons & {Reason.ROLLED_BACK, Reason.ABORTED}:
        assert t.stable == 100, "a rollback must send all traffic to stable at once"
        assert t.mirror == 0
    ensured = {a.ref.revision for a in d.of(EnsureRevision)}
    dropped = {a.revision for a in d.of(RemoveRevision)} | {a.revision for a in d.of(ScaleDown)}
    assert not ensured & dropped
    if s.stable is not None:
        assert s.stable.ref.revision in ensured
    if c is not None:
        assert c.ref.revision in ensured
        assert s.stable is None or c.ref.revision != s.stable.ref.revision
    assert len(s.history) <= 10
    stored = merge_patch({}, s.to_dict())
    assert not schema_errors(stored, "status"), schema_errors(stored, "status")


def restart(status: RolloutStatus) -> RolloutStatus:
    """What a freshly started operator reads: the status as JSON, nothing else."""
    return RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict())))


def without_events(d: Decision) -> tuple[object, ...]:
    """The desired-state actions; Events and webhook calls are emitted once, on the
    transition that causes them."""
    return tuple(a for a in d.actions if not isinstance(a, Notify | CallWebhooks))


# --- the simulator ---------------------------------------------------------------------------


@dataclass
class Sim:
    """An operator loop against a fake world in which revisions start when ensured."""

    raw: dict[str, Any]
    now: datetime = T0
    status: RolloutStatus = field(default_factory=RolloutStatus)
    world: dict[str, RevisionObservation] = field(default_factory=dict)
    pinned: dict[str, RevisionObservation] = field(default_factory=dict)  # set by the test
    generation: int = 1
    request: api.ActionRequest | None = None
    nonce: int = 0
    last: Decision | None = None
    check: bool = True
    stored: dict[str, Any] = field(default_factory=dict)  # the status as merge-patched

    @classmethod
    def started(cls, raw: dict[str, Any]) -> Sim:
        """A ModelDeployment whose first revision is already stable and ready."""
        sim = cls(raw)
        sim.step()
        sim.step()
        return sim

    @property
    def spec(self) -> api.ModelDeploymentSpec:
        return api.parse_spec(self.raw)

    @property
    def revision(self) -> str:
        return self.spec.revision

    @property
    def candidate(self) -> str:
        assert self.status.candidate is not None
        return self.status.candidate.ref.revision

    def new_version(self, version: str) -> str:
        self.raw["model"] = {
            "uri": f"https://models.example.com/{version}.onnx",
            "version": version,
        }
        self.generation += 1
        return self.revision

    def measurement(
        self,
        verdict: Verdict | Mapping[str, Verdict],
        *,
        requests: int | None = 1000,
        revision: str | None = None,
    ) -> Measurement:
        spec = self.spec.analysis
        assert spec is not None
        names = [m.name for m in spec.metrics]
        verdicts = verdict if isinstance(verdict, Mapping) else dict.fromkeys(names, verdict)
        results = tuple(
            MetricResult(name, v, 0.5 if v == Verdict.FAIL else 0.001, 0.01)
            for name, v in verdicts.items()
        )
        return Measurement(self.now, revision or self.candidate, results, requests)

    def step(
        self,
        after: timedelta = timedelta(0),
        *,
        verdict: Verdict | Mapping[str, Verdict] | None = None,
        measurements: Iterable[Measurement] = (),
        action: str | None = None,
        requests: int | None = 1000,
        hooks: Iterable[WebhookResult] = (),
    ) -> Decision:
        self.now += after
        answers = list(hooks)
        found = list(measurements)
        if verdict is not None:
            found.append(self.measurement(verdict, requests=requests))
        if action is not None:
            self.nonce += 1
            self.request = api.ActionRequest(api.ManualAction(action), f"n{self.nonce}")
        observed = Observed(self.generation, dict(self.world), self.request)
        spec = self.spec
        d = decide(spec, self.status, observed, found, self.now, answers)
        if self.check:
            check_invariants(d, observed)
            assert decide(spec, restart(self.status), observed, found, self.now, answers) == d
            again = decide(spec, d.status, observed, found, self.now, answers)
            assert again.status == d.status, "decide is not idempotent"
            assert not again.of(Notify), again.of(Notify)
            assert without_events(again) == without_events(d)
        new = json.loads(json.dumps(d.status.to_dict()))
        self.stored = merge_patch(self.stored, merge_diff(self.stored, new))
        if self.check:
            assert RolloutStatus.from_dict(self.stored) == d.status, "stored status differs"
        self.status, self.last = d.status, d
        self._apply(d)
        return d

    def _apply(self, d: Decision) -> None:
        for a in d.actions:
            if isinstance(a, EnsureRevision):
                rev = a.ref.revision
                ready = RevisionObservation(a.replicas, a.replicas, True)
                self.world[rev] = self.pinned.get(rev, ready)
            elif isinstance(a, ScaleDown):
                self.pinned.pop(a.revision, None)
                self.world[a.revision] = RevisionObservation(0, 0, False)
            elif isinstance(a, RemoveRevision):
                self.pinned.pop(a.revision, None)
                self.world.pop(a.revision, None)

    def pin(self, revision: str, observation: RevisionObservation) -> None:
        """Fix what is observed of a revision until it is scaled down or removed."""
        self.pinned[revision] = self.world[revision] = observation

    def set_ready(self, revision: str, ready: bool) -> None:
        replicas = self.spec.replicas
        if ready:
            self.pinned.pop(revision, None)
            self.world[revision] = RevisionObservation(replicas, replicas, True)
        else:
            self.pin(revision, RevisionObservation(replicas, 0, False))

    def events(self) -> list[Reason]:
        assert self.last is not None
        return [n.reason for n in self.last.of(Notify)]


@dataclass(frozen=True)
class Tick:
    """One row of a walk: what happens, then what the decision must show."""

    after: timedelta = timedelta(0)
    verdict: Verdict | Mapping[str, Verdict] | None = None
    action: str | None = None
    requests: int | None = 1000
    ready: bool | None = None  # set the candidate's readiness before deciding
    phase: str | None = None
    weight: int | None = None
    mirror: int | None = None
    stage: str | None = None
    events: tuple[Reason, ...] | None = None  # exactly these, in this order
    stable: str | None = None  # the stable version


def walk(sim: Sim, ticks: Iterable[Tick]) -> None:
    for i, t in enumerate(ticks):
        if t.ready is not None:
            sim.set_ready(sim.candidate, t.ready)
        sim.step(t.after, verdict=t.verdict, action=t.action, requests=t.requests)
        s, where = sim.status, f"tick {i}: {t}\n{sim.status.message}"
        if t.phase is not None:
            assert s.phase == t.phase, where
        if t.weight is not None:
            assert s.traffic.candidate == t.weight, where
        if t.mirror is not None:
            assert s.traffic.mirror == t.mirror, where
        if t.stage is not None:
            assert s.candidate is not None, where
            assert s.candidate.stage == t.stage, where
        if t.events is not None:
            assert tuple(sim.events()) == t.events, where
        if t.stable is not None:
            assert s.stable is not None, where
            assert s.stable.ref.version == t.stable, where

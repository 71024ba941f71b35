"""The reconcile pass: the order it applies a decision in, and what it writes.

The platform here is an in-memory recorder implementing the Platform protocol: this tests
the loop's sequencing, not a platform (the Kubernetes platform runs against a real API
server in tests/integration/operator, the Prometheus provider against a real Prometheus).
Failing each write in turn is only possible with a stand-in, which is why it is here.
The metric provider answers fixed values for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serinus_operator.analysis.evaluate import QueryResult
from serinus_operator.api import ModelDeployment
from serinus_operator.platforms.base import Conflict, ObjectRef
from serinus_operator.platforms.kubernetes import ApiError
from serinus_operator.reconcile import reconcile
from serinus_operator.rollout import EnsureRevision, Notify, RevisionObservation
from serinus_operator.rollout.patch import apply as merge_apply
from serinus_operator.telemetry import Telemetry
from serinus_operator.traffic.base import Routes

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Killed(BaseException):
    """The operator process dying mid-pass (BaseException: nothing may swallow it)."""


class Recorder:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.calls: list[tuple[str, Any]] = []
        self.running: dict[str, int] = {}
        self.conflict = False
        self.meddle: Any = None  # called on the stored object before each status write
        self.names: set[str] = set()  # Events stored, by name, as an API server keeps them
        self.autoscaled: list[Any] = []  # every autoscale call's spec.autoscaling
        self.ensured: list[EnsureRevision] = []  # every ensure_revision's action
        self.fail: set[str] = set()  # "status", "event": those calls fail; "kill": the
        # pass dies (as the process would) at its first Event post

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.obj

    async def observe(self, ref: ObjectRef, md: ModelDeployment | None) -> Mapping[str, Any]:
        return {rev: RevisionObservation(n, n, True) for rev, n in self.running.items()}

    async def ensure_revision(self, ref: ObjectRef, md: ModelDeployment, a: EnsureRevision) -> None:
        self.calls.append(("ensure", a.ref.revision))
        self.ensured.append(a)
        self.running[a.ref.revision] = a.replicas

    async def scale_down(self, ref: ObjectRef, revision: str) -> None:
        self.calls.append(("scale_down", revision))

    async def remove_revision(self, ref: ObjectRef, revision: str) -> None:
        self.calls.append(("remove", revision))
        self.running.pop(revision, None)

    async def set_traffic(self, ref: ObjectRef, md: ModelDeployment, routes: Routes) -> None:
        self.calls.append(("traffic", routes))

    async def autoscale(self, ref: ObjectRef, md: ModelDeployment) -> None:
        self.autoscaled.append(md.spec.autoscaling)
        if md.spec.autoscaling is not None:
            self.calls.append(("autoscale", md.spec.autoscaling))

    async def notify(self, ref: ObjectRef, notify: Notify, *, name: str) -> bool:
        if "kill" in self.fail:
            raise Killed
        if "event" in self.fail:
            return False
        if name not in self.names:  # a second create of one name is a 409 AlreadyExists
            self.names.add(name)
            self.calls.append(("event", notify.reason.value))
        return True

    async def write_status(
        self, ref: ObjectRef, patch: Mapping[str, Any], *, resource_version: str | None
    ) -> Mapping[str, Any]:
        if self.conflict:
            raise Conflict("stale")
        if self.meddle is not None:
            changed, self.meddle = self.meddle(self.obj), None
            if changed:
                raise Conflict("the object changed since it was read")
        if "status" in self.fail:
            raise ApiError(503, "the API server is unavailable")
        self.calls.append(("status", dict(patch)))
        self.obj["status"] = merge_apply(self.obj.get("status") or {}, patch)
        return self.obj


class FixedMetrics:
    def __init__(self, value: float) -> None:
        self.value = value
        self.queries: list[str] = []

    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        self.queries.append(promql)
        if "serinus_requests_total" in promql:  # the request-count gate: plenty of traffic
            return QueryResult(values=(100.0,))
        return QueryResult(values=(self.value,))

    async def is_online(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def manifest(version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": {
            "model": {"uri": f"https://m.example.com/{version}.onnx", "version": version},
            "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}]}},
            **spec,
        },
    }


def run(
    platform: Recorder, *, metrics: Any = None, now: datetime = T0, telemetry: Any = None
) -> Any:
    return asyncio.run(
        reconcile(
            platform.obj, platform=platform, metrics=metrics, clock=lambda: now, telemetry=telemetry
        )
    )


def test_first_pass_runs_stable_routes_it_and_writes_status() -> None:
    p = Recorder(manifest())
    result = run(p)
    kinds = [k for k, _ in p.calls]
    assert kinds == ["ensure", "traffic", "status", "event"]  # Events after their write
    assert p.obj["status"]["stable"]["version"] == "v1"
    assert result.decision.status.stable is not None
    # The next pass sees it ready, the one after clears the posted Events from status;
    # after that, nothing new: no write, no event.
    run(p, now=T0 + timedelta(seconds=1))
    run(p, now=T0 + timedelta(seconds=2))
    assert "pendingEvents" not in p.obj["status"]
    p.calls.clear()
    run(p, now=T0 + timedelta(seconds=3))
    assert [k for k, _ in p.calls if k in {"status", "event"}] == []


def test_invalid_spec_keeps_stable_routed_and_says_why() -> None:
    p = Recorder(manifest())
    run(p)
    stable = p.obj["status"]["stable"]["revision"]
    p.calls.clear()
    bad = manifest("v2", replicas=-1)
    bad["status"] = p.obj["status"]
    p.obj = bad
    run(p, now=T0 + timedelta(seconds=5))
    assert ("event", "InvalidSpec") in p.calls
    assert not [c for c in p.calls if c[0] == "ensure"]
    (traffic,) = [c[1] for c in p.calls if c[0] == "traffic"]
    assert traffic.stable == stable and traffic.candidate_weight == 0
    assert p.obj["status"]["phase"] == "Degraded"
    assert "spec.replicas" in p.obj["status"]["message"]


def test_the_autoscaler_is_kept_once_per_pass_and_never_dropped_by_an_invalid_spec() -> None:
    """Found in review: the invalid-spec path executed with a placeholder spec, whose missing
    ``autoscaling`` told the platform to delete the HPA (and every analysis round of a pass
    applied it again)."""
    scaling = {"maxReplicas": 4, "targetCPUUtilization": 70}
    p = Recorder(manifest(autoscaling=scaling))
    run(p)
    assert len(p.autoscaled) == 1 and p.autoscaled[0].max_replicas == 4
    bad = manifest("v2", replicas=-1, autoscaling=scaling)
    bad["status"] = p.obj["status"]
    p.obj = bad
    run(p, now=T0 + timedelta(seconds=5))
    assert p.obj["status"]["phase"] == "Degraded"
    assert len(p.autoscaled) == 1, "an invalid spec touched the autoscaler"


def test_a_check_its_traffic_provider_cannot_feed_degrades_the_spec() -> None:
    """The CRD accepts agreement with any provider; only the Router compares answers."""
    blue_green = {"type": "BlueGreen", "blueGreen": {"autoPromote": True}}
    p = Recorder(manifest(strategy=blue_green, traffic={"provider": "Service"}))
    run(p)
    bad = manifest(
        "v2",
        strategy=blue_green,
        traffic={"provider": "Service"},
        analysis={"metrics": [{"name": "agreement", "min": 0.9}]},
    )
    bad["status"] = p.obj["status"]
    p.obj = bad
    run(p, now=T0 + timedelta(seconds=5))
    assert p.obj["status"]["phase"] == "Degraded"
    assert "spec.traffic.provider" in p.obj["status"]["message"]
    assert "use traffic.provider Router" in p.obj["status"]["message"]
    assert ("event", "InvalidSpec") in p.calls


def test_analysis_is_measured_and_fed_back_in_the_same_pass() -> None:
    """A failing candidate is never promoted on a failure under failureLimit: it waits for
    the next measurement and is rolled back past the limit."""
    analysis = {
        "interval": "10s",
        "metrics": [{"name": "quality", "query": 'max(q{revision="{{ candidate }}"})', "min": 0.5}],
    }
    p = Recorder(manifest(analysis=analysis))
    run(p)
    p.obj["spec"]["model"] = {"uri": "https://m.example.com/v2.onnx", "version": "v2"}
    metrics = FixedMetrics(0.1)
    telemetry = Telemetry()
    now = T0
    for _ in range(12):  # the candidate starts, is ready, is measured each interval
        now += timedelta(seconds=5)
        run(p, metrics=metrics, now=now, telemetry=telemetry)
    assert any('revision="' in q for q in metrics.queries)
    status = p.obj["status"]
    assert (status.get("rolledBack") or {}).get("version") == "v2", status
    assert status["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
    assert ("event", "AnalysisFailed") in p.calls and ("event", "RolledBack") in p.calls
    assert ("event", "Promoted") not in p.calls


def test_every_comparable_check_is_measured_with_telemetry_on() -> None:
    """Each check ``compare`` accepts goes through a whole pass with the operator's metrics
    on (a latency compare once crashed every pass there, in the dashboards' bounds)."""
    from serinus_operator.api.names import COMPARABLE_CHECKS

    compare = {"maxDegradation": 0.01}
    analysis = {"interval": "10s", "metrics": [
        {"name": name, "compare": compare} for name in COMPARABLE_CHECKS
    ]}  # fmt: skip
    p = Recorder(manifest(analysis=analysis))
    run(p)
    p.obj["spec"]["model"] = {"uri": "https://m.example.com/v2.onnx", "version": "v2"}
    metrics, telemetry, now = FixedMetrics(0.1), Telemetry(), T0
    for _ in range(6):
        now += timedelta(seconds=5)
        run(p, metrics=metrics, now=now, telemetry=telemetry)
    verdicts = {
        s.labels["metric"]
        for family in telemetry.registry.collect()
        if family.name == "serinus_analysis_verdict"
        for s in family.samples
    }
    assert verdicts == set(COMPARABLE_CHECKS)


class LatencyHistograms(FixedMetrics):
    """Answers as Prometheus does for histograms (a series per ``le``): both revisions
    0.5% slower than 25 ms; the stable's hour before the run (``@``) as ``before``."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.before = {"0.025": 995.0, "0.25": 1000.0, "+Inf": 1000.0}

    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        self.queries.append(promql)
        if "serinus_request_duration_seconds_bucket" not in promql:
            return QueryResult(values=(100.0,))
        now = {"0.025": 1990.0, "0.25": 2000.0, "+Inf": 2000.0}
        buckets = self.before if " @ " in promql else now
        return QueryResult(tuple(buckets.values()), labels=tuple({"le": le} for le in buckets))


def test_a_latency_compares_threshold_is_chosen_once_per_run_and_kept_in_status() -> None:
    compare = {"maxDegradation": 0.0001}  # equal shares: Inconclusive for a long while
    analysis = {"interval": "10s", "metrics": [{"name": "latency-p99", "compare": compare}]}
    p = Recorder(manifest(analysis=analysis))
    run(p)
    p.obj["spec"]["model"] = {"uri": "https://m.example.com/v2.onnx", "version": "v2"}
    metrics, now, kept = LatencyHistograms(), T0, []
    for _ in range(8):
        now += timedelta(seconds=5)
        run(p, metrics=metrics, now=now)
        measured = (p.obj["status"].get("analysis") or {}).get("metrics") or []
        kept += [m.get("slowerThan") for m in measured]
        if kept:  # once chosen, the past "moves": p99 would now be the 250 ms bucket
            metrics.before = {"0.025": 0.0, "0.25": 1000.0, "+Inf": 1000.0}
    assert kept and set(kept) == {0.025}, kept
    assert len([q for q in metrics.queries if " @ " in q]) == 1


def test_a_pass_never_sends_the_same_routes_or_revision_twice() -> None:
    """The decision after a measurement states the whole desired world again; a pass
    carries out only what it has not done yet (each repeat costs API requests). Failing
    measurements under failureLimit change nothing, so every round repeats the world."""
    analysis = {
        "interval": "10s",
        "failureLimit": 5,
        "metrics": [{"name": "quality", "query": 'max(q{revision="{{ candidate }}"})', "min": 0.5}],
    }
    p = Recorder(manifest(analysis=analysis))
    run(p)
    p.obj["spec"]["model"] = {"uri": "https://m.example.com/v2.onnx", "version": "v2"}
    now, measured = T0, 0
    for _ in range(12):
        now += timedelta(seconds=5)
        p.calls.clear()
        p.ensured.clear()
        metrics = FixedMetrics(0.1)
        run(p, metrics=metrics, now=now)
        measured += bool(metrics.queries)
        routes = [c[1] for c in p.calls if c[0] == "traffic"]
        for sent in (routes, p.ensured):
            assert all(sent.count(x) == 1 for x in sent), sent
    assert measured  # the passes did take a measurement round


def test_a_conflict_on_the_status_write_propagates_for_a_retry() -> None:
    p = Recorder(manifest())
    p.conflict = True
    with pytest.raises(Conflict):
        run(p)


def test_a_conflict_from_another_clients_labels_is_written_again_not_decided_again() -> None:
    p = Recorder(manifest())
    read = dict(p.obj)

    def relabel(obj: dict[str, Any]) -> bool:
        p.obj = {**obj, "metadata": {**obj["metadata"], "labels": {"gitops": "synced"}}}
        return True

    p.meddle = relabel
    run(p)
    assert [k for k, _ in p.calls].count("status") == 1
    assert p.obj["status"]["stable"]["version"] == "v1"
    assert read["metadata"].get("labels") is None


def test_a_conflict_that_changed_the_spec_is_decided_again() -> None:
    p = Recorder(manifest())

    def respec(obj: dict[str, Any]) -> bool:
        p.obj = {**obj, "spec": {**obj["spec"], "replicas": 5}}
        return True

    p.meddle = respec
    with pytest.raises(Conflict):
        run(p)


def test_an_unreadable_status_starts_over_without_crashing() -> None:
    p = Recorder(manifest())
    p.obj["status"] = {"phase": "NotAPhase", "stable": {"revision": 7}}
    run(p)
    assert p.obj["status"]["stable"]["version"] == "v1"


# --- Events exactly once ---------------------------------------------------------------------

ANALYSED = {"interval": "10s", "metrics": [{"name": "q", "query": "max(q)", "min": 0.5}]}
STEPS = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"setWeight": 60}]}}


def rollout(faults: dict[int, str]) -> list[tuple[str, Any]]:
    """First deploy, then a canary to promotion, one pass every 5 s; pass ``i`` suffers
    ``faults[i]``. Returns the Events stored, in order."""
    p = Recorder(manifest(strategy=STEPS, analysis=ANALYSED))
    metrics = FixedMetrics(0.9)
    now = T0
    for i in range(40):
        if i == 3:
            p.obj["spec"]["model"] = {"uri": "https://m.example.com/v2.onnx", "version": "v2"}
            p.obj["metadata"]["generation"] = 2
        p.fail = {faults[i]} if i in faults else set()
        now += timedelta(seconds=5)
        with contextlib.suppress(ApiError, Killed):
            run(p, metrics=metrics, now=now)
    assert p.obj["status"]["stable"]["version"] == "v2", p.obj["status"]
    return [c for c in p.calls if c[0] == "event"]


def test_every_event_of_a_rollout_is_posted_once() -> None:
    events = rollout({})
    reasons = [r for _, r in events]
    for once in ("Initialized", "RolloutStarted", "CandidateReady", "Promoted"):
        assert reasons.count(once) == 1, reasons
    assert reasons.count("WeightChanged") == 2, reasons


@pytest.mark.parametrize("fault", ["status", "kill", "event"])
@pytest.mark.parametrize("at", range(0, 14))
def test_no_failure_point_repeats_or_loses_an_event(fault: str, at: int) -> None:
    """Fail each pass's status write in turn, kill the operator between the write and the
    post, or have the Event API refuse: the Events stored are those of a fault-free run."""
    clean = sorted(r for _, r in rollout({}))
    faulty = sorted(r for _, r in rollout({at: fault, at + 1: fault}))
    assert faulty == clean

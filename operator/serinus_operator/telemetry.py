"""The operator's own Prometheus metrics: what each rollout is doing and why.

Gauges are set from the status the loop just wrote (so they always agree with
``kubectl get md``); counters count what happened since this operator process started
(new history entries, analysis verdicts). Names are a contract with the dashboards and
alerts in ``manifests/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serinus_operator.analysis.verdict import Measurement, Verdict
from serinus_operator.rollout.status import HistoryEntry, Phase, RolloutStatus, ts

FIRST_REVISION = "FirstRevision"
#: Label values as the dashboards and alerts spell them.
_VERDICT = {
    Verdict.PASS: "pass",
    Verdict.FAIL: "fail",
    Verdict.INCONCLUSIVE: "inconclusive",
    Verdict.NO_DATA: "no_data",
}
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)


class CachedKind(Protocol):
    """What the metrics read of one watch cache (platforms/watch_cache.KindCache)."""

    relists: int

    @property
    def served(self) -> bool: ...

    def __len__(self) -> int: ...

    def size_bytes(self) -> int: ...

    @property
    def label(self) -> str: ...


class _CacheCollector(Collector):
    """The watch caches' size, read at scrape time (nothing to keep in step)."""

    def __init__(self, caches: Callable[[], Sequence[CachedKind]]) -> None:
        self._caches = caches

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "serinus_watch_cache_objects", "Objects held by the watch caches", labels=["kind"]
        )
        size = GaugeMetricFamily(
            "serinus_watch_cache_bytes",
            "Bytes of JSON held by the watch caches (without managedFields)",
            labels=["kind"],
        )
        relists = CounterMetricFamily(
            "serinus_watch_relists",
            "Full lists by the watch caches: one at start, then one per 410 Gone",
            labels=["kind"],
        )
        totals: dict[str, list[int]] = {}
        for cache in self._caches():
            t = totals.setdefault(cache.label, [0, 0, 0])
            t[0] += len(cache)
            t[1] += cache.size_bytes()
            t[2] += cache.relists
        for kind, (n, b, r) in sorted(totals.items()):
            objects.add_metric([kind], n)
            size.add_metric([kind], b)
            relists.add_metric([kind], r)
        yield from (objects, size, relists)


class Telemetry:
    """One registry per operator (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._register_rollout_metrics()
        self._register_analysis_metrics()
        self.reconcile_errors = Counter(
            "serinus_reconcile_errors",
            "Reconcile passes that failed (API errors, conflicts); retried with back-off",
            ["namespace", "name"],
            registry=self.registry,
        )
        self._register_pass_metrics()
        self._revisions: dict[tuple[str, str], set[tuple[str, str]]] = {}
        #: Per ModelDeployment: the (check, revision) series of the analysis gauges, and the
        #: (check, min|max) series of its bounds, so that none outlives what it shows.
        self._checks: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._bounds: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def watch_caches(self, caches: Callable[[], Sequence[CachedKind]]) -> None:
        """Export the size of the platform's watch caches."""
        self.registry.register(_CacheCollector(caches))

    def _register_rollout_metrics(self) -> None:
        """Phase, traffic, step and finished rollouts, per ModelDeployment."""
        r = self.registry
        self.phase = Gauge(
            "serinus_rollout_phase",
            "1 for the ModelDeployment's current phase, 0 for the others",
            ["namespace", "name", "phase"],
            registry=r,
        )
        self.weight = Gauge(
            "serinus_rollout_weight",
            "Percent of live traffic (stable, candidate) or mirrored requests (mirror)",
            ["namespace", "name", "role", "revision"],
            registry=r,
        )
        self.step = Gauge(
            "serinus_rollout_step",
            "Index of the current canary step",
            ["namespace", "name"],
            registry=r,
        )
        self.rollouts = Counter(
            "serinus_rollouts",
            "Rollouts finished, by outcome",
            ["namespace", "name", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "serinus_rollout_duration_seconds",
            "From a rollout's start to its outcome",
            ["namespace", "name", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )

    def _register_pass_metrics(self) -> None:
        """The bounded queue of reconcile passes (passes.py)."""
        r = self.registry
        self.pass_queue_depth = Gauge(
            "serinus_reconcile_queue_depth",
            "Reconcile passes waiting for a slot (--max-concurrent-passes)",
            registry=r,
        )
        self.passes_running = Gauge(
            "serinus_reconcile_passes_running", "Reconcile passes running now", registry=r
        )
        self.pass_wait = Histogram(
            "serinus_reconcile_wait_seconds",
            "From a pass being asked for to its start, by urgency (due or resync)",
            ["urgency"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )

    def _register_analysis_metrics(self) -> None:
        """Measured values, their bounds, verdicts, and whether the provider answers."""
        r = self.registry
        per_check = ["namespace", "name", "metric", "revision"]

        def gauge(name: str, documentation: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, documentation, [*per_check, *extra], registry=r)

        self.analysis_value = gauge(
            "serinus_analysis_value", "Last measured value of an analysis check"
        )
        self.analysis_baseline = gauge(
            "serinus_analysis_baseline",
            "A compare-to-baseline check's value for the baseline (stable) revision",
        )
        self.analysis_samples = gauge(
            "serinus_analysis_samples",
            "The candidate's sample size behind a compare-to-baseline check's last verdict",
        )
        self.analysis_p_value = gauge(
            "serinus_analysis_p_value",
            "The always-valid p-value of a compare-to-baseline check's last measurement",
        )
        self.analysis_bound = gauge(
            "serinus_analysis_bound",
            "What the last measurement was held to: a fixed min or max, or for a compare "
            "check the baseline's value plus or minus maxDegradation",
        )
        self._per_check = (
            self.analysis_value,
            self.analysis_baseline,
            self.analysis_samples,
            self.analysis_p_value,
            self.analysis_bound,
        )
        self.analysis_verdict = gauge(
            "serinus_analysis_verdict",
            "1 for an analysis check's last verdict, 0 for the others",
            ("verdict",),
        )
        self.analysis_threshold = Gauge(
            "serinus_analysis_threshold",
            "The bound an analysis check is held to",
            ["namespace", "name", "metric", "bound"],
            registry=r,
        )
        self.verdicts = Counter(
            "serinus_analysis_verdicts",
            "Analysis verdicts, by check and result",
            ["namespace", "name", "metric", "verdict"],
            registry=r,
        )
        self.provider_up = Gauge(
            "serinus_analysis_provider_up",
            "1 when the last query to the metric provider was answered",
            ["provider"],
            registry=r,
        )

    def observe_status(
        self, namespace: str, name: str, before: RolloutStatus, after: RolloutStatus
    ) -> None:
        if (namespace, name) not in self._revisions:
            # Born at 0, so that increase() sees the first rollback too.
            for outcome in _OUTCOMES:
                self.rollouts.labels(namespace, name, outcome)
        for phase in Phase:
            self.phase.labels(namespace, name, phase.value).set(1 if after.phase == phase else 0)
        shown: set[tuple[str, str]] = set()
        if after.stable is not None:
            shown.add(("stable", after.stable.ref.revision))
            self.weight.labels(namespace, name, "stable", after.stable.ref.revision).set(
                after.traffic.stable
            )
        c = after.candidate
        if c is not None:
            for role, value in (
                ("candidate", after.traffic.candidate),
                ("mirror", after.traffic.mirror),
            ):
                shown.add((role, c.ref.revision))
                self.weight.labels(namespace, name, role, c.ref.revision).set(value)
        for role, revision in self._revisions.get((namespace, name), set()) - shown:
            self.weight.remove(namespace, name, role, revision)
        self._revisions[(namespace, name)] = shown
        # The analysis series follow the status's analysis: the candidate's, or after a
        # rollback the failed revision's (kept to explain it), none after a promotion.
        # Any other revision's last verdict would stay at 1 (and fire what alerts on it).
        shown_analysis = _analysed_revision(after)
        self._keep_checks(
            namespace, name, keep=lambda _metric, revision: revision == shown_analysis
        )
        self.step.labels(namespace, name).set(0 if c is None else c.step)
        for entry in _new_entries(before.history, after.history):
            if entry.reason == FIRST_REVISION:
                continue  # the first deploy is not a rollout: nothing was compared
            outcome = _outcome_label(entry)
            self.rollouts.labels(namespace, name, outcome).inc()
            seconds = (entry.finished_at - entry.started_at).total_seconds()
            self.duration.labels(namespace, name, outcome).observe(max(seconds, 0.0))

    def observe_measurement(
        self,
        namespace: str,
        name: str,
        measurement: Measurement,
        *,
        bounds: Iterable[tuple[str, float | None, float | None]],
    ) -> None:
        current = {(r.name, measurement.revision) for r in measurement.results}
        self._keep_checks(namespace, name, keep=lambda *check: check in current)
        self._checks[(namespace, name)] = current
        for result in measurement.results:
            self.verdicts.labels(namespace, name, result.name, _VERDICT[result.verdict]).inc()
            labels = (namespace, name, result.name, measurement.revision)
            for gauge, value in (
                (self.analysis_value, result.value),
                (self.analysis_baseline, result.baseline),
                (self.analysis_samples, result.samples),
                (self.analysis_p_value, result.p_value),
                (self.analysis_bound, result.threshold),
            ):
                if value is None:  # not measured this time: no stale number beside it
                    _remove(gauge, *labels)
                else:
                    gauge.labels(*labels).set(value)
            for verdict, label in _VERDICT.items():
                self.analysis_verdict.labels(*labels, label).set(verdict == result.verdict)
        shown = {
            (metric, bound)
            for metric, low, high in bounds
            for bound, value in (("min", low), ("max", high))
            if value is not None
        }
        for metric, bound in self._bounds.get((namespace, name), set()) - shown:
            _remove(self.analysis_threshold, namespace, name, metric, bound)
        self._bounds[(namespace, name)] = shown
        for metric, low, high in bounds:
            for bound, value in (("min", low), ("max", high)):
                if value is not None:
                    self.analysis_threshold.labels(namespace, name, metric, bound).set(value)

    def _keep_checks(self, namespace: str, name: str, *, keep: Callable[[str, str], bool]) -> None:
        """Drop the analysis series of the (check, revision) pairs ``keep`` refuses."""
        checks = self._checks.get((namespace, name), set())
        for metric, revision in [c for c in checks if not keep(*c)]:
            checks.discard((metric, revision))
            labels = (namespace, name, metric, revision)
            for gauge in self._per_check:
                _remove(gauge, *labels)
            for label in _VERDICT.values():
                _remove(self.analysis_verdict, *labels, label)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted ModelDeployment's gauges (counters stay: they are history)."""
        for phase in Phase:
            _remove(self.phase, namespace, name, phase.value)
        for role, revision in self._revisions.pop((namespace, name), set()):
            _remove(self.weight, namespace, name, role, revision)
        _remove(self.step, namespace, name)
        self._keep_checks(namespace, name, keep=lambda *_: False)
        self._checks.pop((namespace, name), None)
        for metric, bound in self._bounds.pop((namespace, name), set()):
            _remove(self.analysis_threshold, namespace, name, metric, bound)


def _analysed_revision(status: RolloutStatus) -> str | None:
    """The revision whose analysis the status shows, if any."""
    if status.candidate is not None:
        return status.candidate.ref.revision
    if status.analysis is not None and status.rolled_back is not None:
        return status.rolled_back.ref.revision
    return None


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def _new_entries(
    before: tuple[HistoryEntry, ...], after: tuple[HistoryEntry, ...]
) -> list[HistoryEntry]:
    # Compared as stored (second resolution): ``before`` was read back from the API.
    seen = {(h.revision, ts(h.started_at)) for h in before}
    return [h for h in after if (h.revision, ts(h.started_at)) not in seen]


_OUTCOMES = ("promoted", "rolled_back", "aborted", "superseded", "reverted")


def _outcome_label(entry: HistoryEntry) -> str:
    return {
        "Promoted": "promoted",
        "RolledBack": "rolled_back",
        "Aborted": "aborted",
        "Superseded": "superseded",
        "Reverted": "reverted",
    }.get(entry.outcome.value, entry.outcome.value.lower())

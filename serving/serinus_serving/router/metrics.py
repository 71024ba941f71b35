"""Prometheus metrics of the router (plain counters on the event-loop thread, rendered by a
collector at scrape time; see serinus_serving.metrics for why)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from serinus_serving.metrics import LATENCY_BUCKETS, FastHistogram
from serinus_serving.router.shadow_protocol import STALL_SECONDS, ShadowTotals


class RouterMetrics(Collector):
    def __init__(self, model: Callable[[], str]) -> None:
        self.model = model
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency: defaultdict[str, FastHistogram] = defaultdict(
            lambda: FastHistogram(LATENCY_BUCKETS)
        )
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        #: Copies the router itself dropped (draining, too large, worker busy or down).
        self.shadow: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        #: What the shadow worker reports: its results, differences and copies in flight.
        self.shadow_worker: Callable[[], ShadowTotals] = ShadowTotals
        #: Whether the worker takes copies now (ready and making progress), and how often
        #: it has been started again.
        self.shadow_worker_state: Callable[[], tuple[bool, int]] = lambda: (False, 0)
        self.reloads: defaultdict[str, int] = defaultdict(int)
        self.weights: Callable[[], dict[str, int]] = dict
        #: More families, given the model (the prediction log's and the labels' counters).
        self.extra: list[Callable[[str], Iterator[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe(self, revision: str, code: int, seconds: float) -> None:
        self.requests[revision, str(code)] += 1
        self.latency[revision].observe(seconds)

    def collect(self) -> Iterator[Metric]:
        model = self.model()
        yield from self._collect_requests(model)
        yield from self._collect_shadow(model)
        yield from self._collect_table(model)
        for extra in self.extra:
            yield from extra(model)

    def _collect_requests(self, model: str) -> Iterator[Metric]:
        """Live requests: counts, latency and backend failures per serving revision."""
        requests = CounterMetricFamily(
            "serinus_router_requests",
            "Requests the router answered, by the revision that served them and status code.",
            labels=["code", "model", "revision"],
        )
        for (revision, code), value in sorted(self.requests.items()):
            requests.add_metric([code, model, revision], value)
        yield requests

        latency = HistogramMetricFamily(
            "serinus_router_request_duration_seconds",
            "Time from receiving a request to its response, by serving revision.",
            labels=["model", "revision"],
        )
        for revision, hist in sorted(self.latency.items()):
            latency.add_metric([model, revision], hist.buckets(), hist.total)
        yield latency

        errors = CounterMetricFamily(
            "serinus_router_upstream_errors",
            "Backend failures by kind: connect (503), timeout (504), protocol (502).",
            labels=["kind", "model", "revision"],
        )
        for (revision, kind), value in sorted(self.upstream_errors.items()):
            errors.add_metric([kind, model, revision], value)
        yield errors

    def _collect_shadow(self, model: str) -> Iterator[Metric]:
        """Shadow copies: results (the router's drops and the worker's), differences, in
        flight; then the worker's own health."""
        shadow = CounterMetricFamily(
            "serinus_shadow_requests",
            "Shadow copies by result: agree, disagree (deciding outputs differ), error "
            "(the shadow failed or answered something incomparable), dropped (saturated).",
            labels=["model", "primary", "result", "shadow"],
        )
        totals = self.shadow_worker()
        counts = defaultdict(int, totals.counts)
        for key, value in self.shadow.items():
            counts[key] += value
        for (primary, candidate, result), value in sorted(counts.items()):
            shadow.add_metric([model, primary, result, candidate], value)
        yield shadow

        difference = HistogramMetricFamily(
            "serinus_shadow_difference",
            "Largest absolute difference between shadow and primary float outputs.",
            labels=["model", "primary", "shadow"],
        )
        for (primary, candidate), hist in sorted(totals.difference.items()):
            difference.add_metric([model, primary, candidate], hist.buckets(), hist.total)
        yield difference

        inflight = GaugeMetricFamily(
            "serinus_shadow_inflight", "Shadow copies in flight.", labels=["model"]
        )
        inflight.add_metric([model], totals.inflight)
        yield inflight
        yield from self._collect_shadow_worker(model)

    def _collect_shadow_worker(self, model: str) -> Iterator[Metric]:
        ready, restarts = self.shadow_worker_state()
        up = GaugeMetricFamily(
            "serinus_shadow_worker_up",
            "1 while the shadow worker takes copies; 0 while it starts, after it died, or "
            f"while it makes no progress (silent for {STALL_SECONDS:g}s: stopped or stuck).",
            labels=["model"],
        )
        up.add_metric([model], 1 if ready else 0)
        yield up
        restarted = CounterMetricFamily(
            "serinus_shadow_worker_restarts",
            "Times the shadow worker was started again after it stopped.",
            labels=["model"],
        )
        restarted.add_metric([model], restarts)
        yield restarted

    def _collect_table(self, model: str) -> Iterator[Metric]:
        """The routing table in force: weights per revision, and how loads of it went."""
        weights = GaugeMetricFamily(
            "serinus_router_weight",
            "Percent of live traffic routed to each revision by the current table.",
            labels=["model", "revision"],
        )
        for revision, weight in sorted(self.weights().items()):
            weights.add_metric([model, revision], weight)
        yield weights

        reloads = CounterMetricFamily(
            "serinus_router_table_reloads",
            "Routing-table loads by result: applied, or rejected as invalid.",
            labels=["result"],
        )
        for result, value in sorted(self.reloads.items()):
            reloads.add_metric([result], value)
        yield reloads

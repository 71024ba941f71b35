"""Prometheus metrics of the model server.

Names and labels are part of the analysis contract (the rollout checks query them), so
they are documented in docs/serving.md and changed only with a CHANGELOG entry. Label
children are bound once at start-up: ``labels()`` lookups cost more than the increment.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# ``*_created`` series double the scrape size and no query of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OUTCOMES = ("success", "client_error", "server_error")
PROTOCOLS = ("v2", "v1")


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    return "client_error" if status < 500 else "server_error"


@dataclass(frozen=True, slots=True)
class ModelLabels:
    model: str
    version: str
    revision: str


class ServingMetrics:
    """All metrics of one server, in their own registry so tests can run many servers."""

    def __init__(self, labels: ModelLabels, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        names = ("model", "version", "revision")
        values = (labels.model, labels.version, labels.revision)
        self.requests = Counter(
            "serinus_requests",
            "Inference requests by protocol and outcome (success, client_error, server_error).",
            [*names, "protocol", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "serinus_request_duration_seconds",
            "Time from receiving an inference request to its response, by protocol.",
            [*names, "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "serinus_inference_duration_seconds",
            "Time spent in the model runtime per call (one call may serve a batch).",
            names,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "serinus_batch_size",
            "Rows per model runtime call.",
            names,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "serinus_inflight_requests",
            "Inference requests being served now.",
            names,
            registry=self.registry,
        )
        self.ready = Gauge(
            "serinus_model_ready",
            "1 when the model is loaded, warmed up and the server is not draining.",
            names,
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "serinus_model_load_duration_seconds",
            "Time the last model load took (fetch, verify, compile, warm-up).",
            names,
            registry=self.registry,
        )
        self.info = Gauge(
            "serinus_model_info",
            "Constant 1, labelled with what is being served.",
            [*names, "sha256", "platform"],
            registry=self.registry,
        )
        self._values = values
        self.request_count = {
            (p, o): self.requests.labels(*values, p, o) for p in PROTOCOLS for o in OUTCOMES
        }
        self.request_latency = {p: self.request_seconds.labels(*values, p) for p in PROTOCOLS}
        self.inference_latency = self.inference_seconds.labels(*values)
        self.batch_rows = self.batch_size.labels(*values)
        self.inflight_now = self.inflight.labels(*values)
        self.ready_now = self.ready.labels(*values)
        for child in self.request_count.values():
            child.inc(0)

    def observe_request(self, protocol: str, status: int, seconds: float) -> None:
        self.request_count[protocol, outcome_of(status)].inc()
        self.request_latency[protocol].observe(seconds)

    def model_loaded(self, *, seconds: float, sha256: str, platform: str, ready: bool) -> None:
        self.load_seconds.labels(*self._values).set(seconds)
        if sha256:
            self.info.labels(*self._values, sha256, platform).set(1)
        self.ready_now.set(1 if ready else 0)

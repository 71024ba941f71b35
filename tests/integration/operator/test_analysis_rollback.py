"""A canary rolled back on a failed analysis: the real operator queries a real Prometheus.

Prometheus scrapes a small exporter that plays the candidate's pods: it serves requests
(``serinus_requests_total`` grows, so the request-count gate opens) and a custom quality
metric the test sets below the spec's bound. Nothing here is mocked but the pods' numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from serinus_operator.api import parse
from support.cluster import Cluster
from support.prometheus import prometheus
from support.serve import free_port

pytestmark = pytest.mark.integration


class Exporter:
    """The metrics a candidate's pods would export, under the test's control."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "serinus_requests",
            "requests",
            ["model", "version", "revision", "protocol", "outcome"],
            registry=self.registry,
        )
        self.quality = Gauge("candidate_quality", "quality", ["revision"], registry=self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self.serving: set[str] = set()
        self._stop = threading.Event()
        self._traffic = threading.Thread(target=self._serve, daemon=True)
        self._traffic.start()

    def _serve(self) -> None:
        while not self._stop.wait(0.05):
            for revision in list(self.serving):
                self.requests.labels("fraud", "v", revision, "v2", "ok").inc()

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    try:
        yield e
    finally:
        e.close()


def manifest(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"uri": f"https://models.example.com/{version}.onnx", "version": version},
            "replicas": 1,
            "strategy": {
                "type": "Canary",
                "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1h"}}]},
            },
            "analysis": {
                "interval": "3s",
                "failureLimit": 1,
                "minRequests": 1,
                "metrics": [
                    {
                        "name": "quality",
                        "query": 'max(candidate_quality{revision="{{ candidate }}"})',
                        "min": 0.5,
                    }
                ],
            },
        },
    }


def test_canary_rolled_back_when_analysis_fails(
    cluster: Cluster, exporter: Exporter, tmp_path: Path
) -> None:
    v2 = parse(manifest("v2")).spec.revision
    exporter.serving.add(v2)
    exporter.quality.labels(v2).set(0.1)  # below min 0.5
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    with prometheus(
        [f"127.0.0.1:{exporter.port}"], workdir=workdir, labels={"namespace": cluster.namespace}
    ) as prom:
        cluster.operator.prometheus_url = prom.url
        cluster.operator.start()
        cluster.apply(manifest("v1"))
        s = cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")
        v1 = s["stable"]["revision"]
        cluster.apply(manifest("v2"))
        s = cluster.wait_status(
            "fraud",
            lambda s: (s.get("rolledBack") or {}).get("revision") == v2,
            timeout=60,
            what="rolled back on the failed analysis",
        )
        assert s["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
        assert s["stable"]["revision"] == v1
        metrics = {m["name"]: m for m in s["analysis"]["metrics"]}
        assert metrics["quality"]["result"] == "Fail"
        assert metrics["quality"]["value"] == pytest.approx(0.1)
        assert s["history"][-1]["outcome"] == "RolledBack"
        cluster.wait_events("fraud", "AnalysisFailed", "RolledBack")
        assert cluster.weights("fraud") == {v1: 100}
        op = cluster.operator
        assert op.sample("serinus_analysis_value", metric="quality", revision=v2) == 0.1
        assert op.sample("serinus_analysis_threshold", metric="quality", bound="min") == 0.5
        assert op.sample("serinus_analysis_verdicts_total", metric="quality", verdict="fail")
        assert op.sample("serinus_analysis_provider_up", provider="prometheus") == 1
        assert op.sample("serinus_rollouts_total", name="fraud", outcome="rolled_back") == 1

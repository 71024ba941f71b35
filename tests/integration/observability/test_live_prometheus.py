"""Every dashboard query returns data from a real Prometheus scraping real Serinus processes,
and every series selector of every alert matches series those processes export.

Two `serinus serve` revisions of a model (with a drift profile built by `serinus profile`)
sit behind a `serinus router` that sends live traffic to the stable one and shadows every
request to the candidate; a third, dead revision is pinned now and then so the router counts
upstream errors; ground truth is fed back for some requests. The operator's metrics come
from its own `Telemetry` class, set to what a rollout in progress would show (the operator
itself needs a Kubernetes API, which the operator's own tests emulate). Prometheus scrapes
the model processes with a `namespace` target label, as a PodMonitor would, and the operator
with `honor_labels`, as the chart's ServiceMonitor does.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import start_http_server

from serinus_operator.telemetry import Telemetry
from support import models
from support.prometheus import prometheus
from support.serve import SERINUS, ServeProcess, free_port, router, serve
from unit.observability import kit

pytestmark = pytest.mark.integration

NAMESPACE, MODEL = "ml", "fraud"
STABLE, CANDIDATE = "r1", "r2"
FEATURES = 4
#: What Grafana sends with "All" revisions and the error-rate analysis metric selected.
LIVE = {
    **kit.VARIABLES,
    "namespace": NAMESPACE,
    "model": MODEL,
    "revision": ".*",
    "metric": "error-rate",
    "__rate_interval": "20s",
    "__range": "5m",
}
ALERTS = [(path, rule) for path in kit.ALERT_FILES for rule in kit.alerts(path)]


def operator_metrics() -> Telemetry:
    """The operator's metrics as a canary of ``r2`` at step 1 shows them."""
    t = Telemetry()
    for phase in ("Initializing", "Stable", "Progressing", "Paused", "Promoting", "RolledBack",
                  "Degraded"):  # fmt: skip
        t.phase.labels(NAMESPACE, MODEL, phase).set(1 if phase == "Progressing" else 0)
    t.weight.labels(NAMESPACE, MODEL, "stable", STABLE).set(100)
    t.weight.labels(NAMESPACE, MODEL, "candidate", CANDIDATE).set(0)
    t.weight.labels(NAMESPACE, MODEL, "mirror", CANDIDATE).set(100)
    t.step.labels(NAMESPACE, MODEL).set(1)
    for outcome in ("promoted", "rolled_back"):
        t.rollouts.labels(NAMESPACE, MODEL, outcome).inc()
        t.duration.labels(NAMESPACE, MODEL, outcome).observe(420)
    t.analysis_value.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE).set(0.002)
    # A compare-to-baseline check: the stable's value, the candidate's n, the p-value.
    t.analysis_baseline.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE).set(0.003)
    t.analysis_samples.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE).set(2240)
    t.analysis_p_value.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE).set(1.2e-9)
    t.analysis_bound.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE).set(0.013)
    for verdict in ("pass", "fail", "inconclusive", "no_data"):
        t.analysis_verdict.labels(NAMESPACE, MODEL, "error-rate", CANDIDATE, verdict).set(
            verdict == "fail"
        )
    t.analysis_threshold.labels(NAMESPACE, MODEL, "error-rate", "max").set(0.01)
    t.verdicts.labels(NAMESPACE, MODEL, "error-rate", "pass").inc()
    t.provider_up.labels("prometheus").set(1)
    t.reconcile_errors.labels(NAMESPACE, MODEL).inc(0)
    return t


def query(url: str, expr: str) -> list[object]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    result: list[object] = body["data"]["result"]
    return result


class Traffic:
    """Sends requests through the router (and now and then to a dead revision) until
    stopped, and feeds back the true label of every fifth request."""

    def __init__(self, entry: ServeProcess, stable: ServeProcess) -> None:
        self.entry, self.stable = entry, stable
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = np.random.default_rng(1)
        with httpx.Client(base_url=self.entry.url, timeout=5) as client:
            while not self.stop.is_set():
                x = rng.uniform(size=FEATURES)
                x[3] = rng.integers(0, 3)
                request_id = f"req-{self.sent}"
                body = {
                    "id": request_id,
                    "inputs": [
                        {"name": "X", "shape": [1, FEATURES], "datatype": "FP32",
                         "data": x.tolist()}
                    ],
                }  # fmt: skip
                headers = {"x-serinus-revision": "gone"} if self.sent % 25 == 24 else {}
                client.post(f"/v2/models/{MODEL}/infer", json=body, headers=headers)
                if self.sent % 5 == 0:
                    label = {"id": request_id, "label": int(x[0] > 0.5)}
                    httpx.post(f"{self.stable.url}/v2/models/{MODEL}/feedback", json=label)
                self.sent += 1
                time.sleep(0.005)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("dashboards-live")
    old = models.threshold_classifier(work / "old.onnx", threshold=0.5)
    new = models.threshold_classifier(work / "new.onnx", threshold=0.7)
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(2000, FEATURES))
    train[:, 3] = rng.integers(0, 3, size=2000)
    np.savetxt(work / "train.csv", train, delimiter=",", header="f0,f1,f2,f3", comments="",
               fmt="%.5f")  # fmt: skip
    for model in (old, new):  # a profile is bound to its model's sha256
        subprocess.run(
            [SERINUS, "profile", "--model", str(model), "--data", str(work / "train.csv"),
             "--categorical", "f3", "-o", str(model.with_suffix(".profile.json"))],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    telemetry = operator_metrics()
    exporter_port = free_port()
    exporter, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=telemetry.registry)
    with contextlib.ExitStack() as stack:
        revisions: dict[str, ServeProcess] = {}
        for i, (name, path) in enumerate(((STABLE, old), (CANDIDATE, new))):
            profile = str(path.with_suffix(".profile.json"))
            args = ["--model", str(path), "--name", MODEL, "--version", f"v{i + 1}"]
            args += ["--revision", name, "--profile", profile, "--drift-min-samples", "50"]
            revisions[name] = stack.enter_context(serve(*args, log_dir=work))
        table = {
            "model": MODEL,
            "revisions": {
                STABLE: {"url": revisions[STABLE].url, "weight": 100},
                CANDIDATE: {"url": revisions[CANDIDATE].url, "weight": 0},
                "gone": {"url": f"http://127.0.0.1:{free_port()}", "weight": 0},
            },
            "shadow": {"revision": CANDIDATE, "percent": 100},
        }
        routes = work / "routes.json"
        routes.write_text(json.dumps(table))
        entry = stack.enter_context(router(routes, log_dir=work))
        targets = [f"127.0.0.1:{s.port}" for s in (*revisions.values(), entry)]
        url = stack.enter_context(
            prometheus(
                targets,
                workdir=work,
                labels={"namespace": NAMESPACE},
                honoring=[f"127.0.0.1:{exporter_port}"],
            )
        ).url
        traffic = Traffic(entry, revisions[STABLE])
        traffic.thread.start()
        stack.callback(traffic.thread.join)
        stack.callback(traffic.stop.set)
        stack.callback(exporter.shutdown)
        # Two scrapes of everything, drift and live accuracy included, make every rate defined.
        deadline = time.monotonic() + 90
        wanted = (
            'count(up{job="test"} == 1) == 3',
            'count(up{job="honoring"} == 1) == 1',
            "count(serinus_drift_score) == 2",
            "count(serinus_live_accuracy) >= 1",
            "count(count_over_time(serinus_router_upstream_errors_total[1m]) > 1) >= 1",
            "count(count_over_time(serinus_drift_feature_js[1m]) > 1) >= 1",
        )
        while not all(query(url, w) for w in wanted):
            assert time.monotonic() < deadline, [w for w in wanted if not query(url, w)]
            time.sleep(0.5)
        time.sleep(2)
        yield url


@pytest.mark.parametrize("path", kit.DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_returns_data(live: str, path: Path) -> None:
    board = kit.load_dashboard(path)
    empty = [f"{title}: {expr}" for title, expr in kit.exprs(board, LIVE) if not query(live, expr)]
    assert empty == []


@pytest.mark.parametrize("path", kit.DASHBOARDS, ids=lambda p: p.stem)
def test_every_template_variable_finds_its_values(live: str, path: Path) -> None:
    board = kit.load_dashboard(path)
    for name, selector in kit.variable_selectors(board):
        selector = kit.substitute(selector, LIVE)
        assert query(live, selector), f"${name}: {selector} matches no series"


def test_stable_and_candidate_are_told_apart(live: str) -> None:
    """The model dashboard's side-by-side panels attribute traffic to the right revision."""
    board = kit.load_dashboard(kit.ROOT / "manifests" / "dashboards" / "model.json")
    panel = next(p for p in kit.panels(board) if p["title"] == "Requests: stable vs candidate")
    by_side = {t["legendFormat"]: kit.substitute(t["expr"], LIVE) for t in panel["targets"]}
    direct = 'sum(rate(serinus_requests_total{namespace="ml",model="fraud",revision="%s"}[20s]))'
    for side, revision in (("stable", STABLE), ("candidate", CANDIDATE)):
        [joined] = query(live, f"{by_side[side]} - {direct % revision}")
        assert abs(float(joined["value"][1])) < 1e-9, side  # type: ignore[index]


_SELECTOR = re.compile(r"\bserinus_[a-z0-9_]+(?:\{[^}]*\})?")


@pytest.mark.parametrize(("path", "rule"), ALERTS, ids=[r["alert"] for _, r in ALERTS])
def test_every_alert_selector_matches_live_series(
    live: str, path: Path, rule: dict[str, object]
) -> None:
    """Each series selector of each alert matches what the real processes export: the
    metric names, label names and label values (phases, outcomes, roles) are right."""
    expr = str(rule["expr"])
    selectors = _SELECTOR.findall(expr)
    assert selectors
    for selector in selectors:
        assert query(live, f"count({selector})"), f"{selector} matches no series"

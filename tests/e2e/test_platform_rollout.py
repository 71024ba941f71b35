"""A platform team's day, end to end, on a real Kubernetes control plane.

The story: install Serinus with kubectl and kustomize, deploy a fraud model (v1), roll out
a better one (v2: a canary at 20% then 60%, promoted on passing Prometheus analysis), then a
broken one (v3: its feature pipeline fails with HTTP 500 on a new region, about 8% of
requests) which the analysis rolls back while users keep being served by v2. The team
watches with ``kubectl get md`` and ``kubectl serinus status``.

What is real:

- kube-apiserver, etcd and kube-controller-manager v1.36.3 (RBAC, admission, the CRD's
  schema and CEL rules, server-side apply, the Deployment, ReplicaSet and garbage-collector
  controllers, TokenRequest): tests/support/real_cluster.py;
- the install: ``kubectl apply --server-side -k`` of an overlay naming ``manifests/`` as
  its base and adding ``--prometheus-url`` to the operator's args (docs/install.md's way);
  ``kubectl`` is the one on PATH, with the admin's kubeconfig;
- every Serinus process runs the command its pod declares (tests/e2e/containers.py): the
  operator with the install's args, under a token of the installed ServiceAccount bound to
  its pod; ``serinus serve`` for each revision's pod with the args the operator put in the
  Deployment, fetching its model over HTTP and checking its sha256; ``serinus router`` for
  each router pod, with the routing table the operator writes to its ConfigMap (copied to
  a file, Service URLs resolved: see below);
- the models: real ONNX graphs built by the test (demo/serinus_demo/models.py: v3's
  failure is ONNX Runtime's own, on a Reshape its broken pipeline computes);
- users: the demo's traffic generator, sending transactions through the routers;
- Prometheus (Debian's), scraping with docs/observability.md's "Plain Prometheus" jobs and
  their relabelling, unchanged; the operator's analysis queries it.

What is not: no kubelet, scheduler or container runtime (tests/support/real_cluster.py's
stand-in kubelet marks pods Running, and here Ready only once their container's readiness
probe passes); no images (the processes come from this virtualenv); no cluster DNS or
kube-proxy: the API server refuses loopback addresses in Endpoints, so the runner puts the
address of a ready pod behind each Service into the router's table and gives the users the
routers' pod addresses (tests/e2e/containers.py says exactly what it substitutes); no
Kubernetes service discovery in Debian's Prometheus: tests/e2e/monitoring.py serves the
same ``__meta_kubernetes_pod_*`` targets over HTTP service discovery, listing the pods
under a ``prometheus`` ServiceAccount of its own. Timings are seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2e.containers import ContainerRunner
from e2e.monitoring import READER, PodDiscovery, config, prometheus, query
from serinus_operator.api import parse
from support.real_cluster import RealCluster, wait_for
from support.real_kube import KUSTOMIZE_OBJECTS, kubectl
from support.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "demo"))

from serinus_demo import models as demo_models  # noqa: E402
from serinus_demo.traffic import Traffic  # noqa: E402

pytestmark = pytest.mark.e2e

NS = "ml"
NAME = "fraud"
SYSTEM = "serinus-system"
MD = "/apis/serinus.dev/v1alpha1"

#: Users' transactions per second, over all routers.
RATE = 60
#: The analysis a team would write, with intervals of seconds instead of minutes. At 20%,
#: the candidate serves about 48 requests per interval: ``minRequests`` turns a window
#: that saw much less of it into no data, not a verdict. (With 10, the first window after
#: a new pod, which Prometheus discovers within ~5 s, held about 8 of v3's requests,
#: extrapolated past 10 by ``increase()``; none hit its 8% of failing inputs, so it passed
#: and v3's weight went to 60% before the next two windows failed it.)
ANALYSIS = {
    "interval": "4s",
    "failureLimit": 1,
    "inconclusiveLimit": 3,
    "minRequests": 30,
    "metrics": [
        {"name": "error-rate", "max": 0.01},
        {"name": "latency-p99", "max": 0.5},
    ],
}
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "4s"}},
    {"setWeight": 60},
    {"pause": {"duration": "4s"}},
]


# ------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def model_store(directory: Path) -> Iterator[str]:
    """The team's model registry: the model files over HTTP."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def manifest(version: str, path: Path, store: str) -> dict[str, Any]:
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "model": {
                "uri": f"{store}/{path.name}",
                "version": version,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            },
            "replicas": 1,
            "strategy": {"type": "Canary", "scaleDownDelay": "5s", "canary": {"steps": STEPS}},
            "analysis": ANALYSIS,
        },
    }


def overlay(directory: Path, prometheus_url: str) -> Path:
    """An overlay of the team's own: ``manifests/`` plus the Prometheus URL."""
    directory.mkdir(parents=True)
    patch = [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/args/-",
            "value": f"--prometheus-url={prometheus_url}",
        }
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests", directory)],
        "patches": [
            {
                "target": {"kind": "Deployment", "name": "serinus-operator"},
                "patch": yaml.safe_dump(patch),
            }
        ],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


class Timeline(threading.Thread):
    """The ModelDeployment's status, polled: every distinct (phase, versions, weights,
    analysis) seen, with the time since the start."""

    def __init__(self, cluster: RealCluster) -> None:
        super().__init__(daemon=True, name="timeline")
        self.api = cluster.client(timeout=10)  # its own: a thread of its own
        self.began = time.monotonic()
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self.latest: dict[str, Any] = {}
        self._done = threading.Event()

    def run(self) -> None:
        last = None
        while not self._done.wait(0.1):
            with contextlib.suppress(httpx.HTTPError):
                got = self.api.get(f"{MD}/namespaces/{NS}/modeldeployments/{NAME}")
                if got.status_code != 200:
                    continue
                status = got.json().get("status") or {}
                self.latest = status
                key = summary(status)
                if key != last:
                    last = key
                    at = time.monotonic() - self.began
                    self.seen.append((at, status))
                    print(f"  {at:6.1f}s  {key}", flush=True)

    def stop(self) -> None:
        self._done.set()
        self.join(5)
        self.api.close()

    def statuses(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [s for at, s in self.seen if at >= since]

    def now(self) -> float:
        return time.monotonic() - self.began


def summary(status: dict[str, Any]) -> str:
    traffic = status.get("traffic") or {}
    analysis = status.get("analysis") or {}
    metrics = " ".join(
        f"{m['name']}={m.get('value')}:{m['result']}" for m in analysis.get("metrics") or []
    )
    return (
        f"{status.get('phase')} stable={(status.get('stable') or {}).get('version')} "
        f"candidate={(status.get('candidate') or {}).get('version')} "
        f"weight={traffic.get('candidate', 0)} "
        f"measurements={analysis.get('measurements', 0)} {metrics}"
    ).strip()


def events(api: httpx.Client) -> list[dict[str, Any]]:
    """The ModelDeployment's Events, in the order they were stored."""
    items = api.get(f"/api/v1/namespaces/{NS}/events").raise_for_status().json()["items"]
    mine = [e for e in items if (e.get("involvedObject") or {}).get("name") == NAME]
    return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))


def columns(table: str) -> list[dict[str, str]]:
    """kubectl's table as rows of {header: cell}, cut at the headers' positions."""
    header, *rows = table.rstrip("\n").splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]


class Users:
    """The demo's traffic generator, one per router pod (a Service spreads clients over
    its endpoints), ``RATE`` requests a second in all. Each has seeds of its own: twins
    would send the same transactions at the same moments."""

    def __init__(self, routers: list[str]) -> None:
        self.generators = [
            Traffic(
                f"http://{address}",
                NAME,
                rate=RATE / len(routers),
                workers=2,
                feedback_share=0,
                seed=11 + 10 * i,
            )
            for i, address in enumerate(routers)
        ]

    def start(self) -> None:
        for g in self.generators:
            g.start()

    def stop(self) -> None:
        for g in self.generators:
            g.stop()

    def answers(self) -> dict[tuple[str, int], int]:
        """(revision that answered, HTTP status) -> count, plus ("none", 0): no answer."""
        out: dict[tuple[str, int], int] = {}
        for g in self.generators:
            with g.stats.lock:
                for key, n in g.stats.answers.items():
                    out[key] = out.get(key, 0) + n
                out[("none", 0)] = out.get(("none", 0), 0) + g.stats.failures
        return out


def since(before: dict[tuple[str, int], int], after: dict[tuple[str, int], int]) -> dict[Any, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def smoke(address: str) -> str | None:
    """One transaction through a router: the revision that answered it, if it did."""
    body = {"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}
    with contextlib.suppress(httpx.HTTPError):
        answer = httpx.post(f"http://{address}/v2/models/{NAME}/infer", json=body, timeout=5)
        if answer.status_code == 200:
            return answer.headers.get("x-serinus-revision")
    return None


def operator_sample(address: str, metric: str, **labels: str) -> float | None:
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


# ------------------------------------------------------------------------------ the test
def test_install_promote_a_good_model_and_roll_back_a_bad_one(
    e2e_cluster: RealCluster, tmp_path: Path
) -> None:
    cluster = e2e_cluster
    began = time.monotonic()
    built = demo_models.build(tmp_path / "models")
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(cluster.client(timeout=10))
        store = stack.enter_context(model_store(tmp_path / "models"))
        runner = ContainerRunner(cluster, tmp_path / "pods", (SYSTEM, NS)).start()
        stack.callback(runner.stop)

        def diagnosis() -> str:
            return (
                f"container exits: {runner.exits}\nrunner errors: {runner.errors[-5:]}\n"
                f"kubelet errors: {cluster.kubelet.errors[-5:]}\n{runner.logs()[-12000:]}"
            )

        # --- Prometheus, as the cluster's monitoring runs it -----------------------------
        kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=READER)
        issued = api.post(
            "/api/v1/namespaces/monitoring/serviceaccounts/prometheus/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        token = issued.raise_for_status().json()["status"]["token"]
        discovery = stack.enter_context(PodDiscovery(cluster.server, cluster.ca_path, token))
        prom_config = config(discovery=discovery.url)
        prom = stack.enter_context(
            prometheus(prom_config, workdir=tmp_path / "prometheus", port=free_port())
        )

        # --- 1. install -------------------------------------------------------------------
        runner.hold(SYSTEM, "serinus-operator-")
        out = kubectl(cluster, "apply", "--server-side", "-k", str(overlay(tmp_path / "o", prom)))
        assert {line.split()[0] for line in out.splitlines()} == KUSTOMIZE_OBJECTS, out
        kubectl(cluster, "wait", "--for=condition=Established", "crd/modeldeployments.serinus.dev")
        try:
            kubectl(cluster, "-n", SYSTEM, "rollout", "status", "deploy/serinus-operator")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnosis()}") from None
        (operator,) = runner.running(SYSTEM, "serinus-operator-")
        assert f"--prometheus-url={prom}" in operator.args
        assert {"--all-namespaces", "--standalone"} <= set(operator.args)
        print(f"\ninstalled at {time.monotonic() - began:.1f}s; operator: {operator.args}")

        kubectl(
            cluster,
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": NS,
                        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                    },
                }
            ),
        )
        wait_for(
            lambda: api.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default").is_success,
            timeout=30,
            what="the namespace's default ServiceAccount",
        )

        timeline = Timeline(cluster)
        timeline.start()
        stack.callback(timeline.stop)
        manifests = {v: manifest(v, built[v].path, store) for v in ("v1", "v2", "v3")}
        revisions = {v: parse(m).spec.revision for v, m in manifests.items()}

        def apply(version: str) -> None:
            runner.hold(NS, f"{NAME}-{revisions[version]}-")
            kubectl(
                cluster,
                "apply",
                "--server-side",
                "-f",
                "-",
                stdin=yaml.safe_dump(manifests[version]),
            )

        def wait_status(
            probe: Callable[[dict[str, Any]], bool], what: str, timeout: float
        ) -> dict[str, Any]:
            return wait_for(
                lambda: timeline.latest if probe(timeline.latest) else None,
                timeout=timeout,
                what=what,
                why=lambda: f"status: {json.dumps(timeline.latest)[:3000]}\n{diagnosis()}",
            )

        # --- 2. the first model ------------------------------------------------------------
        runner.hold(NS, f"{NAME}-router-")
        apply("v1")
        wait_status(lambda s: s.get("phase") == "Stable", "v1 Stable", 60)
        router = api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-router")
        replicas = router.raise_for_status().json()["spec"]["replicas"]
        routers = wait_for(
            lambda: (found := runner.endpoints(NS, NAME, 80)) and len(found) == replicas and found,
            timeout=30,
            what=f"the public Service's {replicas} router pods ready",
            why=diagnosis,
        )
        # The team's smoke test: one transaction through each router, answered by v1.
        wait_for(
            lambda: all(smoke(address) == revisions["v1"] for address in routers),
            timeout=30,
            what="a transaction through each router answered by v1",
            why=diagnosis,
        )
        users = Users(routers)
        users.start()
        stack.callback(users.stop)
        wait_for(
            lambda: users.answers().get((revisions["v1"], 200), 0) >= 20,
            timeout=30,
            what="users answered by v1",
            why=lambda: f"{users.answers()}\n{diagnosis()}",
        )
        print(f"v1 serving at {time.monotonic() - began:.1f}s: {routers=} {users.answers()}")

        # --- 3. a better model: promoted on passing analysis -------------------------------
        v2_from = timeline.now()
        apply("v2")
        wait_status(
            lambda s: s.get("phase") == "Stable" and (s.get("stable") or {}).get("version") == "v2",
            "v2 promoted",
            90,
        )
        during = timeline.statuses(v2_from)
        weights = [(s.get("traffic") or {}).get("candidate") for s in during]
        assert 20 in weights and 60 in weights, weights
        passed = [
            m
            for s in during
            if (s.get("candidate") or {}).get("version") == "v2"
            for m in (s.get("analysis") or {}).get("metrics") or []
        ]
        assert {m["name"] for m in passed if m["result"] == "Pass"} == {
            "error-rate",
            "latency-p99",
        }, passed
        assert not [m for m in passed if m["result"] == "Fail"], passed
        error_rates = [
            m["value"] for m in passed if m["name"] == "error-rate" and m["result"] == "Pass"
        ]
        assert error_rates and max(error_rates) <= 0.01, error_rates
        status = timeline.latest
        assert status["history"][-1]["outcome"] == "Promoted", status["history"]
        assert status["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
        reasons = [e["reason"] for e in events(api)]
        for reason in (
            "RolloutStarted",
            "CandidateReady",
            "WeightChanged",
            "StepAdvanced",
            "Promoted",
        ):
            assert reason in reasons, reasons
        assert "AnalysisFailed" not in reasons, reasons
        print(f"v2 promoted at {time.monotonic() - began:.1f}s: {users.answers()}")

        # --- 4. a broken model: rolled back --------------------------------------------------
        v3_from = timeline.now()
        apply("v3")
        status = wait_status(
            lambda s: (s.get("rolledBack") or {}).get("revision") == revisions["v3"],
            "v3 rolled back",
            90,
        )
        assert (
            status["stable"]["version"] == "v2" and status["stable"]["revision"] == revisions["v2"]
        )
        assert status["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
        assert status["history"][-1]["outcome"] == "RolledBack", status["history"]
        assert status["rolledBack"]["reason"] == "AnalysisFailed", status["rolledBack"]
        failed = {
            m["name"]: m
            for s in timeline.statuses(v3_from)
            for m in (s.get("analysis") or {}).get("metrics") or []
            if m["result"] == "Fail"
        }
        assert failed["error-rate"]["value"] > 0.01, failed
        assert set(failed) == {"error-rate"}, failed
        after = events(api)
        assert "AnalysisFailed" in [e["reason"] for e in after], [e["reason"] for e in after]
        assert "RolledBack" in [e["reason"] for e in after], [e["reason"] for e in after]
        print(f"v3 rolled back at {time.monotonic() - began:.1f}s: {status['rolledBack']}")

        # Users: after the rollback every answer comes from v2, and succeeds.
        wait_for(
            lambda: not runner.running(NS, f"{NAME}-{revisions['v3']}-"),
            timeout=30,
            what="v3's pod gone (scaled to zero)",
            why=diagnosis,
        )
        before = users.answers()
        time.sleep(3)
        fresh = since(before, users.answers())
        assert set(fresh) == {(revisions["v2"], 200)}, fresh
        # The only errors users ever saw are v3's own answers (HTTP 500, a few, before it
        # was rolled back): no failed connection, no 502/503 through any weight change,
        # promotion, rollback or removal of a revision.
        answers = users.answers()
        errors = {k: n for k, n in answers.items() if k[1] != 200 and n}
        assert set(errors) == {(revisions["v3"], 500)}, answers

        # --- 5. what the team sees -----------------------------------------------------------
        (row,) = columns(kubectl(cluster, "get", "md", "-n", NS))
        assert (row["NAME"], row["STABLE"], row["WEIGHT"]) == (NAME, "v2", "0"), row
        shown = kubectl(cluster, "serinus", "status", NAME, "-n", NS)
        assert "Stable:     v2" in shown and "AnalysisFailed" in shown, shown
        print(kubectl(cluster, "get", "md", "-n", NS, "-o", "wide"))
        print(shown)

        # Prometheus holds each revision's series under the revision hash the operator
        # computed, and the namespace discovery gave them (v1's pod is gone: its series
        # ended, hence the range).
        series = query(
            prom,
            "sum by (revision, version) (max_over_time("
            f'serinus_requests_total{{namespace="{NS}",model="{NAME}"}}[10m]))',
        )
        by_version = {r["metric"]["version"]: r["metric"]["revision"] for r in series}
        assert by_version == {v: revisions[v] for v in ("v1", "v2", "v3")}, series
        outcomes = {
            outcome: operator_sample(
                f"{operator.ip}:8000", "serinus_rollouts_total", name=NAME, outcome=outcome
            )
            for outcome in ("promoted", "rolled_back")
        }
        assert outcomes == {"promoted": 1, "rolled_back": 1}, outcomes
        assert not runner.exits, runner.exits
        # The install's RBAC covered everything the operator did watching every namespace
        # (the integration tests run it on one): the API server refused it nothing.
        operator_sa = f"system:serviceaccount:{SYSTEM}:serinus-operator"
        seen = cluster.audit(user=operator_sa)
        refused = [e for e in seen if (e.get("responseStatus") or {}).get("code") == 403]
        assert seen and not refused, refused[:3]
        jobs = query(prom, "count by (job) (up)")
        print("scraped:", {r["metric"]["job"]: r["value"][1] for r in jobs})
        print(f"users: {users.answers()}; took {time.monotonic() - began:.1f}s")

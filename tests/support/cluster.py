"""The real ``serinus operator`` (kopf, in its own process) against a real control plane,
for the operator's integration tests.

The API server, the Deployment and ReplicaSet controllers and the garbage collector are
Kubernetes' own (tests/support/real_cluster.py); only the kubelet is a stand-in, which
marks pods Running and Ready, or keeps a failing revision's pods unready so that the real
Deployment controller reports ``ProgressDeadlineExceeded``. The operator authenticates with
a real token of the ServiceAccount that ``manifests/install/rbac.yaml`` binds: the API
server's RBAC decides what it may do. Each test has a namespace of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from support.real_cluster import wait_for
from support.real_kube import RealKube
from support.serve import free_port

MD = ("serinus.dev/v1alpha1", "modeldeployments")
#: Seconds a replica's kopf peering claim lasts unless renewed (``--peering-lifetime``).
PEERING_LIFETIME = 8


#: Canary steps that hold at 50% until promoted: a rollout the tests can look at mid-way.
HOLD_AT_HALF: dict[str, Any] = {
    "type": "Canary",
    "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
}


def md(
    version: str,
    *,
    strategy: dict[str, Any] | None = None,
    name: str = "fraud",
    **spec: Any,
) -> dict[str, Any]:
    """A ModelDeployment manifest serving ``version`` (two replicas unless ``spec`` says)."""
    return {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"https://models.example.com/{version}.onnx", "version": version},
            "replicas": 2,
            "strategy": strategy or HOLD_AT_HALF,
            **spec,
        },
    }


@dataclass
class Operator:
    """``serinus operator`` as a child process; stop and start it at will."""

    kube: RealKube
    workdir: Path
    namespace: str
    prometheus_url: str | None = None
    peering: str | None = None
    priority: int | None = None
    name: str = "operator"
    log_level: str = "info"
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    #: More ``serinus operator`` flags (``["--max-concurrent-passes", "4"]``).
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        kubeconfig = self.workdir / "kubeconfig.yaml"
        kubeconfig.write_text(yaml.safe_dump(self.kube.kubeconfig(self.namespace)))
        self.metrics_port = free_port()
        self.starts += 1
        log = (self.workdir / f"{self.name}-{self.starts}.log").open("wb")
        args = [
            sys.executable,
            "-m",
            "serinus_operator.cli",
            "operator",
            "--namespace",
            self.namespace,
            "--kubeconfig",
            str(kubeconfig),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--resync-seconds",
            "2",
            "--log-level",
            "info",
        ]
        if self.prometheus_url:
            args += ["--prometheus-url", self.prometheus_url]
        if self.peering:
            # kopf touches its peering record every max(1, lifetime - 5..10) s: a live
            # replica's claim is renewed at least 5 s before it runs out with 8 as with 15
            # (every 1-3 s here), and a dead one's runs out within 8 s.
            args += ["--peering", self.peering, "--peering-lifetime", str(PEERING_LIFETIME)]
        if self.priority is not None:
            args += ["--priority", str(self.priority)]
        args += self.extra_args
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), **self.env}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._healthy, timeout=30, what="the operator's /healthz")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text

    def sample(self, metric: str, /, **labels: str) -> float | None:
        """One sample of the operator's /metrics, by name and labels."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob(f"{self.name}-*.log"))
        )

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything (a node dying under it)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


@dataclass
class Cluster:
    kube: RealKube
    namespace: str
    operator: Operator

    # ----------------------------------------------------------- the stand-in kubelet
    def fail_revision(self, name: str, revision: str) -> None:
        """The revision's pods run but never become ready (a model that cannot load)."""
        self.kube.cluster.kubelet.keep_unready(self.namespace, f"{name}-{revision}-")

    def fail_fetch(self, name: str, revision: str, message: str) -> None:
        """The revision's pods never start: their fetch init container keeps exiting 1
        with ``message`` (what ``serinus fetch`` writes as its termination message)."""
        self.kube.cluster.kubelet.fail_init(self.namespace, f"{name}-{revision}-", message)

    # ----------------------------------------------------------- ModelDeployments
    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """``kubectl apply --server-side``: fields the manifest no longer has are removed."""
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        applied: dict[str, Any] = self.kube.apply(manifest)
        return applied

    def get(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.kube.get(*MD, self.namespace, name)
        return found

    def delete(self, name: str) -> None:
        self.kube.delete(*MD, self.namespace, name)

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def annotate_action(self, name: str, value: str) -> None:
        self.kube.patch(
            *MD, self.namespace, name, {"metadata": {"annotations": {"serinus.dev/action": value}}}
        )

    def wait_status(
        self,
        name: str,
        probe: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 30,
        what: str = "status",
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            s = self.status(name)
            return s if s and probe(s) else None

        try:
            return wait_for(check, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nstatus: {self.status(name)}\n--- operator log (tail) ---\n"
                f"{self.operator.log_text()[-6000:]}"
            ) from None

    # ----------------------------------------------------------- children
    def objects(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        return self.kube.list(api_version, plural, self.namespace)

    def names(self, api_version: str, plural: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.objects(api_version, plural)}

    def routes(self, name: str) -> dict[str, Any]:
        import json

        cm = self.kube.get("v1", "configmaps", self.namespace, f"{name}-routes") or {}
        data = (cm.get("data") or {}).get("routes.json")
        return json.loads(data) if data else {}

    def weights(self, name: str) -> dict[str, int]:
        revisions = self.routes(name).get("revisions") or {}
        return {rev: int(r.get("weight", 0)) for rev, r in revisions.items()}

    def event_objects(self, name: str) -> list[dict[str, Any]]:
        """The Events of ModelDeployment ``name`` (not of its same-named Service), in the
        order they were stored: their names are digests, and resourceVersions are etcd
        revisions, increasing with every write."""
        found = sorted(
            self.objects("v1", "events"), key=lambda e: int(e["metadata"]["resourceVersion"])
        )
        return [
            e
            for e in found
            if (e.get("involvedObject") or {}).get("name") == name
            and (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
        ]

    def events(self, name: str) -> list[str]:
        return [e["reason"] for e in self.event_objects(name)]

    def wait_events(self, name: str, *reasons: str) -> list[str]:
        """Events are posted just after the status write that records their transition."""

        def posted() -> list[str] | None:
            found = self.events(name)
            return found if set(reasons) <= set(found) else None

        return wait_for(posted, what=f"events {', '.join(reasons)}")

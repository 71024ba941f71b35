"""The real ``serinus operator`` (kopf, in its own process) against a faithful kmock API,
for the operator's integration tests.

No kube-controller-manager runs here, so :class:`DeploymentController` plays the part the
tests need of it: every Deployment the operator creates gets a status as the real
controller would write it (replicas available, ``observedGeneration`` caught up, the
Available condition), except for revisions a test marks as failing, which stay unavailable
and report ``ProgressDeadlineExceeded``. The garbage collector is played by the emulator
(tests/support/kube_api.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from support.kube_api import KubeApi
from support.serve import free_port

NAMESPACE = "ml"
MD = ("serinus.dev/v1alpha1", "modeldeployments")
T = TypeVar("T")


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


def wait_for(probe: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class DeploymentController(threading.Thread):
    """Writes Deployment status the way kube-controller-manager would, every 100 ms."""

    def __init__(self, kube: KubeApi) -> None:
        super().__init__(daemon=True)
        self.kube = kube
        self.failing: set[str] = set()  # revisions whose pods never become ready
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            with contextlib.suppress(httpx.HTTPError):
                for d in self.kube.list("apps/v1", "deployments", NAMESPACE):
                    self._settle(d)

    def _settle(self, d: dict[str, Any]) -> None:
        meta, spec = d["metadata"], d.get("spec") or {}
        replicas = int(spec.get("replicas") or 0)
        revision = (meta.get("labels") or {}).get("serinus.dev/revision")
        failing = revision in self.failing
        ready = 0 if failing else replicas
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        old = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        available = "True" if ready >= replicas and not failing else "False"
        progressing = (
            ("False", "ProgressDeadlineExceeded") if failing else ("True", "NewReplicaSetAvailable")
        )

        def condition(kind: str, status: str, reason: str) -> dict[str, str]:
            before = old.get(kind) or {}
            same = before.get("status") == status and before.get("reason") == reason
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": f"{kind} {reason}",
                "lastTransitionTime": before.get("lastTransitionTime", now) if same else now,
            }

        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                condition("Available", available, "MinimumReplicasAvailable"),
                condition("Progressing", *progressing),
            ],
        }
        current = d.get("status") or {}
        if all(current.get(k) == v for k, v in status.items() if k != "conditions") and [
            (c["type"], c["status"], c["reason"]) for c in current.get("conditions") or []
        ] == [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]:
            return
        self.kube.patch(
            "apps/v1",
            "deployments",
            NAMESPACE,
            meta["name"],
            {"status": status},
            subresource="status",
        )


@dataclass
class Operator:
    """``serinus operator`` as a child process; stop and start it at will."""

    kube: KubeApi
    workdir: Path
    prometheus_url: str | None = None
    peering: str | None = None
    priority: int | None = None
    name: str = "operator"
    log_level: str = "info"
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        kubeconfig = self.workdir / "kubeconfig.yaml"
        kubeconfig.write_text(yaml.safe_dump(self.kube.kubeconfig(NAMESPACE)))
        self.metrics_port = free_port()
        self.starts += 1
        log = (self.workdir / f"{self.name}-{self.starts}.log").open("wb")
        args = [
            sys.executable,
            "-m",
            "serinus_operator.cli",
            "operator",
            "--namespace",
            NAMESPACE,
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
            args += ["--peering", self.peering, "--peering-lifetime", "15"]
        if self.priority is not None:
            args += ["--priority", str(self.priority)]
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
    kube: KubeApi
    controller: DeploymentController
    operator: Operator

    # ----------------------------------------------------------- ModelDeployments
    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": NAMESPACE}}
        found = self.get(manifest["metadata"]["name"])
        if found is None:
            created: dict[str, Any] = self.kube.create(manifest, MD[1])
            return created
        from serinus_operator.rollout.patch import merge_diff

        # What kubectl apply sends: removed fields are nulls in the merge patch.
        diff = merge_diff(found.get("spec") or {}, manifest["spec"])
        patched: dict[str, Any] = self.kube.patch(
            *MD, NAMESPACE, manifest["metadata"]["name"], {"spec": diff}
        )
        return patched

    def get(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.kube.get(*MD, NAMESPACE, name)
        return found

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def annotate_action(self, name: str, value: str) -> None:
        self.kube.patch(
            *MD, NAMESPACE, name, {"metadata": {"annotations": {"serinus.dev/action": value}}}
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
        return self.kube.list(api_version, plural, NAMESPACE)

    def names(self, api_version: str, plural: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.objects(api_version, plural)}

    def routes(self, name: str) -> dict[str, Any]:
        import json

        cm = self.kube.get("v1", "configmaps", NAMESPACE, f"{name}-routes") or {}
        data = (cm.get("data") or {}).get("routes.json")
        return json.loads(data) if data else {}

    def weights(self, name: str) -> dict[str, int]:
        revisions = self.routes(name).get("revisions") or {}
        return {rev: int(r.get("weight", 0)) for rev, r in revisions.items()}

    def events(self, name: str) -> list[str]:
        """The Event reasons of ``name`` in the order they were stored (their names are
        digests, so the order is the resourceVersion's)."""
        found = sorted(
            self.objects("v1", "events"), key=lambda e: int(e["metadata"]["resourceVersion"])
        )
        return [e["reason"] for e in found if (e.get("involvedObject") or {}).get("name") == name]

    def wait_events(self, name: str, *reasons: str) -> list[str]:
        """Events are posted just after the status write that records their transition."""

        def posted() -> list[str] | None:
            found = self.events(name)
            return found if set(reasons) <= set(found) else None

        return wait_for(posted, what=f"events {', '.join(reasons)}")

"""A real Prometheus that finds the model servers the way docs/observability.md says: its
"Plain Prometheus" scrape jobs, read from the page itself, relabelling included.

Debian's Prometheus is built without Kubernetes service discovery ("field
kubernetes_sd_configs not found in type config.ScrapeConfig"), so :class:`PodDiscovery`
plays it: an HTTP service-discovery endpoint (``http_sd_configs``, compiled in) that lists
the pods from the test's API server under a ``prometheus`` ServiceAccount of its own (RBAC:
get, list and watch pods) and describes each container port with the ``__meta_kubernetes_*``
labels that Prometheus's ``role: pod`` discovery gives it. The documented ``relabel_configs``
then run unchanged in the real Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from support.prometheus import running

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "docs" / "observability.md"

#: What a Prometheus in the cluster runs under: kube-prometheus's rules, reduced to pods.
READER = """
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: prometheus, namespace: monitoring}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: prometheus-discovery}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prometheus-discovery}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prometheus-discovery}
subjects:
  - {kind: ServiceAccount, name: prometheus, namespace: monitoring}
"""


def documented_scrape_configs() -> list[dict[str, Any]]:
    """The ``scrape_configs`` of the "Plain Prometheus" example in docs/observability.md."""
    text = OBSERVABILITY.read_text()
    start = text.index("**Plain Prometheus**")
    block = text.index("```yaml", start) + len("```yaml")
    end = text.index("```", block)
    jobs: list[dict[str, Any]] = yaml.safe_load(textwrap.dedent(text[block:end]))["scrape_configs"]
    return jobs


def config(*, discovery: str, interval: str = "1s") -> dict[str, Any]:
    """The documented jobs, scraping every ``interval`` (the page: well inside the shortest
    analysis interval), each ``kubernetes_sd_configs`` entry served by ``discovery`` (the
    URL of a :class:`PodDiscovery`)."""
    jobs = documented_scrape_configs()
    for job in jobs:
        job["scrape_interval"] = interval
        job["scrape_timeout"] = interval
        job["http_sd_configs"] = []
        for sd in job.pop("kubernetes_sd_configs"):
            assert sd["role"] == "pod", sd  # the only role the documented jobs use
            names = ",".join((sd.get("namespaces") or {}).get("names") or [])
            job["http_sd_configs"].append(
                {"url": f"{discovery}/pods?namespaces={names}", "refresh_interval": interval}
            )
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": jobs,
    }


def _sanitize(name: str) -> str:
    """Prometheus's label-name sanitizing (strutil.SanitizeLabelName)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """What Prometheus's Kubernetes ``role: pod`` discovery makes of ``pod``: one target
    per container port (``podIP:port``), or one per container without ports."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    ip = status.get("podIP")
    if not ip:
        return []  # Prometheus skips pods without an IP
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )
    base = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_uid": meta["uid"],
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_ready": "true" if ready else "false",
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
    }
    for key, value in (meta.get("labels") or {}).items():
        base[f"__meta_kubernetes_pod_label_{_sanitize(key)}"] = value
        base[f"__meta_kubernetes_pod_labelpresent_{_sanitize(key)}"] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        base[f"__meta_kubernetes_pod_annotation_{_sanitize(key)}"] = value
        base[f"__meta_kubernetes_pod_annotationpresent_{_sanitize(key)}"] = "true"
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            base["__meta_kubernetes_pod_controller_kind"] = owner["kind"]
            base["__meta_kubernetes_pod_controller_name"] = owner["name"]
    groups = []
    for container in spec.get("containers") or []:
        labels = {
            **base,
            "__meta_kubernetes_pod_container_name": container["name"],
            "__meta_kubernetes_pod_container_image": container.get("image", ""),
            "__meta_kubernetes_pod_container_init": "false",
        }
        ports = container.get("ports") or []
        if not ports:
            groups.append({"targets": [ip], "labels": labels})
        for port in ports:
            number = str(port["containerPort"])
            groups.append(
                {
                    "targets": [f"{ip}:{number}"],
                    "labels": {
                        **labels,
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": number,
                        "__meta_kubernetes_pod_container_port_protocol": port.get(
                            "protocol", "TCP"
                        ),
                    },
                }
            )
    return groups


class PodDiscovery:
    """``GET /pods?namespaces=a,b`` (empty: every namespace): the pods' targets, listed from
    the API server with ``token`` (what Prometheus's own watch would see)."""

    def __init__(self, api_server: str, ca_file: Path, token: str) -> None:
        self.api = httpx.Client(
            base_url=api_server,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        self.lock = threading.Lock()
        self.errors: list[str] = []
        discovery = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                names = [n for n in parse_qs(url.query).get("namespaces", [""])[0].split(",") if n]
                try:
                    body = json.dumps(discovery.targets(names)).encode()
                    code = 200
                except httpx.HTTPError as exc:
                    discovery.errors.append(repr(exc))
                    body, code = str(exc).encode(), 503
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def targets(self, namespaces: list[str]) -> list[dict[str, Any]]:
        paths = [f"/api/v1/namespaces/{n}/pods" for n in namespaces] or ["/api/v1/pods"]
        out = []
        with self.lock:
            for path in paths:
                for pod in self.api.get(path).raise_for_status().json()["items"]:
                    out += pod_targets(pod)
        return out

    def __enter__(self) -> PodDiscovery:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.api.close()


@contextlib.contextmanager
def prometheus(config: dict[str, Any], *, workdir: Path, port: int) -> Iterator[str]:
    """Prometheus with ``config`` on 127.0.0.1:``port``, once ready; yields its URL."""
    with running(config, workdir=workdir, port=port) as prom:
        yield prom.url


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result

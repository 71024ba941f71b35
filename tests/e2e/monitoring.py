"""A real Prometheus that finds the model servers the way docs/observability.md says: its
"Plain Prometheus" scrape configuration, read from the page itself, with Kubernetes service
discovery pointed at the test's API server under a ``prometheus`` ServiceAccount of its own
(RBAC: get, list and watch pods)."""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from support.prometheus import binary

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


def config(
    *, api_server: str, ca_file: Path, token_file: Path, interval: str = "1s"
) -> dict[str, Any]:
    """The documented jobs, scraping every ``interval`` (the page: well inside the shortest
    analysis interval), discovering through ``api_server`` with the reader's token."""
    jobs = documented_scrape_configs()
    for job in jobs:
        job["scrape_interval"] = interval
        job["scrape_timeout"] = interval
        for sd in job["kubernetes_sd_configs"]:
            sd["api_server"] = api_server
            sd["tls_config"] = {"ca_file": str(ca_file)}
            sd["authorization"] = {"credentials_file": str(token_file)}
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": jobs,
    }


@contextlib.contextmanager
def prometheus(config: dict[str, Any], *, workdir: Path, port: int) -> Iterator[str]:
    """Prometheus with ``config`` on 127.0.0.1:``port``, once ready; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary(),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus never became ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result

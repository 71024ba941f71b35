"""A real Prometheus (the Debian package's binary) on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from support.serve import free_port

INSTALL_HINT = "install it with: apt-get install prometheus (the Debian package)"


def binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError(f"no prometheus binary on PATH; {INSTALL_HINT}")
    return found


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def prometheus(
    targets: list[str],
    *,
    workdir: Path,
    labels: dict[str, str] | None = None,
    honoring: list[str] | None = None,
) -> Iterator[RunningPrometheus]:
    """Scrape ``targets`` (host:port) every second, with ``labels`` added; ``honoring``
    targets keep their own labels (``honor_labels``, as the operator is scraped)."""
    jobs: list[dict[str, object]] = [
        {"job_name": "test", "static_configs": [{"targets": targets, "labels": labels or {}}]}
    ]
    if honoring:
        jobs.append(
            {
                "job_name": "honoring",
                "honor_labels": True,
                "static_configs": [{"targets": honoring}],
            }
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    }
    with running(config, workdir=workdir) as prom:
        yield prom


@contextlib.contextmanager
def running(
    config: dict[str, object], *, workdir: Path, port: int | None = None
) -> Iterator[RunningPrometheus]:
    """Prometheus with ``config`` on 127.0.0.1 (``port``, or a free one), once ready."""
    port = port or free_port()
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
        yield RunningPrometheus(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""A local Prometheus for ``serinus local``: its configuration and its scrape targets.

Targets come from file-based service discovery (one JSON file, replaced atomically), so a
revision's server is scraped within a scrape interval of starting, with no reload. Each
target carries the labels a Kubernetes scrape configuration would add: ``namespace`` (the
ModelDeployment's), ``model``, ``revision`` and ``version`` for a server, and
``component``. ``honor_labels`` keeps the labels the processes export themselves (the
operator's metrics name their own ``namespace`` and ``name``), as the chart's monitors do.
Pure, apart from :func:`find_binary`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serinus_operator.analysis.templates import prometheus_duration

JOB = "serinus"
INSTALL_HINT = (
    "serinus local needs the prometheus binary on PATH. Install it with "
    "`sudo apt-get install prometheus` (Debian, Ubuntu), `brew install prometheus` (macOS), "
    "or download it from https://prometheus.io/download/ and pass --prometheus-bin PATH"
)


class PrometheusMissing(RuntimeError):
    pass


def find_binary(explicit: str | None = None) -> str:
    """The Prometheus executable (``explicit``, else ``prometheus`` on PATH), or raise
    :class:`PrometheusMissing` with the install hint."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and shutil.which(str(path)):
            return str(path)
        raise PrometheusMissing(f"--prometheus-bin {explicit}: not an executable file")
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusMissing(INSTALL_HINT)
    return found


@dataclass(frozen=True)
class Target:
    address: str  # host:port
    labels: Mapping[str, str] = field(default_factory=dict)


def file_sd(targets: Iterable[Target]) -> list[dict[str, Any]]:
    """The file-SD document: one group per target, so each keeps its own labels."""
    return [
        {"targets": [t.address], "labels": dict(sorted(t.labels.items()))}
        for t in sorted(targets, key=lambda t: t.address)
    ]


def config(*, targets_file: Path, scrape_interval: float) -> dict[str, Any]:
    """``prometheus.yml``: one job over the file-SD targets."""
    every = _duration(scrape_interval)
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "scrape_interval": every,
                "scrape_timeout": every,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


def argv(binary: str, *, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    return prometheus_duration(seconds)

"""Helpers for the dashboard and alert tests: the PromQL they hold, with Grafana's variables
filled in, and the metric names Serinus exports.

Names of the serving, router and operator metrics are read from their collectors, so a
renamed metric breaks these tests rather than a dashboard in production. The drift metrics
are listed by hand (their collector needs a loaded profile): keep them in step with
``serving/serinus_serving/drift/metrics.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "manifests" / "dashboards").glob("*.json"))
ALERT_FILES = sorted((ROOT / "manifests" / "alerts").glob("*.yaml"))
DOCS = ROOT / "docs" / "observability.md"

#: A concrete value for each Grafana variable, as a dashboard would send them.
VARIABLES = {
    "namespace": "ml",
    "model": "fraud",
    "revision": "7f3c9a1e2b",
    "metric": "error-rate",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")

DRIFT_METRICS = frozenset(
    {
        "serinus_drift_score",
        "serinus_drift_drifted_features_ratio",
        "serinus_drift_window_samples",
        "serinus_drift_profile_info",
        "serinus_drift_feature_psi",
        "serinus_drift_feature_ks",
        "serinus_drift_feature_js",
        "serinus_drift_prediction_psi",
        "serinus_drift_prediction_ks",
        "serinus_drift_prediction_js",
        "serinus_feedback_labels_total",
        "serinus_feedback_tracked_ids",
        "serinus_live_window_samples",
        "serinus_live_accuracy",
        "serinus_live_error",
    }
)


def substitute(expr: str, values: Mapping[str, str] = VARIABLES) -> str:
    """``expr`` with every Grafana variable replaced; an unknown variable is an error. PromQL's
    own ``$1`` (label_replace) is left alone."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.isdigit():
            return match.group(0)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def load_dashboard(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(
    board: dict[str, Any], values: Mapping[str, str] = VARIABLES
) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL with variables filled in) for every query of a dashboard."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], substitute(target["expr"], values)


def variable_selectors(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(variable, the series selector inside its ``label_values(selector, label)`` query)."""
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert match, f"variable {var['name']}: not a label_values(selector, label) query"
        yield var["name"], substitute(match.group(1))


def alert_groups(path: Path) -> list[dict[str, Any]]:
    """The rule groups of an alert file: a PrometheusRule or a plain rules file."""
    source = yaml.safe_load(path.read_text())
    groups: list[dict[str, Any]] = (
        source["spec"]["groups"] if source.get("kind") == "PrometheusRule" else source["groups"]
    )
    return groups


def alerts(path: Path) -> list[dict[str, Any]]:
    return [r for g in alert_groups(path) for r in g["rules"] if "alert" in r]


# --- metric names ----------------------------------------------------------------------------


def _exposed(family: Metric) -> set[str]:
    name = family.name
    if family.type == "counter":
        return {f"{name}_total"}
    if family.type == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if family.type == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    if family.type == "info":
        return {f"{name}_info"}
    return {name}


def _names(registry: CollectorRegistry) -> set[str]:
    return {n for family in registry.collect() for n in _exposed(family)}


@cache
def known_metrics() -> frozenset[str]:
    """Every series name Serinus exports (histograms as their _bucket/_sum/_count)."""
    from serinus_operator.telemetry import Telemetry
    from serinus_serving.metrics import ModelLabels, ServingMetrics
    from serinus_serving.router.metrics import RouterMetrics

    serving = ServingMetrics(ModelLabels("fraud", "v7", "7f3c9a1e2b"))
    serving.model_loaded(seconds=1.0, sha256="0" * 64, platform="onnxruntime")
    router = RouterMetrics(lambda: "fraud")
    return frozenset(
        _names(serving.registry)
        | _names(router.registry)
        | _names(Telemetry().registry)
        | DRIFT_METRICS
        | _feedback_names()
    )


def _feedback_names() -> set[str]:
    """The router's feedback counters (a collector of their own, not in its registry)."""
    from serinus_serving.router.feedback import FeedbackTotals
    from serinus_serving.router.feedback import collect as feedback

    families = list(feedback(FeedbackTotals(), lambda: "fraud"))
    return {f.name + ("_total" if f.type == "counter" else "") for f in families}


_METRIC = re.compile(r"\b(serinus_[a-z0-9_]+)\b")


def metrics_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def unknown_metrics(board: dict[str, Any]) -> list[str]:
    """ "panel title: names" for every query naming no Serinus metric or one Serinus does not
    export (a typo, a renamed metric); empty when every query reads real series."""
    problems = []
    for title, expr in exprs(board):  # substitute() raises on an unknown variable
        used = metrics_in(expr)
        if not used:
            problems.append(f"{title}: no Serinus metric in {expr}")
        elif used - known_metrics():
            problems.append(f"{title}: unknown {sorted(used - known_metrics())}")
    return problems


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out

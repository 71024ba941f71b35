"""``make demo``'s story, faster, through the real processes: ``serinus local up`` (the
reconcile loop), ``serinus serve`` revisions, ``serinus router`` and a real Prometheus.

Each outcome is checked three ways: in status (what ``serinus local status`` shows), in
Prometheus (what the dashboards and alerts read) and in the router's own metrics (what
users actually got). The same Prometheus then runs every dashboard query and alert
expression in ``manifests/``: each must return data, with template variables substituted
as Grafana would. Finally a revision is killed (it is noticed unready and restarted) and
Ctrl-C must leave no process behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "demo"))

from serinus_demo import models as demo_models  # noqa: E402
from serinus_demo.localup import SERINUS, LocalUp  # noqa: E402
from serinus_demo.scenario import FAST, NAME, NAMESPACE, Outcome, play, summary  # noqa: E402
from serinus_demo.traffic import Traffic  # noqa: E402

pytestmark = pytest.mark.integration

DASHBOARDS = sorted((ROOT / "manifests" / "dashboards").glob("*.json"))
ALERTS = sorted((ROOT / "manifests" / "alerts").glob("*.yaml"))


@dataclass
class Played:
    run: LocalUp
    traffic: Traffic
    outcomes: list[Outcome]
    started: float
    log: list[str]
    revisions: dict[str, str] = field(default_factory=dict)  # version -> revision
    router_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(
        default_factory=dict
    )
    crash: dict[str, Any] = field(default_factory=dict)
    ended: float = 0.0
    left: list[int] | None = None

    @property
    def prometheus(self) -> str:
        return str(self.run.info()["prometheus"])

    def stop(self) -> list[int]:
        if self.left is None:
            self.traffic.stop()
            self.left = self.run.stop()
        return self.left


def _router_metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _crash_stable(p: Played) -> None:
    """SIGKILL the stable revision's server while traffic flows: it must be seen unready
    (a failed pod), restarted with back-off, and ready again."""
    stable = p.run.status()["stable"]["revision"]
    row = next(r for r in p.run.info()["processes"] if r.get("revision") == stable)
    os.kill(int(row["pid"]), signal.SIGKILL)
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while True:
        row = next(r for r in p.run.info()["processes"] if r.get("revision") == stable)
        seen.add(str(row["state"]))
        if row["state"] == "Ready" and row["restarts"] >= 1:
            break
        assert time.monotonic() < deadline, f"never restarted: {row}"
        time.sleep(0.05)
    ready_again = time.monotonic() + 30
    while p.run.status().get("phase") != "Stable" or not _available(p.run.status()):
        assert time.monotonic() < ready_again, p.run.status()
        time.sleep(0.1)
    p.crash = {"revision": stable, "states": seen, "row": row}


def _available(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    work = tmp_path_factory.mktemp("local-e2e")
    built = demo_models.build(work / "models")
    profiles = {}
    for version, model in built.items():
        target = model.path.with_suffix(".profile.json")
        command = [*SERINUS, "profile", "--model", str(model.path), "--data", str(model.data)]
        subprocess.run([*command, "--categorical", "region", "-o", str(target)], check=True)
        profiles[version] = target
    port = free_port()
    run = LocalUp(
        work / "fraud.yaml", state_dir=work / "state", port=port, namespace=NAMESPACE, name=NAME
    )
    traffic = Traffic(run.url, NAME, rate=FAST.rate)
    log: list[str] = []
    p = Played(run, traffic, [], time.time(), log)
    try:
        p.outcomes = play(
            run,
            traffic,
            models={v: m.path for v, m in built.items()},
            profiles=profiles,
            timings=FAST,
            say=log.append,
        )
        for entry in run.status().get("history") or []:
            p.revisions[entry["version"]] = entry["revision"]
        _crash_stable(p)
        time.sleep(3)  # a few scrapes of the recovered revision
        p.router_metrics = _router_metrics(run.url)
        p.ended = time.time()
        yield p
    except BaseException:
        print("\n".join(log))
        print(run.output())
        raise
    finally:
        p.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- outcomes --------------------------------------------------------------------------------


def test_each_outcome_is_the_expected_one(played: Played) -> None:
    assert len(played.outcomes) == 4
    assert all(o.ok for o in played.outcomes), summary(played.outcomes)


def test_status_tells_the_story(played: Played) -> None:
    status = played.run.status()
    assert status["phase"] == "Stable"
    assert status["stable"]["version"] == "v4"
    outcomes = {h["version"]: (h["outcome"], h["reason"]) for h in status["history"]}
    assert outcomes["v2"] == ("Promoted", "Promoted")
    assert outcomes["v3"] == ("RolledBack", "AnalysisFailed")
    assert outcomes["v4"][0] == "Promoted"
    reasons = {e["reason"] for e in played.run.events()}
    assert {
        "RolloutStarted", "WeightChanged", "MirrorChanged", "AnalysisFailed", "RolledBack",
        "TrafficSwitched", "Promoted", "RevisionRemoved", "AnalysisDryRun",
    } <= reasons  # fmt: skip
    failed = next(e for e in played.run.events() if e["reason"] == "RolledBack")
    assert "accuracy" in failed["message"] and "always-valid interval" in failed["message"]
    assert "agreement" not in failed["message"], "dry-run checks never decide"
    dry = [e["message"] for e in played.run.events() if e["reason"] == "AnalysisDryRun"]
    assert any(m.startswith("agreement") for m in dry), dry
    assert any(m.startswith("drift") for m in dry), dry
    text = subprocess.run(
        [*SERINUS, "local", "status", "fraud", "--state-dir", str(played.run.state_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Phase:      Stable" in text
    assert "Processes:" in text
    assert played.run.url in text


def _query(p: Played, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": promql, "time": str(at or p.ended)}
    answer = httpx.get(f"{p.prometheus}/api/v1/query", params=params, timeout=10).json()
    assert answer["status"] == "success", (promql, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _range(p: Played, promql: str) -> list[dict[str, Any]]:
    params = {"query": promql, "start": str(p.started), "end": str(p.ended), "step": "1"}
    answer = httpx.get(f"{p.prometheus}/api/v1/query_range", params=params, timeout=30).json()
    assert answer["status"] == "success", (promql, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_saw_the_weights_the_drift_and_the_outcomes(played: Played) -> None:
    sel = f'namespace="{NAMESPACE}",model="{NAME}"'
    v2, v3 = played.revisions["v2"], played.revisions["v3"]
    weights = _range(played, f'serinus_router_weight{{{sel},revision="{v2}"}}')
    seen = {float(v) for series in weights for _, v in series["values"]}
    assert {30.0, 70.0, 100.0} <= seen
    drift = _query(played, f'max_over_time(serinus_drift_score{{{sel},revision="{v3}"}}[10m])')
    assert float(drift[0]["value"][1]) > 0.2
    rollouts = _query(
        played,
        f'sum by (outcome) (serinus_rollouts_total{{namespace="{NAMESPACE}",name="{NAME}"}})',
    )
    counts = {r["metric"]["outcome"]: float(r["value"][1]) for r in rollouts}
    assert {k: v for k, v in counts.items() if v} == {
        "promoted": 2.0,
        "rolled_back": 1.0,
    }


def _counter(p: Played, name: str, **labels: str) -> float:
    return sum(
        value
        for (metric, found), value in p.router_metrics.items()
        if metric == name and all(dict(found).get(k) == v for k, v in labels.items())
    )


def test_the_router_served_no_user_from_the_shadow_and_compared_every_copy(
    played: Played,
) -> None:
    v2, v3, v4 = (played.revisions[v] for v in ("v2", "v3", "v4"))
    assert _counter(played, "serinus_router_requests_total", revision=v3) == 0
    assert _counter(played, "serinus_router_requests_total", revision=v2, code="200") > 0
    pair = {"primary": v2, "shadow": v3}
    agree = _counter(played, "serinus_shadow_requests_total", result="agree", **pair)
    disagree = _counter(played, "serinus_shadow_requests_total", result="disagree", **pair)
    errors = _counter(played, "serinus_shadow_requests_total", result="error", **pair)
    assert errors > 0  # v3 fails on the new region
    share = disagree / (agree + disagree)
    assert abs(share - demo_models.V3_DISAGREEMENT) < 0.12, share
    assert _counter(played, "serinus_router_requests_total", revision=v4, code="200") > 0


def test_a_crashed_revision_is_noticed_unready_and_restarted(played: Played) -> None:
    assert "CrashLoopBackOff" in played.crash["states"]
    assert played.crash["row"]["restarts"] >= 1
    revision = played.crash["revision"]
    assert _counter(played, "serinus_router_upstream_errors_total", revision=revision) > 0
    assert played.run.status()["stable"]["revision"] == revision  # nothing was rolled back


# --- dashboards and alerts -------------------------------------------------------------------

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)


def _substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values.get(name, match.group(0))  # Grafana leaves unknown ones ("$1") be

    return _VAR.sub(one, expr)


def _label_values(p: Played, query: str, values: dict[str, str]) -> list[str]:
    match = _LABEL_VALUES.match(_substitute(query, values).strip())
    assert match, f"unsupported variable query {query}"
    selector, label = match.groups()
    params: dict[str, str] = {"start": str(p.started), "end": str(p.ended)}
    if selector:
        params["match[]"] = selector
    answer = httpx.get(f"{p.prometheus}/api/v1/label/{label}/values", params=params).json()
    assert answer["status"] == "success", answer
    found: list[str] = answer["data"]
    return found


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for series in result for _, v in series.get("values", []))


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels") or []:
        yield panel
        yield from _panels(panel)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_dashboard_query_returns_data(played: Played, path: Path) -> None:
    dashboard = json.loads(path.read_text())
    span = max(1, round(played.ended - played.started))
    values = {"__rate_interval": "4s", "__interval": "1s", "__range": f"{span}s",
              "__range_s": str(span), "datasource": ""}  # fmt: skip
    wanted = {"namespace": NAMESPACE, "model": NAME, "name": NAME}
    options: dict[str, list[str]] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = _label_values(played, query, values)
        assert found, f"{path.name}: variable ${var['name']} has no values ({query})"
        options[var["name"]] = found
        if var["name"] in wanted:
            assert wanted[var["name"]] in found, (var["name"], found)
            values[var["name"]] = wanted[var["name"]]
        elif var.get("includeAll"):
            values[var["name"]] = var.get("allValue") or "|".join(found)
        else:
            values[var["name"]] = found[0]
    empty = []
    checked = 0
    for panel in _panels(dashboard):
        repeat = panel.get("repeat")
        # A repeated panel is drawn once per value, each with that single value.
        choices = [{repeat: v} for v in options[repeat]] if repeat else [{}]
        for target in panel.get("targets") or []:
            if not target.get("expr"):
                continue
            for choice in choices:
                promql = _substitute(target["expr"], {**values, **choice})
                checked += 1
                if not _has_data(_range(played, promql)):
                    empty.append(f"{panel.get('title')}: {promql}")
    assert checked > 0
    assert not empty, f"{path.name}: queries without data:\n" + "\n".join(empty)


_SELECTOR = re.compile(r"\b(serinus_[A-Za-z0-9_:]+)(\{[^{}]*\})?")


def _alert_rules(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        groups = (doc.get("spec") or doc).get("groups") or []
        for group in groups:
            for rule in group.get("rules") or []:
                if "expr" in rule:
                    yield rule


@pytest.mark.parametrize("path", ALERTS, ids=[p.name for p in ALERTS])
def test_every_alert_expression_runs_and_reads_series_that_exist(
    played: Played, path: Path
) -> None:
    missing = []
    rules = list(_alert_rules(path))
    assert rules, f"{path.name}: no rules"
    for rule in rules:
        expr = str(rule["expr"])
        _query(played, expr)  # valid PromQL on this Prometheus
        for name, matchers in _SELECTOR.findall(expr):
            selector = name + (matchers or "")
            if not _range(played, f"count({selector})"):
                missing.append(f"{rule.get('alert') or rule.get('record')}: {selector}")
    assert not missing, f"{path.name}: selectors matching no series:\n" + "\n".join(missing)


# --- the end ---------------------------------------------------------------------------------


def test_ctrl_c_stops_everything_and_leaves_no_process(played: Played) -> None:
    pids = played.run.pids()
    assert len(pids) >= 3  # revisions, router, Prometheus
    left = played.stop()
    assert left == []
    assert played.run.process is not None
    assert played.run.process.returncode == 0
    assert "stopped; last state: Stable: stable v4 100%" in played.run.output()

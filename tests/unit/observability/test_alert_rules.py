"""The alerting rules: each alert has a severity, a summary, a description and a runbook
paragraph in docs/observability.md, reads only metrics Serinus exports, and (for
serinus.yaml) has `promtool test rules` cases. (tests/integration/observability runs promtool.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from unit.install import kit as install_kit
from unit.observability import kit

pytestmark = pytest.mark.unit

RUNBOOKS = "https://github.com/serinus-dev/serinus/blob/main/docs/"
PROMTOOL_CASES = kit.ROOT / "tests" / "integration" / "observability" / "serinus_alerts_test.yaml"

ALERTS = [(path, rule) for path in kit.ALERT_FILES for rule in kit.alerts(path)]


def test_alert_files_are_prometheus_rules() -> None:
    assert kit.ALERT_FILES
    for path in kit.ALERT_FILES:
        source = yaml.safe_load(path.read_text())
        if source.get("kind") == "PrometheusRule":
            install_kit.validate(source)


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for _, rule in ALERTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("path", "rule"), ALERTS, ids=[r["alert"] for _, r in ALERTS])
def test_alert_is_complete(path: Path, rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    used = kit.metrics_in(rule["expr"])
    assert used and used <= kit.known_metrics(), f"unknown metrics {used - kit.known_metrics()}"


@pytest.mark.parametrize(("path", "rule"), ALERTS, ids=[r["alert"] for _, r in ALERTS])
def test_runbook_is_a_paragraph_of_the_docs(path: Path, rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOKS), url
    page, _, anchor = url.removeprefix(RUNBOOKS).partition("#")
    doc = kit.ROOT / "docs" / page
    assert doc.is_file(), f"{url}: no docs/{page}"
    assert anchor in kit.anchors(doc.read_text()), f"{url}: no heading for #{anchor}"


def test_serinus_alerts_have_runbooks_in_observability_md() -> None:
    for rule in kit.alerts(kit.ROOT / "manifests" / "alerts" / "serinus.yaml"):
        assert rule["alert"].startswith("Serinus")
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOKS}observability.md#{rule['alert'].lower()}"


def test_every_alert_of_serinus_yaml_has_promtool_cases() -> None:
    cases = yaml.safe_load(PROMTOOL_CASES.read_text())
    tested: dict[str, set[bool]] = {}
    for test in cases["tests"]:
        for check in test["alert_rule_test"]:
            tested.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    mine = {
        rule["alert"] for rule in kit.alerts(kit.ROOT / "manifests" / "alerts" / "serinus.yaml")
    }
    assert set(tested) == mine
    for alert, outcomes in tested.items():
        assert outcomes == {True, False}, f"{alert}: test both firing and quiet"

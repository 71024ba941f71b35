"""Every PromQL expression in the dashboards and alert files parses (`promtool check rules`),
and the alerts fire on exactly the series they should (`promtool test rules`). promtool
comes with the Debian package prometheus (`make system-deps`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from unit.install import kit as install_kit
from unit.observability import kit

pytestmark = pytest.mark.integration

CASES = Path(__file__).with_name("serinus_alerts_test.yaml")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("no promtool on PATH: apt-get install prometheus (or make system-deps)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def check_rules(groups: list[dict[str, Any]], tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", kit.DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_parses(path: Path, tmp_path: Path) -> None:
    """Each query becomes a recording rule, which promtool parses and type-checks."""
    board = kit.load_dashboard(path)
    queries = [expr for _, expr in kit.exprs(board)]
    queries += [selector for _, selector in kit.variable_selectors(board)]
    assert len(queries) > 10
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    check_rules([{"name": path.stem, "rules": rules}], tmp_path, path.stem)


def test_a_broken_query_would_be_caught(tmp_path: Path) -> None:
    rules = [{"record": "dashboard:broken", "expr": "sum by (le (rate(x[1m]))"}]
    path = tmp_path / "broken.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": rules}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


@pytest.mark.parametrize("path", kit.ALERT_FILES, ids=lambda p: p.stem)
def test_every_alert_file_passes_promtool_check(path: Path, tmp_path: Path) -> None:
    check_rules(kit.alert_groups(path), tmp_path, path.stem)


def test_the_charts_prometheus_rules_pass_promtool_check(tmp_path: Path) -> None:
    values = {"prometheusRule": {"enabled": True, "runbookBaseUrl": "https://wiki.example/r"}}
    rules = install_kit.of_kind(install_kit.render(values), "PrometheusRule")
    assert rules
    for rule in rules:
        check_rules(rule["spec"]["groups"], tmp_path, rule["metadata"]["name"])


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """serinus_alerts_test.yaml's cases against the rules of serinus.yaml. Only `summary` is
    kept among the annotations: the cases check it rendered, and the full text would make
    every case restate every description."""
    groups = kit.alert_groups(kit.ROOT / "manifests" / "alerts" / "serinus.yaml")
    for group in groups:
        for rule in group["rules"]:
            rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    (tmp_path / "serinus.rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(CASES, tmp_path / CASES.name)
    result = promtool("test", "rules", CASES.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

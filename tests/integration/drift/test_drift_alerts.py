"""manifests/alerts/drift.yaml: a valid PrometheusRule whose rules promtool parses and whose
ModelDriftHigh alert fires on exactly the stable revision's sustained drift
(drift_alerts_test.yaml). promtool comes with the Debian package prometheus."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RULE = ROOT / "manifests" / "alerts" / "drift.yaml"
CASES = Path(__file__).with_name("drift_alerts_test.yaml")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("no promtool on PATH: apt-get install prometheus (or make system-deps)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules_file(tmp_path: Path) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file."""
    document: dict[str, Any] = yaml.safe_load(RULE.read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    path = tmp_path / "drift.rules.yaml"
    path.write_text(yaml.safe_dump(document["spec"], sort_keys=False))
    return path


def test_the_rules_parse(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(rules_file(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = yaml.safe_load(RULE.read_text())["spec"]["groups"]
    assert [r["alert"] for r in group["rules"]] == ["ModelDriftHigh"]


def test_model_drift_high_fires_for_the_stable_revision_only(tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(CASES, tmp_path / CASES.name)
    result = promtool("test", "rules", CASES.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

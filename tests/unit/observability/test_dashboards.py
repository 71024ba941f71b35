"""The Grafana dashboards: well-formed for Grafana's importer and sidecar, every query uses
only defined variables and metrics Serinus exports, and every panel is documented.
(tests/integration/observability checks that every query parses, with promtool.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from unit.observability import kit

pytestmark = pytest.mark.unit

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROLLOUT = kit.ROOT / "manifests" / "dashboards" / "rollout.json"


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in kit.panels(board) if p["title"] == title)


@pytest.fixture(params=kit.DASHBOARDS, ids=lambda p: p.stem)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    return kit.load_dashboard(request.param)


def test_there_is_a_rollout_and_a_model_dashboard() -> None:
    assert [p.name for p in kit.DASHBOARDS] == ["model.json", "rollout.json"]
    uids = [kit.load_dashboard(p)["uid"] for p in kit.DASHBOARDS]
    assert uids == ["serinus-model", "serinus-rollouts"]


def test_dashboard_header(board: dict[str, Any]) -> None:
    assert board["schemaVersion"] == 39
    assert board["title"].startswith("Serinus / ")
    assert "serinus" in board["tags"]
    assert "id" not in board, "an id ties the JSON to one Grafana database"
    assert len(board["uid"]) <= 40


def test_template_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"]["query"].startswith("label_values(")
        assert variables[name]["datasource"] == DATASOURCE
    assert variables["namespace"]["multi"] is False
    for name, selector in kit.variable_selectors(board):
        assert kit.metrics_in(selector) <= kit.known_metrics(), name


def test_every_panel_queries_the_chosen_datasource(board: dict[str, Any]) -> None:
    for panel in kit.panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_have_unique_ids_titles_and_descriptions(board: dict[str, Any]) -> None:
    all_panels = list(kit.panels(board))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in all_panels]
    assert len(titles) == len(set(titles))
    for panel in all_panels:
        if panel["type"] != "row":
            assert len(panel.get("description", "")) > 20, panel["title"]


def test_panels_do_not_overlap(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in kit.panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_queries_use_known_variables_and_metrics(board: dict[str, Any]) -> None:
    assert kit.unknown_metrics(board) == []


@pytest.mark.parametrize(
    ("title", "metric", "typo"),
    [
        ("Analysis samples", "serinus_analysis_samples", "serinus_analysis_sample"),
        ("Analysis p-value", "serinus_analysis_p_value", "serinus_analysis_pvalue"),
        ("Compare checks", "serinus_analysis_baseline", "serinus_analysis_baselines"),
    ],
)
def test_a_misspelled_metric_would_be_caught(title: str, metric: str, typo: str) -> None:
    board = kit.load_dashboard(ROLLOUT)
    assert kit.unknown_metrics(board) == []
    for target in _panel(board, title)["targets"]:
        target["expr"] = target["expr"].replace(metric, typo)
    assert [problem.split(":")[0] for problem in kit.unknown_metrics(board)] == [title]


def test_queries_are_scoped_to_the_chosen_model(board: dict[str, Any]) -> None:
    """Every query but the metric-provider's (a property of the operator) filters by the
    namespace and model variables."""
    for panel in kit.panels(board):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "serinus_analysis_provider_up" in expr:
                continue
            assert 'namespace="$namespace"' in expr, panel["title"]
            assert '"$model"' in expr, panel["title"]


def test_model_dashboard_shows_what_the_issue_asks_for() -> None:
    board = kit.load_dashboard(kit.ROOT / "manifests" / "dashboards" / "model.json")
    queries = " ".join(expr for _, expr in kit.exprs(board))
    for metric in (
        "serinus_requests_total",
        "serinus_request_duration_seconds_bucket",
        "serinus_shadow_requests_total",
        "serinus_drift_feature_psi",
        "serinus_batch_size_bucket",
        "serinus_rollout_weight",  # stable vs candidate
    ):
        assert metric in queries


def test_rollout_dashboard_shows_what_the_issue_asks_for() -> None:
    board = kit.load_dashboard(kit.ROOT / "manifests" / "dashboards" / "rollout.json")
    queries = " ".join(expr for _, expr in kit.exprs(board))
    for metric in (
        "serinus_rollout_phase",
        "serinus_rollout_weight",
        "serinus_analysis_value",
        "serinus_analysis_threshold",
        "serinus_analysis_baseline",
        "serinus_analysis_samples",
        "serinus_analysis_p_value",
        "serinus_rollouts_total",
        "serinus_rollout_duration_seconds_bucket",
    ):
        assert metric in queries
    phases = next(p for p in kit.panels(board) if p["title"] == "Phase")
    mapping = phases["fieldConfig"]["defaults"]["mappings"][0]["options"]
    from serinus_operator.rollout.status import Phase

    assert {m["text"] for m in mapping.values()} == {p.value for p in Phase}


def test_compare_checks_show_samples_and_p_value_per_check() -> None:
    """A compare-to-baseline check's sample size (still short of minSamples?) and always-valid
    p-value (decided yet?), one series per ModelDeployment, check and revision."""
    board = kit.load_dashboard(ROLLOUT)
    for title, metric in (
        ("Analysis samples", "serinus_analysis_samples"),
        ("Analysis p-value", "serinus_analysis_p_value"),
    ):
        panel = _panel(board, title)
        [target] = panel["targets"]
        assert target["expr"].startswith("max by (name, metric, revision) ("), title
        assert kit.metrics_in(target["expr"]) == {metric}, title
        assert 'metric=~"$metric"' in target["expr"], title
        assert target["legendFormat"] == "{{name}} {{metric}} ({{revision}})", title
    assert "minSamples" in _panel(board, "Analysis samples")["description"]
    assert _panel(board, "Analysis samples")["fieldConfig"]["defaults"]["min"] == 0


def test_p_value_panel_marks_one_minus_the_default_confidence() -> None:
    from serinus_operator.api.analysis import CompareSpec

    confidence = next(f.default for f in dataclasses.fields(CompareSpec) if f.name == "confidence")
    panel = _panel(kit.load_dashboard(ROLLOUT), "Analysis p-value")
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["scaleDistribution"] == {"type": "log", "log": 10}
    assert defaults["max"] == 1
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    steps = [s["value"] for s in defaults["thresholds"]["steps"]]
    assert steps[0] is None
    assert steps[1:] == [pytest.approx(1 - confidence)]
    assert "always-valid" in panel["description"]
    assert "sequential" in panel["description"]


def test_compare_checks_table_joins_the_candidates_numbers() -> None:
    """One row per check of the rollout in progress: value, baseline, bound, samples,
    p-value and the last verdict (the one verdict series at 1)."""
    panel = _panel(kit.load_dashboard(ROLLOUT), "Compare checks")
    assert panel["type"] == "table"
    for target in panel["targets"]:
        assert target["instant"] and target["format"] == "table", target["refId"]
        assert 'role="candidate"' in target["expr"], target["refId"]
    assert [kit.metrics_in(t["expr"]) - {"serinus_rollout_weight"} for t in panel["targets"]] == [
        {"serinus_analysis_value", "serinus_analysis_samples"},  # compare checks have samples
        {"serinus_analysis_baseline"},
        {"serinus_analysis_bound", "serinus_analysis_samples"},
        {"serinus_analysis_samples"},
        {"serinus_analysis_p_value"},
        {"serinus_analysis_verdict", "serinus_analysis_samples"},
    ]
    assert "serinus_analysis_verdict{" in panel["targets"][-1]["expr"]
    assert "== 1" in panel["targets"][-1]["expr"], "only the last verdict"
    assert panel["transformations"][0]["id"] == "merge"
    options = panel["transformations"][1]["options"]
    assert [options["renameByName"].get(f"Value #{t['refId']}") for t in panel["targets"]] == [
        "candidate", "baseline", "bound", "samples", "p-value", None
    ]  # fmt: skip
    assert options["excludeByName"]["Value #F"] and "verdict" in options["indexByName"]


@pytest.mark.parametrize("path", kit.DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_is_documented(path: Path) -> None:
    docs = kit.DOCS.read_text()
    for panel in kit.panels(kit.load_dashboard(path)):
        if panel["type"] != "row":
            title = panel["title"]
            assert f"**{title}**" in docs, f"{path.name}: {title} is not in docs/observability.md"

"""What ``serinus local up`` and ``serinus local status`` print."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from serinus_operator.local.cli import render_local
from serinus_operator.local.view import PlainView, bound_text, render, summary_line
from serinus_operator.platforms.local_state import StateDir

pytestmark = pytest.mark.unit

OBJ: dict[str, Any] = {
    "metadata": {"name": "fraud", "namespace": "ml"},
    "spec": {
        "strategy": {"type": "Shadow"},
        "analysis": {"metrics": [{"name": "agreement", "min": 0.97}, {"name": "error-rate"}]},
    },
    "status": {
        "phase": "Progressing",
        "stable": {"version": "v2", "revision": "aaaa"},
        "candidate": {"version": "v3", "revision": "bbbb", "stage": "Shadow", "step": 0},
        "traffic": {"stable": 100, "candidate": 0, "mirror": 100},
        "analysis": {
            "measurements": 2,
            "failures": 1,
            "lastMeasuredAt": "2026-01-01T00:00:03Z",
            "metrics": [
                {
                    "name": "agreement",
                    "value": 0.7512,
                    "result": "Fail",
                    "at": "2026-01-01T00:00:03Z",
                },
                {"name": "error-rate", "result": "Inconclusive", "at": "2026-01-01T00:00:03Z"},
            ],
        },
    },
}
INFO = {
    "router": "http://127.0.0.1:8000",
    "prometheus": "http://127.0.0.1:9090",
    "processes": [
        {"name": "fraud-bbbb", "version": "v3", "port": 4100, "pid": 42, "state": "Ready"},
        {"name": "router", "port": 8000, "pid": 43, "state": "Starting", "restarts": 2},
    ],
}


def test_bounds_come_from_the_spec_or_the_built_in_check() -> None:
    spec = OBJ["spec"]
    assert bound_text("agreement", spec) == ">= 0.97"
    assert bound_text("error-rate", spec) == "<= 0.01"  # the built-in default
    assert bound_text(
        "custom", {"analysis": {"metrics": [{"name": "custom", "min": 1, "max": 2}]}}
    ) == (">= 1 and <= 2")
    assert bound_text("custom", spec) == ""


def test_summary_line_says_phase_weights_and_stage() -> None:
    assert summary_line(OBJ) == (
        "Progressing: stable v2 100%, candidate v3 0% + mirror 100% (Shadow step 0)"
    )
    assert summary_line({}) == "Unknown: stable - 100%"


def test_the_live_panel_shows_each_value_against_its_bound() -> None:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(
        render(OBJ, INFO, [{"type": "Warning", "reason": "AnalysisFailed", "message": "m"}])
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for expected in ("ml/fraud", "Shadow", "Progressing", "agreement", "0.7512", ">= 0.97", "Fail",
                     "<= 0.01", "fraud-bbbb", "4100", "AnalysisFailed",
                     "http://127.0.0.1:8000/v2/models/fraud"):  # fmt: skip
        assert expected in text, expected


def test_the_plain_view_prints_changes_once() -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.update(OBJ, INFO)
    view.update(OBJ, INFO)
    view.event(
        {"lastTimestamp": "2026-01-01T00:00:04Z", "type": "Normal", "reason": "R", "message": "m"}
    )
    view.note("bad", error=True)
    assert out.getvalue().splitlines() == [
        "== Progressing: stable v2 100%, candidate v3 0% + mirror 100% (Shadow step 0)",
        "   analysis: agreement 0.7512 (>= 0.97) Fail; error-rate - (<= 0.01) Inconclusive",
        "00:00:04 Normal R: m",
        "error: bad",
    ]


def test_local_status_adds_processes_while_running(tmp_path: Path) -> None:
    state = StateDir.of(tmp_path, "ml", "fraud")
    state.save_object(OBJ)
    state.save_processes(INFO)
    state.append_event({"lastTimestamp": "t", "type": "Warning", "reason": "AnalysisFailed",
                        "message": "agreement 0.75"})  # fmt: skip
    stopped = render_local(state)
    assert "Phase:      Progressing" in stopped
    assert "AnalysisFailed" in stopped
    assert "Not running" in stopped
    with state.lock():
        running = render_local(state)
    assert "Not running" not in running
    assert "fraud-bbbb" in running
    assert "Model:      http://127.0.0.1:8000/v2/models/fraud" in running

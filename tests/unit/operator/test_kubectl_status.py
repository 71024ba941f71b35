"""``kubectl serinus status`` output, rendered from a stored object (pure)."""

from __future__ import annotations

import pytest

from serinus_operator.cli import build_parser
from serinus_operator.kubectl import render_status

pytestmark = pytest.mark.unit

OBJ = {
    "metadata": {"name": "fraud", "namespace": "ml"},
    "spec": {
        "strategy": {"type": "Canary"},
        "analysis": {
            "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "agreement", "min": 0.97}]
        },
    },
    "status": {
        "phase": "Progressing",
        "message": "v2 vs v1: step 1/4",
        "stable": {"revision": "aaa", "version": "v1"},
        "candidate": {"revision": "bbb", "version": "v2", "stage": "Canary", "step": 1},
        "traffic": {"stable": 90, "candidate": 10, "mirror": 0},
        "analysis": {
            "measurements": 3,
            "failures": 1,
            "inconclusive": 0,
            "result": "Fail",
            "metrics": [
                {
                    "name": "error-rate",
                    "value": 0.0312,
                    "threshold": 0.01,
                    "result": "Fail",
                    "at": "2026-01-01T00:00:30Z",
                },
                {
                    "name": "agreement",
                    "result": "Inconclusive",
                    "at": "2026-01-01T00:00:30Z",
                    "message": "Prometheus unreachable",
                },
            ],
        },
        "history": [
            {
                "version": "v0",
                "revision": "zzz",
                "outcome": "RolledBack",
                "reason": "AnalysisFailed",
                "finishedAt": "2025-12-31T00:00:00Z",
            }
        ],
    },
}


def test_status_shows_why() -> None:
    text = render_status(
        OBJ,
        [
            {
                "lastTimestamp": "t1",
                "type": "Warning",
                "reason": "AnalysisFailed",
                "message": "error-rate 0.0312",
            }
        ],
    )
    assert "Phase:      Progressing" in text
    assert "Traffic:    stable 90%  candidate 10%  mirror 0%" in text
    lines = [line.split() for line in text.splitlines()]
    row = ["error-rate", "0.0312", "-", "<=", "0.01", "-", "-", "Fail", "2026-01-01T00:00:30Z"]
    assert row in lines
    assert "agreement: Prometheus unreachable" in text
    assert "AnalysisFailed" in text and "RolledBack" in text


def test_status_of_a_fresh_object() -> None:
    text = render_status({"metadata": {"name": "x", "namespace": "d"}})
    assert "Phase:      Unknown" in text and "Traffic:    stable 100%" in text


@pytest.mark.parametrize("action", ["promote", "abort", "pause", "resume", "retry"])
def test_actions_parse(action: str) -> None:
    args = build_parser().parse_args([action, "fraud", "-n", "ml", "--wait", "0"])
    assert args.action == action and args.name == "fraud" and args.namespace == "ml"


def test_events_of_one_second_show_in_the_order_they_were_stored() -> None:
    """One decision's Events share a second; what was stored first is shown first."""
    stamp = "2026-01-01T00:00:05Z"
    events = [
        {
            "metadata": {"resourceVersion": rv},
            "lastTimestamp": stamp,
            "type": "Warning",
            "reason": reason,
            "message": reason,
        }
        for rv, reason in (("1012", "RolledBack"), ("1011", "AnalysisFailed"), ("998", "Paused"))
    ]
    text = render_status({"metadata": {"name": "fraud"}, "status": {}}, events)
    assert text.index("Paused") < text.index("AnalysisFailed") < text.index("RolledBack")

"""The router's feedback counters exist at 0 as soon as a routing table names their
revisions and (primary, shadow) pair, before any label: Prometheus' ``increase()`` misses
the first count of a series that appears at 1 (the compare gate sums these cells)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serinus_serving.drift.outcomes import RESULTS
from serinus_serving.http1 import Request
from serinus_serving.router.app import KNOWN_REVISIONS, RouterApp
from serinus_serving.router.feedback import PAIRED_CLASSIFICATION, PAIRED_REGRESSION
from serinus_serving.router.memory_log import MemoryLog
from serinus_serving.router.recorder import Recorder
from serinus_serving.router.table import parse_table

pytestmark = pytest.mark.unit

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(app: RouterApp) -> Samples:
    request = Request(b"GET", b"/metrics", "/metrics", [])
    response = asyncio.run(app.handle(request))
    assert response.status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.body.decode())
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({"model": "m", **labels}.items())))


def table(weights: dict[str, int], shadow: str | None) -> bytes:
    revisions = {
        r: {"url": f"http://127.0.0.1:{9 + i}", "weight": w}
        for i, (r, w) in enumerate(weights.items())
    }
    spec: dict[str, object] = {"model": "m", "revisions": revisions}
    if shadow is not None:
        spec["shadow"] = {"revision": shadow, "percent": 100}
    return orjson.dumps(spec)


def logging_router() -> RouterApp:
    return RouterApp(recorder=Recorder(MemoryLog(ttl=60, max_bytes=1 << 20)))


def cell(samples: Samples, primary: str, shadow: str, outcome: str) -> float | None:
    labels = {"primary": primary, "shadow": shadow, "outcome": outcome}
    return sample(samples, "serinus_feedback_paired_total", **labels)


def test_a_shadow_pair_exports_its_four_cells_at_0_before_any_label() -> None:
    app = logging_router()
    app.apply(parse_table(table({"stable": 100, "cand": 0}, shadow="cand")))
    samples = scrape(app)
    for outcome in PAIRED_CLASSIFICATION:
        assert cell(samples, "stable", "cand", outcome) == 0, outcome
    for revision in ("stable", "cand"):
        for name in ("labelled", "correct", "abs_error", "null_predictions"):
            assert sample(samples, f"serinus_feedback_{name}_total", revision=revision) == 0
    # a regressor's paired series too: a replica learns the task only from a label
    for outcome in PAIRED_REGRESSION:
        assert cell(samples, "stable", "cand", outcome) == 0, outcome
    pair = {"primary": "stable", "shadow": "cand"}
    for of in ("primary", "shadow"):
        assert sample(samples, "serinus_feedback_paired_abs_error_total", of=of, **pair) == 0
    squares = "serinus_feedback_paired_error_difference_squares_total"
    assert sample(samples, squares, **pair) == 0
    # the shadow never pairs with itself
    assert not [k for k in samples if ("primary", "cand") in k[1]]


def test_every_revision_that_may_be_primary_pairs_with_the_shadow() -> None:
    """A pin reaches a revision of weight 0, so it may be primary too."""
    app = logging_router()
    app.apply(parse_table(table({"a": 60, "b": 40, "pinned": 0, "s": 0}, shadow="s")))
    samples = scrape(app)
    pairs = {
        (dict(labels)["primary"], dict(labels)["shadow"])
        for name, labels in samples
        if name == "serinus_feedback_paired_total"
    }
    assert pairs == {("a", "s"), ("b", "s"), ("pinned", "s")}


def test_without_a_shadow_only_the_revisions_are_declared_and_counts_survive_tables() -> None:
    app = logging_router()
    app.apply(parse_table(table({"a": 100}, shadow=None)))
    samples = scrape(app)
    assert sample(samples, "serinus_feedback_labelled_total", revision="a") == 0
    assert not [k for k in samples if k[0] == "serinus_feedback_paired_total"]

    app.feedback.labelled["a"] += 3
    app.feedback.paired["a", "b", "both_right"] += 2  # from an earlier table's shadow
    app.apply(parse_table(table({"a": 100, "b": 0}, shadow="b")))
    samples = scrape(app)
    assert sample(samples, "serinus_feedback_labelled_total", revision="a") == 3
    assert sample(samples, "serinus_feedback_labelled_total", revision="b") == 0
    assert cell(samples, "a", "b", "both_right") == 2
    assert cell(samples, "a", "b", "both_wrong") == 0


def test_a_router_without_a_prediction_log_has_no_feedback_counters() -> None:
    app = RouterApp()
    app.apply(parse_table(table({"a": 100, "b": 0}, shadow="b")))
    assert not [k for k in scrape(app) if k[0].startswith("serinus_feedback_")]


def test_the_exported_series_stay_bounded_by_the_revisions_the_router_remembers() -> None:
    """Every table a rollout applies names fresh revisions; the counts of those the router
    forgot (it remembers KNOWN_REVISIONS) are dropped, those of the others kept exactly."""
    app = logging_router()
    app.apply(parse_table(table({"stable": 100, "c0": 0}, shadow="c0")))
    app.feedback.labelled["stable"] += 5
    app.feedback.correct["stable"] += 3
    app.feedback.abs_error["stable"] += 0.0
    app.feedback.paired["stable", "c0", "both_right"] += 2
    rounds = 3 * KNOWN_REVISIONS
    for i in range(1, rounds):
        app.apply(parse_table(table({"stable": 100, f"c{i}": 0}, shadow=f"c{i}")))
        if i == rounds - 2:
            app.feedback.paired["stable", f"c{i}", "both_wrong"] += 4
    feedback = {k: v for k, v in scrape(app).items() if k[0].startswith("serinus_feedback_")}
    revisions = {
        value for _, labels in feedback for name, value in labels if name in ("revision", "shadow")
    }
    assert revisions <= set(app.known_revisions) and len(app.known_revisions) == KNOWN_REVISIONS
    per_revision = 4 * KNOWN_REVISIONS
    per_pair = len(PAIRED_CLASSIFICATION + PAIRED_REGRESSION) + 3  # and the error sums
    labels = len(RESULTS)
    assert len(feedback) <= labels + per_revision + per_pair * (KNOWN_REVISIONS - 1)
    assert sample(feedback, "serinus_feedback_labelled_total", revision="stable") == 5
    assert sample(feedback, "serinus_feedback_correct_total", revision="stable") == 3
    assert cell(feedback, "stable", f"c{rounds - 2}", "both_wrong") == 4
    assert cell(feedback, "stable", "c0", "both_right") is None  # c0 is long forgotten

"""The router's pure parts: table validation, revision choice, prediction comparison."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.router.compare import Incomparable, compare
from serinus_serving.router.selection import UnknownRevision, choose, sticky_point
from serinus_serving.router.table import Comparison, TableError, parse_table

pytestmark = pytest.mark.unit


def table(**overrides: object) -> dict[str, object]:
    return {
        "model": "fraud",
        "revisions": {
            "a": {"url": "http://127.0.0.1:9001", "weight": 90, "version": "v6"},
            "b": {"url": "http://127.0.0.1:9002", "weight": 10},
        },
    } | overrides


def test_a_valid_table() -> None:
    parsed = parse_table(
        orjson.dumps(
            table(
                shadow={"revision": "b", "percent": 50},
                stickiness={"header": "X-User"},
                comparison={"outputs": ["label"], "absTolerance": 0.01},
            )
        )
    )
    assert parsed.weights == {"a": 90, "b": 10}
    assert parsed.backends["a"].port == 9001 and parsed.backends["a"].version == "v6"
    assert parsed.shadow is not None and parsed.shadow.percent == 50
    assert parsed.stickiness is not None and parsed.stickiness.header == "x-user"
    assert parsed.comparison.outputs == ("label",)


BAD = [
    (b"{", "not valid JSON"),
    (table(model=""), "model"),
    (table(revisions={}), "at least one"),
    (table(revisions={"a": {"url": "http://h:1", "weight": 60}}), "add up to 100"),
    (table(revisions={"a": {"url": "ftp://h:1", "weight": 100}}), "http:// URL"),
    (table(revisions={"a": {"url": "http://h:1/v2", "weight": 100}}), "path"),
    (table(revisions={"a": {"url": "http://h:1", "weight": 101}}), "0 to 100"),
    (table(revisions={"a": {"url": "http://h:1", "weight": True}}), "0 to 100"),
    (table(revisions={"a": {"weight": 100}}), "url must be a string"),
    (table(shadow={"revision": "zz"}), "not one of the revisions"),
    (table(shadow={"revision": "b", "percent": 150}), "between 0 and 100"),
    (table(stickiness={}), "exactly one"),
    (table(stickiness={"header": "a", "cookie": "b"}), "exactly one"),
    (table(comparison={"outputs": "label"}), "list of output names"),
    (table(timeoutSeconds=0), "timeoutSeconds"),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_invalid_tables_are_refused_with_the_field_named(raw: object, message: str) -> None:
    with pytest.raises(TableError, match=message):
        parse_table(raw if isinstance(raw, bytes) else orjson.dumps(raw))


@given(weights=st.lists(st.integers(0, 100), min_size=1, max_size=5).filter(lambda w: sum(w) > 0))
def test_choice_gives_each_revision_exactly_its_share(weights: list[int]) -> None:
    total = sum(weights)
    scaled = [w * 100 // total for w in weights]
    scaled[scaled.index(max(scaled))] += 100 - sum(scaled)
    revisions = {
        f"r{i}": {"url": f"http://h:{9000 + i}", "weight": w} for i, w in enumerate(scaled)
    }
    parsed = parse_table({"model": "m", "revisions": revisions})
    counts = dict.fromkeys(revisions, 0)
    for step in range(10_000):  # an even grid over [0, 100)
        counts[choose(parsed, point=step / 100)] += 1
    assert counts == {r: w * 100 for r, w in zip(revisions, scaled, strict=True)}


def test_pinning_and_stickiness() -> None:
    parsed = parse_table(orjson.dumps(table()))
    assert choose(parsed, pinned="b", point=0.0) == "b"
    with pytest.raises(UnknownRevision, match="'c' is not one of: a, b"):
        choose(parsed, pinned="c", point=0.0)
    assert sticky_point("user-1") == sticky_point("user-1")
    assert 0 <= sticky_point("anything") < 100
    spread = {choose(parsed, point=sticky_point(f"user-{i}")) for i in range(200)}
    assert spread == {"a", "b"}


def v2(label: list[int], score: list[float]) -> bytes:
    return orjson.dumps(
        {
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [len(label)], "data": label},
                {"name": "score", "datatype": "FP32", "shape": [len(score)], "data": score},
            ]
        }
    )


def test_labels_decide_agreement_scores_feed_the_difference() -> None:
    rules = Comparison()
    same = compare(v2([1, 0], [0.9, 0.2]), v2([1, 0], [0.8, 0.2]), rules)
    assert same.agree and same.difference == pytest.approx(0.1)
    other = compare(v2([1, 0], [0.9, 0.2]), v2([1, 1], [0.9, 0.2]), rules)
    assert not other.agree and other.difference == 0.0 and "label" in other.reason


def test_regressors_agree_within_tolerance() -> None:
    def reg(value: float) -> bytes:
        return orjson.dumps(
            {"outputs": [{"name": "y", "datatype": "FP64", "shape": [1], "data": [value]}]}
        )

    rules = Comparison(abs_tolerance=0.01, rel_tolerance=0.0)
    assert compare(reg(1.0), reg(1.005), rules).agree
    assert not compare(reg(1.0), reg(1.02), rules).agree


def test_chosen_outputs_decide() -> None:
    rules = Comparison(outputs=("score",), abs_tolerance=0.05, rel_tolerance=0)
    assert not compare(v2([1], [0.9]), v2([1], [0.5]), rules).agree
    assert compare(v2([1], [0.9]), v2([0], [0.88]), rules).agree


def test_v1_predictions_are_compared_per_key() -> None:
    def v1(label: int, proba: float) -> bytes:
        return orjson.dumps({"predictions": [{"label": label, "probabilities": [proba]}]})

    assert compare(v1(1, 0.9), v1(1, 0.7), Comparison()).agree
    assert not compare(v1(1, 0.9), v1(0, 0.9), Comparison()).agree


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        (b"not json", "not JSON"),
        (
            orjson.dumps({"outputs": [{"name": "label", "datatype": "INT64", "shape": [1]}]}),
            "no JSON",
        ),
        (orjson.dumps({"nothing": 1}), "no 'outputs'"),
        (v2([1, 0, 1], [0.1, 0.1, 0.1]), "shape"),
    ],
)
def test_incomparable_answers_are_errors_not_verdicts(shadow: bytes, message: str) -> None:
    with pytest.raises(Incomparable, match=message):
        compare(v2([1, 0], [0.9, 0.2]), shadow, Comparison())

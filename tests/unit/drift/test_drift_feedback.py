"""The feedback store: matching labels to predictions by id, bounds, expiry, live quality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.drift.feedback import (
    MAX_LABELS_PER_REQUEST,
    FeedbackError,
    FeedbackStore,
    Label,
    parse_feedback,
)

pytestmark = pytest.mark.unit


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def store(task: str = "classification", **overrides: object) -> tuple[FeedbackStore, Clock]:
    clock = Clock()
    options: dict[str, object] = {"max_ids": 100, "ttl": 60.0, "window": 10}
    options.update(overrides)
    return FeedbackStore(output="y", task=task, clock=clock, **options), clock  # type: ignore[arg-type]


def predict(s: FeedbackStore, request_id: str, *values: object) -> None:
    s.remember(request_id, {"y": np.array(values)})


def test_accuracy_over_labelled_rows() -> None:
    s, _ = store()
    predict(s, "a", 1)
    predict(s, "b", 0)
    predict(s, "c", 1, 1, 0)
    assert s.live_value() is None
    result = s.apply([Label("a", 1), Label("b", 1), Label("c", [1, 0, 0])])
    assert result == {"matched": 3, "unknown_id": 0, "expired": 0, "duplicate": 0}
    assert s.window_samples == 5
    assert s.live_value() == pytest.approx(3 / 5)


def test_mean_absolute_error_for_a_regressor() -> None:
    s, _ = store("regression")
    predict(s, "a", 2.5)
    predict(s, "b", [1.0])  # a [1, 1] prediction
    s.apply([Label("a", 3), Label("b", 0.0)])
    assert s.live_value() == pytest.approx((0.5 + 1.0) / 2)


def test_a_regressors_nan_answer_is_left_out_of_its_live_error() -> None:
    s, _ = store("regression")
    predict(s, "a", 2.5)
    predict(s, "b", float("nan"), 1.0)
    s.apply([Label("a", 3), Label("b", [0.0, 0.0])])
    assert s.window_samples == 2 and s.labelled_rows == 2
    assert s.live_value() == pytest.approx((0.5 + 1.0) / 2)


def test_unknown_expired_and_duplicate_labels() -> None:
    s, clock = store()
    predict(s, "old", 1)
    clock.now = 30
    predict(s, "new", 1)
    clock.now = 61
    result = s.apply([Label("old", 1), Label("new", 1), Label("new", 1), Label("never", 0)])
    assert result == {"matched": 1, "unknown_id": 1, "expired": 1, "duplicate": 1}
    assert s.apply([Label("new", 0)])["duplicate"] == 1  # each id takes one label
    assert s.results == {"matched": 1, "unknown_id": 1, "expired": 1, "duplicate": 2}


def test_memory_is_bounded_and_the_oldest_ids_go_first() -> None:
    s, _ = store(max_ids=3)
    for i in range(10):
        predict(s, f"r{i}", 1)
    assert s.tracked == 3
    result = s.apply([Label("r0", 1), Label("r9", 1)])
    assert result["unknown_id"] == 1 and result["matched"] == 1


def test_a_reused_id_refers_to_its_latest_request() -> None:
    s, _ = store(max_ids=2)
    predict(s, "a", 0)
    predict(s, "b", 0)
    predict(s, "a", 1)  # moves to the newest end
    predict(s, "c", 0)  # evicts b, not a
    assert s.apply([Label("a", 1), Label("b", 0)]) == {
        "matched": 1, "unknown_id": 1, "expired": 0, "duplicate": 0,
    }  # fmt: skip
    assert s.live_value() == 1.0


def test_a_request_without_the_target_output_is_not_remembered() -> None:
    s, _ = store()
    s.remember("a", {"other": np.array([1])})
    assert s.tracked == 0


@pytest.mark.parametrize(
    ("task", "prediction", "label", "message"),
    [
        ("classification", (1, 0), 1, "the request had 2 row"),
        ("classification", (1,), [1, 0], "the label has 2 value"),
        ("classification", (1,), "1", "predicts class numbers"),
        ("classification", (1,), 1.5, "predicts class numbers"),
        ("classification", ("cat",), 1, "predicts strings"),
        ("regression", (1.0,), "x", "finite number"),
        ("regression", (1.0,), True, "finite number"),
        ("regression", (1.0,), float("nan"), "finite number"),
    ],
)
def test_labels_that_do_not_fit_are_refused_and_nothing_is_recorded(
    task: str, prediction: tuple[object, ...], label: object, message: str
) -> None:
    s, _ = store(task)
    predict(s, "good", *prediction)
    predict(s, "bad", *prediction)
    good = list(prediction) if len(prediction) > 1 else prediction[0]
    with pytest.raises(FeedbackError, match=message) as caught:
        s.apply([Label("good", good), Label("bad", label)])
    assert caught.value.status == 400
    assert "labels[1] (id 'bad')" in caught.value.message
    assert s.results["matched"] == 0
    assert s.apply([Label("good", good)])["matched"] == 1  # still unlabelled


def test_string_classes_and_integral_floats() -> None:
    s, _ = store()
    s.remember("a", {"y": np.array(["cat", "dog"], dtype=object)})
    s.remember("b", {"y": np.array([2], dtype=np.int64)})
    s.apply([Label("a", ["cat", "cat"]), Label("b", 2.0)])
    assert s.live_value() == pytest.approx(2 / 3)


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_the_live_window_is_the_latest_outcomes(hits: list[bool]) -> None:
    s, _ = store(window=10, max_ids=1000)
    for i, hit in enumerate(hits):
        predict(s, str(i), 1)
        s.apply([Label(str(i), 1 if hit else 0)])
    latest = hits[-10:]
    assert s.window_samples == len(latest)
    assert s.live_value() == pytest.approx(sum(latest) / len(latest))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is empty"),
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"x": 1}', "expected"),
        (b'{"labels": []}', "non-empty list"),
        (b'{"labels": [1]}', r"labels\[0\] must be an object"),
        (b'{"labels": [{"label": 1}]}', r"labels\[0\].id must be a non-empty string"),
        (b'{"labels": [{"id": 7, "label": 1}]}', r"labels\[0\].id must be a non-empty string"),
        (b'{"labels": [{"id": "a"}]}', r"labels\[0\] has no 'label'"),
    ],
)
def test_malformed_feedback_bodies(body: bytes, message: str) -> None:
    with pytest.raises(FeedbackError, match=message):
        parse_feedback(body)


def test_feedback_body_forms_and_size() -> None:
    assert parse_feedback(b'{"id": "a", "label": 1}') == [Label("a", 1)]
    assert parse_feedback(b'{"labels": [{"id": "a", "label": [1, 2]}]}') == [Label("a", [1, 2])]
    many = (
        b'{"labels": ['
        + b",".join([b'{"id":"a","label":1}'] * (MAX_LABELS_PER_REQUEST + 1))
        + b"]}"
    )
    with pytest.raises(FeedbackError, match="send at most"):
        parse_feedback(many)

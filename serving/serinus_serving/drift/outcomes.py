"""Labels and what they say about a prediction. Pure, and free of numpy.

Shared by the model server's own feedback store (``drift.feedback``) and the router's
prediction log (``router.feedback``), so that both read a feedback body, pick the output a
label is compared with and judge a prediction the same way. The router imports this on
its event loop and in its shadow worker, hence no numpy here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from serinus_serving.errors import InferenceError

Task = Literal["classification", "regression"]
RESULTS = ("matched", "unknown_id", "expired", "duplicate")
#: Labels one feedback request may carry.
MAX_LABELS_PER_REQUEST = 10_000


class FeedbackError(InferenceError):
    """A feedback request the server refuses (400); nothing of it was recorded."""


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    value: Any


def parse_feedback(body: bytes) -> list[Label]:
    """``{"labels": [{"id": …, "label": …}, …]}``, or one ``{"id": …, "label": …}``."""
    if not body:
        raise FeedbackError('request body is empty; expected {"labels": [{"id", "label"}]}')
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FeedbackError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FeedbackError("request body must be a JSON object")
    if "labels" in doc:
        items = doc["labels"]
        if not isinstance(items, list) or not items:
            raise FeedbackError('\'labels\' must be a non-empty list of {"id", "label"} objects')
    elif "id" in doc:
        items = [doc]
    else:
        raise FeedbackError('expected {"labels": [{"id": …, "label": …}]} or {"id", "label"}')
    if len(items) > MAX_LABELS_PER_REQUEST:
        raise FeedbackError(
            f"{len(items)} labels in one request; send at most {MAX_LABELS_PER_REQUEST}"
        )
    labels: list[Label] = []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, dict):
            raise FeedbackError(f"{where} must be an object with 'id' and 'label'")
        request_id = item.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise FeedbackError(
                f"{where}.id must be a non-empty string (the inference request's id)"
            )
        if "label" not in item:
            raise FeedbackError(f"{where} has no 'label'")
        labels.append(Label(request_id, item["label"]))
    return labels


def choose_target(outputs: Iterable[tuple[str, str, Sequence[int]]]) -> tuple[str, Task] | None:
    """The output labels are compared with, from ``(name, datatype, shape)`` triples: the
    first one-value-per-row label output (classification), else the first such float
    output (regression). The same rule for a model's declared outputs and for a response's."""
    single = [
        (name, datatype)
        for name, datatype, shape in outputs
        if len(shape) == 1 or tuple(shape[1:]) == (1,)
    ]
    for name, datatype in single:
        if datatype in ("BYTES", "BOOL") or datatype.startswith(("INT", "UINT")):
            return name, "classification"
    for name, datatype in single:
        if datatype.startswith(("FP", "BF")):
            return name, "regression"
    return None


def score_rows(predicted: Sequence[Any], value: Any, task: Task, where: str) -> list[float]:
    """Per row: 1/0 for a classifier's hit or miss, the absolute error for a regressor.
    Raises :class:`FeedbackError` when the label does not fit the prediction."""
    rows = len(predicted)
    truth = value if isinstance(value, list) else [value]
    if len(truth) != rows:
        raise FeedbackError(
            f"{where}: the request had {rows} row(s), the label has {len(truth)} value(s); "
            "give one value per row (a list for a multi-row request)"
        )
    if task == "regression":
        return [abs(float(p) - number(t, where)) for p, t in zip(predicted, truth, strict=True)]
    return [1.0 if same_class(p, t, where) else 0.0 for p, t in zip(predicted, truth, strict=True)]


def number(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise FeedbackError(f"{where}: a regression label must be a finite number, got {value!r}")
    return float(value)


def same_class(predicted: Any, value: Any, where: str) -> bool:
    if isinstance(predicted, str):
        if not isinstance(value, str):
            raise FeedbackError(f"{where}: the model predicts strings; got label {value!r}")
        return predicted == value
    if type(value) not in (int, float, bool) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise FeedbackError(f"{where}: the model predicts class numbers; got label {value!r}")
    return bool(predicted == value)

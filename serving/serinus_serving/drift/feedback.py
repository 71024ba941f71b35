"""Feedback for concept drift: ground-truth labels for earlier predictions, by request id.

The request path remembers the prediction of each v2 request that carries an ``id`` (a
dict insert). Memory is bounded by ``max_ids``: the oldest ids are forgotten first. A label
for an id older than ``ttl`` is refused as expired; each id takes one label. Labelled rows
feed a window of the latest ``window`` outcomes (1/0 for a classifier's hit or miss, the
absolute error for a regressor), whose mean is the live accuracy or error.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from serinus_serving.drift.outcomes import (
    MAX_LABELS_PER_REQUEST,
    RESULTS,
    FeedbackError,
    Label,
    Task,
    parse_feedback,
    score_rows,
)
from serinus_serving.runtime.base import Array

__all__ = [
    "MAX_LABELS_PER_REQUEST",
    "RESULTS",
    "FeedbackError",
    "FeedbackStore",
    "Label",
    "parse_feedback",
]


class FeedbackStore:
    def __init__(
        self,
        *,
        output: str,
        task: Task,
        max_ids: int,
        ttl: float,
        window: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.task = task
        self.max_ids = max_ids
        self.ttl = ttl
        self._clock = clock
        #: id -> (time, prediction); the prediction is None once labelled.
        self._ids: OrderedDict[str, tuple[float, Array | None]] = OrderedDict()
        self.results = dict.fromkeys(RESULTS, 0)
        self.labelled_rows = 0
        self._outcomes = np.zeros(window, dtype=np.float64)
        self._next = 0
        self._filled = 0

    @property
    def tracked(self) -> int:
        return len(self._ids)

    # ------------------------------------------------------------------ request path
    def remember(self, request_id: str, outputs: Mapping[str, Array]) -> None:
        prediction = outputs.get(self.output)
        if prediction is None:
            return
        ids = self._ids
        if request_id in ids:  # a reused id refers to its latest request
            del ids[request_id]
        ids[request_id] = (self._clock(), prediction)
        if len(ids) > self.max_ids:
            ids.popitem(last=False)

    # ------------------------------------------------------------------ feedback
    def apply(self, labels: list[Label]) -> dict[str, int]:
        """Record ``labels`` all or nothing: a label that does not fit its prediction raises
        :class:`FeedbackError` before anything is counted."""
        now = self._clock()
        outcome: dict[str, int] = dict.fromkeys(RESULTS, 0)
        matched: list[tuple[str, float, list[float]]] = []
        seen: set[str] = set()
        for i, label in enumerate(labels):
            entry = self._ids.get(label.id)
            if label.id in seen or (entry is not None and entry[1] is None):
                outcome["duplicate"] += 1
            elif entry is None:
                outcome["unknown_id"] += 1
            elif now - entry[0] > self.ttl:
                outcome["expired"] += 1
            else:
                prediction = entry[1]
                assert prediction is not None
                scores = self._scores(prediction, label.value, f"labels[{i}] (id {label.id!r})")
                matched.append((label.id, entry[0], scores))
                outcome["matched"] += 1
            seen.add(label.id)
        for request_id, at, scores in matched:
            self._ids[request_id] = (at, None)
            self._push(scores)
        for key, count in outcome.items():
            self.results[key] += count
        return outcome

    def _scores(self, prediction: Array, value: Any, where: str) -> list[float]:
        predicted = prediction.reshape(prediction.shape[0], -1)[:, 0].tolist()
        return score_rows(predicted, value, self.task, where)

    def _push(self, scores: list[float]) -> None:
        # A regressor's NaN or infinite answer has no error to average: left out, as the
        # router leaves it out (it would hold the live error at NaN for a whole window).
        scores = [s for s in scores if math.isfinite(s)]
        size = self._outcomes.size
        for score in scores[-size:]:
            self._outcomes[self._next] = score
            self._next = (self._next + 1) % size
        self._filled = min(size, self._filled + len(scores))
        self.labelled_rows += len(scores)

    # ------------------------------------------------------------------ scrape time
    @property
    def window_samples(self) -> int:
        return self._filled

    def live_value(self) -> float | None:
        """Mean outcome over the window: accuracy (classifier) or mean absolute error."""
        if not self._filled:
            return None
        return float(self._outcomes[: self._filled].mean())

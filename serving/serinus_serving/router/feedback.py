"""Labels at the router: joined with every answer the prediction log holds for their id.

A label is judged against each revision that answered its request (the primary, and the
shadow when one answered a copy), with the model server's own rules
(``drift.outcomes``). Counts are cumulative per revision, so that accuracy over all router
replicas is ``sum(correct) / sum(labelled)`` in PromQL; and per (primary, shadow) pair the
four paired outcomes of the same labelled rows that McNemar's test needs (and, for a
regressor, the sign and sum of the paired error differences). All or nothing, as in
``serinus serve``: a label that does not fit a prediction is a 400 and nothing is counted.
A row the model answered with null (a regressor's NaN) is wrong for a classifier and not
scored for a regressor (it has no error), and counted apart (``null_predictions``).
Revision labels are bounded: only revisions that a routing table named are counted, the
counts of those the router no longer remembers are dropped (:func:`prune`), and every
series a table makes possible is exported at 0 once it is applied (:func:`declare`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, Metric

from serinus_serving.drift.outcomes import RESULTS, Label, Task, score_rows
from serinus_serving.router.prediction_log import PredictionLog, parse_answer
from serinus_serving.router.recorder import store_key

#: Paired outcomes per labelled row of a classifier (McNemar's four cells), and the sign of
#: a regressor's paired error difference (a sign test's).
PAIRED_CLASSIFICATION = ("both_right", "only_shadow_right", "only_primary_right", "both_wrong")
PAIRED_REGRESSION = ("shadow_better", "primary_better", "tie")
_K = TypeVar("_K")


@dataclass(slots=True)
class FeedbackTotals:
    labels: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Per revision: labelled rows, rows predicted right, sum of absolute errors.
    labelled: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    correct: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    abs_error: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: Per revision: labelled rows it answered with null, or for a regressor anything but a
    #: number (wrong for a classifier; for a regressor, not in ``labelled``/``abs_error``).
    null_predictions: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Per (primary, shadow, outcome): labelled rows both answered.
    paired: defaultdict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: Regressors, per (primary, shadow) over paired rows: the sums of the primary's and the
    #: shadow's absolute errors and of the squared differences (all monotonic: counters).
    paired_diff: defaultdict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0.0, 0.0])
    )


@dataclass(frozen=True, slots=True)
class _Scored:
    revision: str
    role: str
    task: str
    #: Per row: 1/0 (classifier), the absolute error or None when not scored (regressor).
    scores: list[float | None]
    #: Rows the model did not answer (:func:`_judge`).
    nulls: int


def _judge(values: list[Any], value: Any, task: Task, where: str) -> tuple[list[float | None], int]:
    """``score_rows``, and how many rows the model did not answer: null (for a regressor
    also anything but a finite number, or an error past the float range, so that no
    infinity reaches a counter). Such a row is wrong for a classifier and not scored (None)
    for a regressor; its label is checked all the same, against a stand-in answer: a label
    that does not fit is a 400 whatever the model answered."""
    regression = task == "regression"
    missing = {
        i
        for i, p in enumerate(values)
        if p is None or (regression and (type(p) not in (int, float) or not math.isfinite(p)))
    }
    filled = values
    if missing:
        stand_in = 0.0 if regression else _stand_in(values, value)
        filled = [stand_in if i in missing else p for i, p in enumerate(values)]
    scores: list[float | None] = list(score_rows(filled, value, task, where))
    for i in missing:
        scores[i] = None if regression else 0.0
    if not regression:
        return scores, len(missing)
    scores = [s if s is not None and math.isfinite(s) else None for s in scores]
    return scores, scores.count(None)


def _stand_in(values: list[Any], value: Any) -> Any:
    """A classifier's answer to check a null row's label against: of the kind of its other
    answers, else of the label's first value (a string or a class number)."""
    for p in values:
        if p is not None:
            return p
    first = value[0] if isinstance(value, list) and value else value
    return "" if isinstance(first, str) else 0


def _score_entry(
    answers: dict[str, bytes], label: Label, known: Collection[str], where: str
) -> list[_Scored]:
    scored = []
    for revision, encoded in sorted(answers.items()):
        parsed = parse_answer(encoded)
        if parsed is None or revision not in known:
            continue
        role, task, values = parsed
        here = f"{where} (id {label.id!r}, revision {revision})"
        scores, nulls = _judge(values, label.value, task, here)  # type: ignore[arg-type]
        scored.append(_Scored(revision, role, task, scores, nulls))
    return scored


async def join(
    store: PredictionLog,
    model: str,
    labels: list[Label],
    *,
    known: Collection[str],
    totals: FeedbackTotals,
) -> dict[str, int]:
    """Judge ``labels`` against the stored answers and count them; returns the count of
    labels per result, as ``serinus serve`` answers. Raises ``FeedbackError`` (400) or
    ``PredictionLogError`` (503) before anything is counted."""
    outcome = dict.fromkeys(RESULTS, 0)
    keys: dict[str, int] = {}
    for i, label in enumerate(labels):
        keys.setdefault(store_key(model, label.id), i)
    outcome["duplicate"] += len(labels) - len(keys)
    lookups = await store.lookup(list(keys))
    pending: list[tuple[str, list[_Scored]]] = []
    for (key, i), found in zip(keys.items(), lookups, strict=True):
        if found.status != "found":
            outcome[found.status] += 1
            continue
        pending.append((key, _score_entry(found.answers, labels[i], known, f"labels[{i}]")))
    marks = await store.mark([key for key, _ in pending])
    for (_, scored), first in zip(pending, marks, strict=True):
        if not first:  # another replica (or request) labelled it meanwhile
            outcome["duplicate"] += 1
            continue
        outcome["matched"] += 1
        _count(totals, [s for s in scored if s.revision in known])  # none pruned meanwhile
    for result, n in outcome.items():
        totals.labels[result] += n
    return outcome


def _count(totals: FeedbackTotals, scored: list[_Scored]) -> None:
    for s in scored:
        answered = [x for x in s.scores if x is not None]
        totals.labelled[s.revision] += len(answered)
        totals.null_predictions[s.revision] += s.nulls
        if s.task == "regression":
            totals.abs_error[s.revision] += sum(answered)
        else:
            totals.correct[s.revision] += int(sum(answered))
    primaries = [s for s in scored if s.role == "primary"]
    shadows = [s for s in scored if s.role == "shadow"]
    for p in primaries:
        for s in shadows:
            if s.revision != p.revision and s.task == p.task:
                _pair(totals, p, s)


def _pair(totals: FeedbackTotals, p: _Scored, s: _Scored) -> None:
    pair = (p.revision, s.revision)
    for ps, ss in zip(p.scores, s.scores, strict=False):
        if ps is None or ss is None:  # a regressor's row not scored on one side: not paired
            continue
        if p.task == "regression":
            diff = ss - ps
            if not math.isfinite(diff * diff):
                continue
            sums = totals.paired_diff[pair]
            sums[0] += ps
            sums[1] += ss
            sums[2] += diff * diff
            outcome = "shadow_better" if diff < 0 else "primary_better" if diff > 0 else "tie"
        elif ps and ss:
            outcome = "both_right"
        elif ss:
            outcome = "only_shadow_right"
        elif ps:
            outcome = "only_primary_right"
        else:
            outcome = "both_wrong"
        totals.paired[(*pair, outcome)] += 1


def declare(totals: FeedbackTotals, revisions: Iterable[str], shadow: str | None) -> None:
    """Export at 0 every counter a routing table makes possible, before its first label:
    per revision (``revisions``: all it routes to) and, with a ``shadow``, per (primary,
    shadow) pair for every other revision (any may be primary: a pin reaches weight 0)
    with every outcome of either task (a replica learns the task only from a label). A
    series that first appears at 1 is undercounted by ``increase()``; one at 0 is not.
    Called when a table is applied, never per request; counts already made are kept."""
    revisions = list(revisions)
    for revision in revisions:
        totals.labelled[revision] += 0
        totals.correct[revision] += 0
        totals.abs_error[revision] += 0.0
        totals.null_predictions[revision] += 0
    if shadow is None:
        return
    for primary in revisions:
        if primary != shadow:
            for outcome in PAIRED_CLASSIFICATION + PAIRED_REGRESSION:
                totals.paired[primary, shadow, outcome] += 0
            _ = totals.paired_diff[primary, shadow]  # the regressors' sums, at 0


def prune(totals: FeedbackTotals, known: Collection[str]) -> None:
    """Drop the counts of every revision not in ``known`` (the router's bounded memory of
    revisions), per revision and per pair, so that the exported series stay bounded by it.
    The counts of known revisions are kept as they are. Called when a table is applied."""
    for per_revision in (
        totals.labelled,
        totals.correct,
        totals.abs_error,
        totals.null_predictions,
    ):
        _drop(per_revision, lambda revision: revision not in known)
    _drop(totals.paired, lambda key: key[0] not in known or key[1] not in known)
    _drop(totals.paired_diff, lambda pair: pair[0] not in known or pair[1] not in known)


def _drop(counts: MutableMapping[_K, Any], gone: Callable[[_K], bool]) -> None:
    for key in [k for k in counts if gone(k)]:
        del counts[key]


def collect(totals: FeedbackTotals, model: Callable[[], str]) -> Iterator[Metric]:
    """The ``serinus_feedback_*`` counters of the router (docs/drift.md, section 5)."""
    name = model()
    labels = CounterMetricFamily(
        "serinus_feedback_labels",
        "Labels received by the router, by result: matched, unknown_id, expired, duplicate.",
        labels=["model", "result"],
    )
    for result in RESULTS:
        labels.add_metric([name, result], totals.labels.get(result, 0))
    yield labels
    per_revision: list[tuple[str, str, dict[str, Any]]] = [
        ("labelled", "Labelled rows each revision answered.", totals.labelled),
        ("correct", "Labelled rows a classifier revision predicted right.", totals.correct),
        ("abs_error", "Sum of a regressor revision's absolute errors.", totals.abs_error),
        (
            "null_predictions",
            "Labelled rows a revision answered with null (a NaN): wrong for a classifier, "
            "not in labelled or abs_error for a regressor.",
            totals.null_predictions,
        ),
    ]
    for suffix, doc, values in per_revision:
        family = CounterMetricFamily(
            f"serinus_feedback_{suffix}", doc, labels=["model", "revision"]
        )
        for revision, value in sorted(values.items()):
            family.add_metric([name, revision], value)
        yield family
    paired = CounterMetricFamily(
        "serinus_feedback_paired",
        "Labelled rows answered by both the primary and the shadow revision, by outcome "
        "(classifiers: McNemar's four cells; regressors: which error was smaller).",
        labels=["model", "outcome", "primary", "shadow"],
    )
    for (primary, shadow, outcome), value in sorted(totals.paired.items()):
        paired.add_metric([name, outcome, primary, shadow], value)
    yield paired
    yield from _collect_diffs(totals, name)


def _collect_diffs(totals: FeedbackTotals, name: str) -> Iterator[Metric]:
    errors = CounterMetricFamily(
        "serinus_feedback_paired_abs_error",
        "Regressors: sum of absolute errors over paired labelled rows, of the primary or the "
        "shadow (``of``); their difference over the paired count is the mean paired difference.",
        labels=["model", "of", "primary", "shadow"],
    )
    squares = CounterMetricFamily(
        "serinus_feedback_paired_error_difference_squares",
        "Regressors: sum of squared (|shadow error| - |primary error|) over paired rows.",
        labels=["model", "primary", "shadow"],
    )
    for (primary, shadow), (of_primary, of_shadow, square) in sorted(totals.paired_diff.items()):
        errors.add_metric([name, "primary", primary, shadow], of_primary)
        errors.add_metric([name, "shadow", primary, shadow], of_shadow)
        squares.add_metric([name, primary, shadow], square)
    yield errors
    yield squares

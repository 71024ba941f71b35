"""The prediction log's parts without processes: the in-process store's bounds (TTL, bytes,
ids), the recorder's bounded queue, request ids and answers, and joining labels."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.drift.outcomes import FeedbackError, Label
from serinus_serving.router import prediction_log
from serinus_serving.router.feedback import FeedbackTotals, join
from serinus_serving.router.memory_log import MemoryLog
from serinus_serving.router.prediction_log import (
    MAX_ANSWER_ROWS,
    MAX_ID_BYTES,
    Record,
    answer_of,
    body_request_id,
    id_key,
    request_api,
)
from serinus_serving.router.recorder import Recorder, RecorderLimits, store_key

pytestmark = pytest.mark.unit


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def v2(label: list[object], datatype: str = "INT64") -> bytes:
    return orjson.dumps(
        {
            "outputs": [
                {
                    "name": "score",
                    "datatype": "FP32",
                    "shape": [len(label)],
                    "data": [0.5] * len(label),
                },
                {"name": "label", "datatype": datatype, "shape": [len(label)], "data": label},
            ]
        }
    )


def answer(values: list[object], role: str = "primary", task: str = "classification") -> bytes:
    return orjson.dumps({"role": role, "task": task, "values": values})


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the store
def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    log = MemoryLog(ttl=10, max_bytes=1 << 20, clock=clock)
    run(log.record([Record("m:a", "old", answer([1]), primary=True)]))
    clock.now = 11
    assert [x.status for x in run(log.lookup(["m:a"]))] == ["expired"]  # type: ignore[attr-defined]
    run(log.record([Record("m:b", "old", answer([1]), primary=True)]))  # sweeps the old
    assert len(log) == 1 and log.evicted["ttl"] == 1
    assert [x.status for x in run(log.lookup(["m:a", "m:b"]))] == ["unknown_id", "found"]  # type: ignore[attr-defined]


def test_the_byte_budget_evicts_the_oldest_first() -> None:
    log = MemoryLog(ttl=3600, max_bytes=5_000)
    for i in range(100):
        run(log.record([Record(f"m:{i}", "old", answer([1] * 20), primary=True)]))
        assert log.bytes <= 5_000
    kept = run(log.lookup([f"m:{i}" for i in range(100)]))
    statuses = [x.status for x in kept]  # type: ignore[attr-defined]
    assert statuses[-1] == "found" and statuses[0] == "unknown_id"
    first_kept = statuses.index("found")
    assert all(s == "found" for s in statuses[first_kept:])
    assert log.evicted["budget"] == first_kept


def test_answers_of_one_id_share_an_entry_and_a_label_marks_it_once() -> None:
    log = MemoryLog(ttl=3600, max_bytes=1 << 20)
    run(log.record([Record("m:a", "old", answer([1]), primary=True)]))
    run(log.record([Record("m:a", "new", answer([0], "shadow"), primary=False)]))
    [found] = run(log.lookup(["m:a"]))  # type: ignore[misc]
    assert set(found.answers) == {"old", "new"}
    assert run(log.mark(["m:a", "m:zz"])) == [True, False]
    assert run(log.mark(["m:a"])) == [False]
    run(log.record([Record("m:a", "old", answer([1]), primary=True)]))  # a reused id
    assert run(log.mark(["m:a"])) == [True]


@given(st.text(min_size=1, max_size=2000))
def test_ids_are_bounded_in_bytes_and_stable(request_id: str) -> None:
    key = id_key(request_id)
    assert len(key.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
    assert key == id_key(request_id)
    if len(request_id.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES:
        assert key == request_id


def test_a_hostile_id_costs_a_bounded_entry() -> None:
    log = MemoryLog(ttl=3600, max_bytes=1 << 30)
    huge = "x" * (1 << 20)
    run(log.record([Record(store_key("m", huge), "old", answer([1]), primary=True)]))
    assert log.bytes < 1024
    assert run(log.mark([store_key("m", huge)])) == [True]  # the same id finds it again
    assert store_key("m", huge) != store_key("m", huge + "y")


# ---------------------------------------------------------------------------- request path
def test_request_ids_from_the_body() -> None:
    assert body_request_id(b'{"id": "tx-1", "inputs": []}') == "tx-1"
    assert body_request_id(b'{"id": "a\\"b", "inputs": []}') == 'a"b'
    assert body_request_id(b'{"inputs": [], "id": "late"}') == "late"
    assert body_request_id(b'{"inputs": [{"name": "id"}]}') is None
    assert body_request_id(b'{"id": 7}') is None
    assert body_request_id(b'not json "id"') is None
    big = b'{"inputs": [' + b"0," * (40 << 10) + b'0], "id": "late"}'
    assert body_request_id(big) is None  # over 64 KiB: only as the first member
    assert body_request_id(b'{"id": "first", "inputs": [' + b"0," * (40 << 10) + b"0]}") == "first"


def test_answers_keep_the_label_output_one_value_per_row() -> None:
    parsed = orjson.loads(answer_of(v2([1, 0, 1]), "primary", "v2") or b"")
    assert parsed == {"role": "primary", "task": "classification", "values": [1, 0, 1]}
    regression = orjson.dumps(
        {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [[1.5], [2.0]]}]}
    )
    assert orjson.loads(answer_of(regression, "shadow", "v2") or b"")["values"] == [1.5, 2.0]
    assert answer_of(b"{}", "primary", "v2") is None
    assert answer_of(b"nope", "primary", "v1") is None
    assert answer_of(v2(list(range(10_000))), "primary", "v2") is None  # over MAX_ANSWER_BYTES


@pytest.mark.parametrize(
    ("predictions", "task", "values"),
    [
        ([1, 0, 1], "classification", [1, 0, 1]),  # one output: a value per instance
        ([[1], [0]], "classification", [1, 0]),  # ... or a one-value list per instance
        (["cat", "dog"], "classification", ["cat", "dog"]),
        ([True, False], "classification", [True, False]),
        ([0.5, 2], "regression", [0.5, 2]),  # floats: a regressor's answer
        # several outputs: an object per instance; the label output wins over the scores
        (
            [{"label": 1, "probabilities": [0.2, 0.8]}, {"label": 0, "probabilities": [0.9, 0.1]}],
            "classification",
            [1, 0],
        ),
        ([{"score": 0.25}, {"score": 1.5}], "regression", [0.25, 1.5]),
        # a null is a row the model did not answer (a NaN): kept, and not typing the column
        ([1, None, 0], "classification", [1, None, 0]),
        ([[0.5], [None]], "regression", [0.5, None]),
        (
            [{"label": None, "p": [0.5]}, {"label": "cat", "p": [0.9]}],
            "classification",
            [None, "cat"],
        ),
    ],
)
def test_v1_answers_are_read_from_their_json_values(
    predictions: list[object], task: str, values: list[object]
) -> None:
    body = orjson.dumps({"predictions": predictions})
    assert orjson.loads(answer_of(body, "primary", "v1") or b"") == {
        "role": "primary", "task": task, "values": values
    }  # fmt: skip


@pytest.mark.parametrize(
    "predictions",
    [[], [[0.2, 0.8]], [{"p": [0.2, 0.8]}], [1, "a"], [None], [{"a": 1}, {"b": 2}], [{}]],
    ids=["empty", "scores", "object-scores", "mixed", "null", "ragged-objects", "no-keys"],
)
def test_v1_answers_without_a_label_output_are_not_recorded(predictions: list[object]) -> None:
    assert answer_of(orjson.dumps({"predictions": predictions}), "primary", "v1") is None


def test_the_protocol_comes_from_the_request_not_the_body() -> None:
    v1 = orjson.dumps({"predictions": [1, 0]})
    assert answer_of(v1, "primary", "v2") is None
    assert answer_of(v2([1, 0]), "primary", "v1") is None
    assert answer_of(v1, "primary", "v1") is not None
    assert request_api(b"POST /v1/models/m:predict HTTP/1.1\r\nhost: h\r\n\r\n{}") == "v1"
    assert request_api(b"POST /v2/models/m/infer HTTP/1.1\r\nhost: h\r\n\r\n{}") == "v2"


def test_answers_with_more_rows_than_can_fit_are_refused_before_their_values_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every row costs at least 2 bytes of an answer: past MAX_ANSWER_ROWS rows nothing of
    a v1 body is built or typed, nothing of a v2 one's data read or encoded (a 14 MiB v1
    body of 20 keys took 420 ms of the event loop before)."""
    typed: list[object] = []
    encoded: list[object] = []
    monkeypatch.setattr(prediction_log, "_json_datatype", lambda v: typed.append(v) or "INT64")
    dumps = orjson.dumps
    monkeypatch.setattr(orjson, "dumps", lambda *a, **k: encoded.append(a) or dumps(*a, **k))
    row = {f"k{i}": i for i in range(20)}
    rows = MAX_ANSWER_ROWS + 1
    v1 = dumps({"predictions": [row] * rows})
    assert answer_of(v1, "primary", "v1") is None
    assert typed == []
    v2_body = dumps(
        {"outputs": [{"name": "y", "datatype": "INT64", "shape": [rows], "data": [1] * rows}]}
    )
    assert answer_of(v2_body, "primary", "v2") is None
    assert encoded == []
    fits = dumps({"predictions": [1, 2]})  # the spies do see the work of an answer that fits
    assert answer_of(fits, "primary", "v1") is not None and typed and encoded


def test_a_full_queue_drops_and_counts() -> None:
    log = MemoryLog(ttl=3600, max_bytes=1 << 20)
    recorder = Recorder(log, RecorderLimits(max_pending=3, max_pending_bytes=1 << 20))
    for i in range(5):
        recorder.primary("m", f"id{i}", "old", v2([1]), "v2")
    assert recorder.pending == 3 and recorder.counts["overflow"] == 2
    run(recorder.flush())
    assert recorder.counts["recorded"] == 3 and len(log) == 3
    small = Recorder(log, RecorderLimits(max_pending=100, max_pending_bytes=100))
    small.primary("m", "big", "old", b"x" * 200, "v2")
    assert small.pending == 0 and small.counts["overflow"] == 1


# ---------------------------------------------------------------------------- labels
def _log_with(*records: Record) -> MemoryLog:
    log = MemoryLog(ttl=3600, max_bytes=1 << 20)
    run(log.record(list(records)))
    return log


def test_join_counts_per_revision_and_paired_outcomes() -> None:
    log = _log_with(
        Record("m:a", "old", answer([1, 0]), primary=True),
        Record("m:a", "new", answer([1, 1], "shadow"), primary=False),
        Record("m:b", "new", answer([0]), primary=True),
    )
    totals = FeedbackTotals()
    labels = [Label("a", [1, 1]), Label("b", 0), Label("c", 1), Label("a", [0, 0])]
    result = run(join(log, "m", labels, known={"old", "new"}, totals=totals))
    assert result == {"matched": 2, "unknown_id": 1, "expired": 0, "duplicate": 1}
    assert dict(totals.labelled) == {"old": 2, "new": 3}
    assert dict(totals.correct) == {"old": 1, "new": 3}
    assert dict(totals.paired) == {
        ("old", "new", "both_right"): 1,
        ("old", "new", "only_shadow_right"): 1,
    }


def test_a_label_that_does_not_fit_is_a_400_and_counts_nothing() -> None:
    log = _log_with(Record("m:a", "old", answer([1, 0]), primary=True))
    totals = FeedbackTotals()
    with pytest.raises(FeedbackError, match="2 row"):
        run(join(log, "m", [Label("a", 1)], known={"old"}, totals=totals))
    assert not totals.labelled and not totals.labels
    assert run(log.mark(["m:a"])) == [True]  # not marked by the refused call


def test_revisions_no_table_named_are_not_counted() -> None:
    log = _log_with(Record("m:a", "gone", answer([1]), primary=True))
    totals = FeedbackTotals()
    run(join(log, "m", [Label("a", 1)], known={"old"}, totals=totals))
    assert totals.labels["matched"] == 1 and not totals.labelled


def test_regression_pairs_count_errors() -> None:
    log = _log_with(
        Record("m:a", "old", answer([1.0, 2.0], task="regression"), primary=True),
        Record("m:a", "new", answer([1.5, 2.0], "shadow", "regression"), primary=False),
    )
    totals = FeedbackTotals()
    run(join(log, "m", [Label("a", [2.0, 2.0])], known={"old", "new"}, totals=totals))
    assert totals.abs_error == {"old": 1.0, "new": 0.5}
    assert totals.paired[("old", "new", "shadow_better")] == 1
    assert totals.paired[("old", "new", "tie")] == 1
    assert totals.paired_diff[("old", "new")] == [1.0, 0.5, 0.25]


def _answers(role: str, v2_body: bytes | None = None, v1_body: bytes | None = None) -> bytes:
    api = "v1" if v1_body is not None else "v2"
    body = v1_body if v1_body is not None else v2_body
    found = answer_of(body or b"", role, api)  # type: ignore[arg-type]
    assert found is not None, body
    return found


def test_a_classifier_s_null_prediction_is_a_wrong_one_v1_and_v2() -> None:
    """A null row (the model gave no class) is counted wrong, on either side of a pair; it
    is counted apart as well; its label is still checked."""
    log = _log_with(
        Record("m:a", "old", _answers("primary", v2_body=v2([1, None, 0])), primary=True),
        Record(
            "m:a",
            "new",
            _answers("shadow", v1_body=orjson.dumps({"predictions": [[1], [1], [None]]})),
            primary=False,
        ),
        Record("m:b", "old", _answers("primary", v2_body=v2([None], "BYTES")), primary=True),
    )
    totals = FeedbackTotals()
    labels = [Label("a", [1, 1, 0]), Label("b", "cat")]
    result = run(join(log, "m", labels, known={"old", "new"}, totals=totals))
    assert result == {"matched": 2, "unknown_id": 0, "expired": 0, "duplicate": 0}
    assert dict(totals.labelled) == {"old": 4, "new": 3}
    assert dict(totals.correct) == {"old": 2, "new": 2}
    assert dict(totals.null_predictions) == {"old": 2, "new": 1}
    assert dict(totals.paired) == {
        ("old", "new", "both_right"): 1,
        ("old", "new", "only_shadow_right"): 1,
        ("old", "new", "only_primary_right"): 1,
    }
    log = _log_with(Record("m:c", "old", _answers("primary", v2_body=v2([1, None])), primary=True))
    with pytest.raises(FeedbackError, match="class numbers"):  # a null row's label too
        run(join(log, "m", [Label("c", [1, "cat"])], known={"old"}, totals=FeedbackTotals()))


def test_a_regressor_s_null_prediction_is_not_scored_v1_and_v2() -> None:
    """A regressor's NaN (null in JSON) has no absolute error: its row is left out of the
    revision's labelled rows and errors and out of the pairs, and counted apart; a label
    used to make float(None) fail the whole call with a 500."""
    y = {"name": "y", "datatype": "FP32", "shape": [3, 1]}
    old = orjson.dumps({"outputs": [{**y, "data": [[1.0], [None], [3.0]]}]})
    new = orjson.dumps({"predictions": [None, 2.5, 3.0]})
    odd = orjson.dumps({"outputs": [{**y, "shape": [1], "data": ["nan"]}]})
    log = _log_with(
        Record("m:a", "old", _answers("primary", v2_body=old), primary=True),
        Record("m:a", "new", _answers("shadow", v1_body=new), primary=False),
        Record("m:b", "old", _answers("primary", v2_body=odd), primary=True),
    )
    totals = FeedbackTotals()
    labels = [Label("a", [2.0, 2.0, 2.0]), Label("b", 1.0)]
    result = run(join(log, "m", labels, known={"old", "new"}, totals=totals))
    assert result["matched"] == 2
    assert dict(totals.labelled) == {"old": 2, "new": 2}
    assert dict(totals.abs_error) == {"old": 2.0, "new": 1.5}
    assert dict(totals.null_predictions) == {"old": 2, "new": 1}
    assert dict(totals.paired) == {("old", "new", "tie"): 1}  # the one row both answered
    assert totals.paired_diff[("old", "new")] == [1.0, 1.0, 0.0]
    log = _log_with(Record("m:c", "old", _answers("primary", v2_body=old), primary=True))
    with pytest.raises(FeedbackError, match="finite number"):  # a null row's label too
        run(join(log, "m", [Label("c", [1.0, "x", 1.0])], known={"old"}, totals=FeedbackTotals()))

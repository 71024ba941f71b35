"""The live side: requests into the window, statistics out, at the window's edges."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.drift.fold import Encoder
from serinus_serving.drift.monitor import DriftMonitor
from serinus_serving.drift.profile import Profile
from serinus_serving.drift.stats import bin_counts, js_distance, psi
from unit.drift.kit import live_rows, tabular_profile

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor(
    profile: Profile | None = None, *, clock: Clock | None = None, **overrides: object
) -> DriftMonitor:
    options: dict[str, object] = {
        "capacity": 1000,
        "max_age": 60.0,
        "min_samples": 300,
        "threshold": 0.2,
        "refresh": 0.0,
    }
    options.update(overrides)
    return DriftMonitor(profile or tabular_profile(), clock=clock or Clock(), **options)  # type: ignore[arg-type]


def send(m: DriftMonitor, x: np.ndarray, *, batch: int = 1) -> None:
    for start in range(0, len(x), batch):
        rows = x[start : start + batch]
        label = (rows[:, 0] > 0).astype(np.int64)
        m.record({"X": rows}, {"label": label}, len(rows))


def test_an_empty_window_exports_no_statistic() -> None:
    snap = monitor().snapshot()
    assert snap.window_samples == 0
    assert snap.score is None
    assert snap.drifted_ratio is None
    assert snap.features == ()
    assert snap.outputs == ()


def test_a_partial_window_below_min_samples_exports_no_statistic() -> None:
    m = monitor()
    send(m, live_rows(np.random.default_rng(0), 299))
    snap = m.snapshot()
    assert snap.window_samples == 299
    assert snap.score is None
    assert snap.features == ()


def test_training_like_traffic_keeps_the_score_low() -> None:
    m = monitor()
    send(m, live_rows(np.random.default_rng(1), 1000))
    snap = m.snapshot()
    assert snap.window_samples == 1000
    assert snap.score is not None and snap.score < 0.1
    assert snap.drifted_ratio == 0
    by_name = {c.name: c for c in snap.features}
    assert set(by_name) == {"a", "b", "c"}
    assert by_name["a"].ks is not None and by_name["a"].ks < 0.06
    assert by_name["a"].js is None
    assert by_name["c"].js is not None and by_name["c"].js < 0.05
    assert by_name["c"].ks is None
    assert [c.name for c in snap.outputs] == ["label"]


def test_a_two_sigma_shift_of_one_feature_raises_the_score_within_one_window() -> None:
    m = monitor()
    rng = np.random.default_rng(2)
    send(m, live_rows(rng, 1000))
    send(m, live_rows(rng, 1000, shift_a=2.0), batch=7)  # replaces the whole window
    snap = m.snapshot()
    by_name = {c.name: c for c in snap.features}
    assert snap.score == by_name["a"].psi
    assert snap.score is not None and snap.score > 0.2
    assert by_name["b"].psi < 0.1
    assert snap.drifted_ratio == pytest.approx(1 / 3)
    assert by_name["a"].ks is not None and by_name["a"].ks > 0.6


def test_rows_leave_the_window_with_age() -> None:
    clock = Clock()
    m = monitor(clock=clock)
    send(m, live_rows(np.random.default_rng(3), 400))
    assert m.snapshot().score is not None
    clock.now += 30
    send(m, live_rows(np.random.default_rng(4), 100))
    clock.now += 31  # the first 400 rows are now 61 s old
    snap = m.snapshot()
    assert snap.window_samples == 100
    assert snap.score is None


def test_pending_requests_fold_every_fold_rows() -> None:
    m = monitor(fold_rows=10)
    send(m, live_rows(np.random.default_rng(5), 25))
    assert m.window.total == 20  # two folds; 5 rows still pending
    assert m.snapshot().window_samples == 25  # a read folds the rest


def test_a_request_larger_than_the_window_keeps_its_newest_rows() -> None:
    m = monitor(capacity=500, min_samples=100)
    rng = np.random.default_rng(6)
    send(m, live_rows(rng, 400, shift_a=5.0), batch=400)
    send(m, live_rows(rng, 2000), batch=2000)
    snap = m.snapshot()
    assert snap.window_samples == 500
    assert snap.score is not None and snap.score < 0.2


def test_unseen_categories_count_as_other_and_drift() -> None:
    m = monitor()
    x = live_rows(np.random.default_rng(7), 1000)
    x[:, 2] = 9  # never seen in training
    send(m, x, batch=50)
    by_name = {c.name: c for c in m.snapshot().features}
    assert by_name["c"].psi > 1
    assert by_name["c"].js is not None and by_name["c"].js > 0.9


def test_requests_without_an_output_leave_it_missing() -> None:
    m = monitor(min_samples=100)
    x = live_rows(np.random.default_rng(8), 400)
    for start in range(0, 400, 4):
        outputs = {} if start % 8 else {"label": np.zeros(4, dtype=np.int64)}
        m.record({"X": x[start : start + 4]}, outputs, 4)
    snap = m.snapshot()
    assert snap.window_samples == 400
    (label,) = snap.outputs
    assert label.samples == 200


def test_a_tensor_whose_rows_change_size_is_left_missing_and_counted() -> None:
    """The first request fixes a tensor's dtype and row size; a later one that differs is
    not recorded (its other tensors are)."""
    m = monitor(tabular_profile(), min_samples=1)
    m.record({"X": np.zeros((2, 3), np.float32)}, {"label": np.zeros(2, np.int64)}, 2)
    m.record({"X": np.zeros((3, 4), np.float32)}, {"label": np.ones(3, np.int64)}, 3)
    m.record({"X": np.zeros((1, 3), np.float64)}, {"label": np.ones(1, np.int64)}, 1)
    m.fold()
    assert m.window.total == 6
    assert m.fold_errors == 4  # rows
    snap = m.snapshot()
    assert {c.name: c.samples for c in snap.features} == {"a": 2, "b": 2, "c": 2}
    assert snap.outputs[0].samples == 6


def test_rows_before_the_first_array_of_a_tensor_stay_aligned() -> None:
    m = monitor(tabular_profile(), min_samples=1)
    m.record({"X": np.zeros((2, 3), np.float32)}, {}, 2)  # no label yet
    m.record({"X": np.zeros((1, 3), np.float32)}, {"label": np.array([1])}, 1)
    m.record({"X": np.zeros((1, 3), np.float32)}, {"label": np.array([0])}, 1)
    view = (m.fold(), m.window.view(m._clock()))[1]
    label_codes = view.codes[:, 1]
    (label,) = m.profile.outputs
    values = [label.values[c] if c >= 0 else None for c in label_codes]  # type: ignore[union-attr]
    assert values == [None, None, 1, 0]


def test_a_request_that_cannot_be_folded_never_raises() -> None:
    m = monitor(fold_rows=1, min_samples=1)
    m.record({"X": np.zeros((2, 1), np.float32)}, {}, 2)  # no column 1 or 2
    assert m.fold_errors == 2
    snap = m.snapshot()
    assert snap.features == ()  # its rows hold no values
    assert snap.score is None


def test_snapshots_are_cached_for_refresh_seconds() -> None:
    clock = Clock()
    m = monitor(clock=clock, refresh=5.0, min_samples=10)
    send(m, live_rows(np.random.default_rng(9), 50))
    first = m.snapshot()
    send(m, live_rows(np.random.default_rng(10), 50))
    assert m.snapshot() is first
    clock.now += 5
    assert m.snapshot().window_samples == 100


@given(
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    capacity=st.integers(20, 300),
    fold_rows=st.integers(1, 64),
    seed=st.integers(0, 1000),
)
def test_statistics_are_those_of_the_latest_rows(
    batches: list[int], capacity: int, fold_rows: int, seed: int
) -> None:
    """Whatever the batch sizes and fold points: the window is the newest `capacity` rows,
    and its statistics are the plain ones computed on them."""
    profile = tabular_profile()
    m = monitor(profile, capacity=capacity, fold_rows=fold_rows, min_samples=1)
    rng = np.random.default_rng(seed)
    sent = []
    for size in batches:
        x = live_rows(rng, size, shift_a=float(rng.normal()))
        sent.append(x)
        send(m, x, batch=size)
    latest = np.concatenate(sent)[-capacity:]
    snap = m.snapshot()
    assert snap.window_samples == len(latest)
    a, _b, c = profile.features
    by_name = {col.name: col for col in snap.features}
    assert by_name["a"].psi == pytest.approx(
        psi(a.proportions, bin_counts(a.edges, latest[:, 0].astype(np.float64)))  # type: ignore[union-attr]
    )
    codes = latest[:, 2].astype(np.int64)
    counts = np.bincount(codes, minlength=len(c.values) + 1)  # type: ignore[union-attr]
    order = [c.values.index(v) for v in range(4)]  # type: ignore[union-attr]
    expected = np.zeros(5)
    expected[order] = counts[:4]
    assert by_name["c"].js == pytest.approx(js_distance(c.proportions, expected))


@given(
    values=st.lists(st.integers(-50, 50), unique=True, max_size=20),
    live=st.lists(st.integers(-60, 60), max_size=50),
)
def test_integer_categories_encode_as_a_dict_would(values: list[int], live: list[int]) -> None:
    encoder = Encoder(values)
    expected = [values.index(v) if v in values else len(values) for v in live]
    assert encoder.encode(np.array(live, dtype=np.int64)).tolist() == expected
    assert encoder.encode(np.array(live, dtype=object)).tolist() == expected  # the dict path


def test_on_an_event_loop_the_fold_runs_after_the_request() -> None:
    async def scenario() -> tuple[int, int]:
        m = monitor(fold_rows=10)
        send(m, live_rows(np.random.default_rng(11), 12))
        during = m.window.total  # the request that crossed fold_rows is still running
        await asyncio.sleep(0)
        return during, m.window.total

    assert asyncio.run(scenario()) == (0, 12)


def test_non_contiguous_arrays_are_copied_right() -> None:
    m = monitor(tabular_profile(), min_samples=1)
    x = live_rows(np.random.default_rng(12), 4)
    m.record({"X": x}, {"label": np.zeros(4, np.int64)}, 4)
    m.record({"X": np.asfortranarray(x)}, {"label": np.zeros(8, np.int64)[::2]}, 4)
    m.fold()
    view = m.window.view(m._clock())
    assert m.fold_errors == 0
    assert np.array_equal(view.numeric[:4], view.numeric[4:])
    assert np.array_equal(view.codes[:4], view.codes[4:])

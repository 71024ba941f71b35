"""The ring window at its edges: empty, partial, full, rollover, age limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.drift.window import MISSING, RingWindow

pytestmark = pytest.mark.unit


def window(capacity: int = 5, max_age: float = 100.0) -> RingWindow:
    return RingWindow(capacity=capacity, max_age=max_age, numeric_columns=1, categorical_columns=1)


def block(values: list[float], at: float | list[float]) -> tuple[np.ndarray, ...]:
    times = np.broadcast_to(np.asarray(at, dtype=np.float64), (len(values),)).copy()
    numeric = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    codes = np.asarray(values, dtype=np.int32).reshape(-1, 1)
    return numeric, codes, times


def test_an_empty_window_has_no_rows() -> None:
    view = window().view(now=0.0)
    assert view.rows == 0
    assert view.numeric.shape == (0, 1)
    assert view.codes.shape == (0, 1)


def test_a_partial_window_holds_what_came() -> None:
    w = window()
    w.extend(*block([1, 2], at=0.0))
    assert sorted(w.view(0.0).numeric[:, 0]) == [1, 2]


def test_rollover_keeps_the_newest_rows() -> None:
    w = window(capacity=5)
    w.extend(*block([1, 2, 3], at=0.0))
    w.extend(*block([4, 5, 6, 7], at=1.0))  # wraps around the end of the ring
    assert sorted(w.view(1.0).numeric[:, 0]) == [3, 4, 5, 6, 7]
    assert sorted(w.view(1.0).codes[:, 0]) == [3, 4, 5, 6, 7]
    assert w.total == 7


def test_a_block_larger_than_the_ring_keeps_its_tail() -> None:
    w = window(capacity=3)
    w.extend(*block([1, 2, 3, 4, 5, 6, 7], at=0.0))
    assert sorted(w.view(0.0).numeric[:, 0]) == [5, 6, 7]


def test_rows_older_than_max_age_leave_the_window() -> None:
    w = window(capacity=10, max_age=10.0)
    w.extend(*block([1, 2], at=0.0))
    w.extend(*block([3], at=5.0))
    assert w.view(9.0).rows == 3
    assert w.view(10.0).rows == 3  # exactly max_age old still counts
    assert sorted(w.view(12.0).numeric[:, 0]) == [3]
    assert w.view(100.0).rows == 0


def test_clear_empties_the_window() -> None:
    w = window()
    w.extend(*block([1, 2], at=0.0))
    w.clear()
    assert w.view(0.0).rows == 0


def test_views_are_copies() -> None:
    w = window()
    w.extend(*block([1], at=0.0))
    w.view(0.0).numeric[0, 0] = 99
    assert w.view(0.0).numeric[0, 0] == 1


def test_mismatched_blocks_and_bad_sizes_are_refused() -> None:
    w = window()
    numeric, codes, times = block([1, 2], at=0.0)
    with pytest.raises(ValueError, match="same number of rows"):
        w.extend(numeric, codes[:1], times)
    with pytest.raises(ValueError, match="capacity"):
        RingWindow(capacity=0, max_age=1, numeric_columns=1, categorical_columns=0)
    with pytest.raises(ValueError, match="max_age"):
        RingWindow(capacity=1, max_age=0, numeric_columns=1, categorical_columns=0)
    assert MISSING < 0


@given(
    capacity=st.integers(1, 20),
    blocks=st.lists(st.integers(0, 30), min_size=1, max_size=20),
)
def test_the_window_always_holds_the_latest_rows(capacity: int, blocks: list[int]) -> None:
    """Against a plain list: whatever the block sizes, the window is the last `capacity`."""
    w = window(capacity=capacity)
    everything: list[float] = []
    for size in blocks:
        values = [float(len(everything) + i) for i in range(size)]
        everything += values
        w.extend(*block(values, at=0.0))
    assert sorted(w.view(0.0).numeric[:, 0].tolist()) == everything[-capacity:]

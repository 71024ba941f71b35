"""A sliding window of rows, bounded by count and by age, in preallocated numpy arrays.

Rows arrive in blocks (many requests folded at once) and overwrite the oldest once the
ring is full; reading selects the rows younger than ``max_age``. Nothing here allocates
per row, so memory stays at ``capacity`` rows whatever the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: The code a categorical column stores for a missing value; never counted.
MISSING = -1


@dataclass(frozen=True, slots=True)
class WindowView:
    """The rows inside the window now: numeric values (NaN = missing) and category codes."""

    numeric: npt.NDArray[np.float64]
    codes: npt.NDArray[np.int32]

    @property
    def rows(self) -> int:
        return int(self.numeric.shape[0])


class RingWindow:
    def __init__(
        self, *, capacity: int, max_age: float, numeric_columns: int, categorical_columns: int
    ) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1, got {capacity}")
        if max_age <= 0:
            raise ValueError(f"window max_age must be > 0, got {max_age}")
        self.capacity = capacity
        self.max_age = max_age
        self._numeric = np.full((capacity, numeric_columns), np.nan, dtype=np.float64)
        self._codes = np.full((capacity, categorical_columns), MISSING, dtype=np.int32)
        self._times = np.full(capacity, -np.inf, dtype=np.float64)
        self._next = 0  # where the next row goes
        self._filled = 0
        #: Rows ever written, for "has anything changed since" checks.
        self.total = 0

    @property
    def numeric_columns(self) -> int:
        return int(self._numeric.shape[1])

    @property
    def categorical_columns(self) -> int:
        return int(self._codes.shape[1])

    def extend(
        self,
        numeric: npt.NDArray[np.float64],
        codes: npt.NDArray[np.int32],
        times: npt.NDArray[np.float64],
    ) -> None:
        """Append a block of rows (oldest first); only the newest ``capacity`` are kept."""
        rows = times.shape[0]
        if numeric.shape[0] != rows or codes.shape[0] != rows:
            raise ValueError("numeric, codes and times must have the same number of rows")
        self.total += rows
        if rows > self.capacity:
            numeric, codes, times = (
                numeric[-self.capacity :],
                codes[-self.capacity :],
                times[-self.capacity :],
            )
            rows = self.capacity
        first = min(rows, self.capacity - self._next)
        stop = self._next + first
        self._numeric[self._next : stop] = numeric[:first]
        self._codes[self._next : stop] = codes[:first]
        self._times[self._next : stop] = times[:first]
        rest = rows - first
        if rest:
            self._numeric[:rest] = numeric[first:]
            self._codes[:rest] = codes[first:]
            self._times[:rest] = times[first:]
        self._next = (self._next + rows) % self.capacity
        self._filled = min(self.capacity, self._filled + rows)

    def view(self, now: float) -> WindowView:
        """Copies of the rows written no earlier than ``now - max_age``."""
        filled = self._filled
        keep = self._times[:filled] >= now - self.max_age
        return WindowView(self._numeric[:filled][keep], self._codes[:filled][keep])

    def clear(self) -> None:
        self._times.fill(-np.inf)
        self._next = self._filled = 0

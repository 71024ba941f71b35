"""Live tensors into window rows, cheaply.

On the request path each tensor the profile reads has its rows' bytes appended to a
``bytearray`` (the buffer protocol, no intermediate object): measured in a running server,
keeping references to requests' arrays until a fold cost several times more, because every
request then ran on cold memory. A fold turns each buffer into one array and writes all its
numeric columns with one fancy-index assignment and its categories with vectorised codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from serinus_serving.drift.columns import Selector
from serinus_serving.runtime.base import Array

Codes = npt.NDArray[np.int32]


class Encoder:
    """Category value -> code; every value the profile does not list is ``len(values)``
    ("other"). Integer categories are looked up with a binary search, others by dict."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.other = len(values)
        self.lookup = {value: code for code, value in enumerate(values)}
        self._sorted: npt.NDArray[np.int64] | None = None
        if values and all(type(v) is int for v in values):
            order = np.argsort(np.array(values, dtype=np.int64), kind="stable")
            self._sorted = np.array(values, dtype=np.int64)[order]
            self._codes: Codes = order.astype(np.int32)

    def encode(self, values: Array) -> Codes:
        if self._sorted is not None and values.dtype.kind in "iu":
            at = np.minimum(np.searchsorted(self._sorted, values), self._sorted.size - 1)
            hit = self._sorted[at] == values
            coded: Codes = np.where(hit, self._codes[at], self.other).astype(np.int32)
            return coded
        lookup, other = self.lookup, self.other
        return np.fromiter(
            (lookup.get(v, other) for v in values.tolist()), dtype=np.int32, count=values.shape[0]
        )


@dataclass
class TensorPlan:
    """One tensor's staging buffer, and where its columns go in the window's numeric and
    code matrices."""

    tensor: str
    #: Numeric columns picked by index from a 2-D tensor: tensor columns -> window positions.
    indices: npt.NDArray[np.intp]
    positions: npt.NDArray[np.intp]
    #: Other numeric columns (a whole [N] / [N, 1] tensor, a per-row mean).
    numeric: list[tuple[Selector, int]]
    categorical: list[tuple[Selector, int, Encoder]]
    #: Rows that could not be stored (a tensor of another type or row size, say).
    errors: int = 0
    #: Learnt from the first array seen: every later one must match, else its rows are gaps.
    dtype: np.dtype[Any] | None = None
    row_bytes: int = 0
    row_shape: tuple[int, ...] = ()
    data: bytearray = field(default_factory=bytearray)
    objects: list[Any] = field(default_factory=list)
    #: (first row, rows) of requests whose tensor is missing or does not fit.
    gaps: list[tuple[int, int]] = field(default_factory=list)

    # ------------------------------------------------------------------ request path
    def add(self, array: Array | None, rows: int, start: int) -> None:
        """Stage ``rows`` rows starting at pending row ``start``; the hot path is three
        attribute reads, two comparisons and a buffer append."""
        if (
            array is not None
            and array.dtype == self.dtype
            and array.nbytes == rows * self.row_bytes
        ):
            try:  # bytearray's own +=; the operator would let numpy broadcast an addition
                self.data.__iadd__(array)  # type: ignore[arg-type]  # arrays export a buffer
            except (BufferError, TypeError):  # not C-contiguous
                self.data.__iadd__(array.tobytes())
            return
        self._add_slowly(array, rows, start)

    def _add_slowly(self, array: Array | None, rows: int, start: int) -> None:
        if array is not None and rows and array.ndim >= 1 and array.shape[0] == rows:
            if self.dtype is None:  # the first array decides; rows before it were gaps
                self.dtype, self.row_shape = array.dtype, tuple(array.shape[1:])
                self.row_bytes = 0 if array.dtype.hasobject else array.nbytes // rows
                self._pad(start)
                if self.row_bytes:
                    self.add(array, rows, start)
                    return
            if self.dtype.hasobject and array.dtype.hasobject and array.shape[1:] == self.row_shape:
                self.objects.extend(array.reshape(-1).tolist())
                return
        if rows:
            self.errors += rows if array is not None else 0
            self.gaps.append((start, rows))
            self._pad(rows)

    def _pad(self, rows: int) -> None:
        """Placeholder values for ``rows`` gap rows, so that later rows stay aligned."""
        if self.row_bytes:
            self.data.__iadd__(bytes(rows * self.row_bytes))
        elif self.dtype is not None:
            self.objects.extend([None] * (rows * math.prod(self.row_shape)))

    # ------------------------------------------------------------------ fold
    def fold(self, total: int, numeric: npt.NDArray[np.float64], codes: Codes) -> None:
        """Write the ``total`` staged rows into ``numeric`` and ``codes``; reset."""
        data, objects, gaps = self.data, self.objects, self.gaps
        self.data, self.objects, self.gaps = bytearray(), [], []
        if self.dtype is None or total == 0:
            return  # nothing was ever staged: every row is a gap, already missing
        if self.row_bytes:
            block: Array = np.frombuffer(data, dtype=self.dtype).reshape((total, *self.row_shape))
        else:
            block = np.array(objects, dtype=object).reshape((total, *self.row_shape))
        try:
            self._store(block, total, numeric, codes)
        except (ValueError, IndexError, TypeError):
            self.errors += total
            gaps = [(0, total)]
        for start, rows in gaps:
            self._clear(slice(start, start + rows), numeric, codes)

    def _store(
        self, block: Array, rows: int, numeric: npt.NDArray[np.float64], codes: Codes
    ) -> None:
        if self.positions.size:
            numeric[:rows, self.positions] = block.reshape(rows, -1)[:, self.indices]
        for selector, position in self.numeric:
            numeric[:rows, position] = selector.extract(block, rows)
        for selector, position, encoder in self.categorical:
            codes[:rows, position] = encoder.encode(selector.extract(block, rows))

    def _clear(self, rows: slice, numeric: npt.NDArray[np.float64], codes: Codes) -> None:
        numeric[rows, self.positions] = np.nan
        for _, position in self.numeric:
            numeric[rows, position] = np.nan
        for _, position, _ in self.categorical:
            codes[rows, position] = -1


def plan(tensor: str, columns: Sequence[tuple[Selector, int, Encoder | None]]) -> TensorPlan:
    """A tensor's plan from its columns: (selector, window position, encoder if categorical)."""
    indexed = [(s.index, p) for s, p, e in columns if e is None and s.index is not None]
    return TensorPlan(
        tensor,
        indices=np.array([i for i, _ in indexed], dtype=np.intp),
        positions=np.array([p for _, p in indexed], dtype=np.intp),
        numeric=[(s, p) for s, p, e in columns if e is None and s.index is None],
        categorical=[(s, p, e) for s, p, e in columns if e is not None],
    )

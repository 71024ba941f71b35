"""The live side of drift: live inputs and predictions into a window, statistics out.

The request path only appends the bytes of the tensors the profile reads to one buffer per
tensor (about a microsecond in all; see fold.py). Every ``fold_rows`` rows (on the loop's
next turn, after the response is written), and before each read, the buffers are folded
into the ring window, vectorised. Statistics are computed when Prometheus scrapes, at most
once per ``refresh`` seconds. Everything runs on the event-loop thread, so nothing is
locked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serinus_serving.drift.columns import Kind, Selector
from serinus_serving.drift.fold import Encoder, TensorPlan, plan
from serinus_serving.drift.profile import (
    CategoricalReference,
    NumericReference,
    Profile,
    Reference,
    references_by_tensor,
)
from serinus_serving.drift.stats import bin_counts, js_distance, ks_from_cdf, psi
from serinus_serving.drift.window import MISSING, RingWindow, WindowView
from serinus_serving.runtime.base import Array

log = logging.getLogger(__name__)

#: Fold pending requests into the window after this many rows (bounded memory, amortised cost).
DEFAULT_FOLD_ROWS = 256


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    name: str
    kind: Kind
    samples: int
    psi: float
    ks: float | None = None
    js: float | None = None


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    window_samples: int
    features: tuple[ColumnDrift, ...]
    outputs: tuple[ColumnDrift, ...]
    #: Largest feature PSI; None until a feature has ``min_samples`` values in the window.
    score: float | None
    #: Share of the features with a statistic whose PSI is over the threshold.
    drifted_ratio: float | None


class DriftMonitor:
    def __init__(
        self,
        profile: Profile,
        *,
        capacity: int,
        max_age: float,
        min_samples: int,
        threshold: float,
        fold_rows: int = DEFAULT_FOLD_ROWS,
        refresh: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.min_samples = min_samples
        self.threshold = threshold
        self.fold_rows = max(1, fold_rows)
        self.refresh = refresh
        self._clock = clock
        #: id(reference) -> its column in the window's numeric or code matrix.
        self._position: dict[int, int] = {}
        self._input_plans, numeric, categorical = self._plans(profile.features, 0, 0)
        self._output_plans, numeric, categorical = self._plans(
            profile.outputs, numeric, categorical
        )
        #: (plan, 0 for an input / 1 for an output), in the order record() walks them.
        self._staging = tuple(
            [(p, 0) for p in self._input_plans] + [(p, 1) for p in self._output_plans]
        )
        self.window = RingWindow(
            capacity=capacity,
            max_age=max_age,
            numeric_columns=numeric,
            categorical_columns=categorical,
        )
        self._times: list[float] = []
        self._counts: list[int] = []
        self._pending_rows = 0
        self._fold_scheduled = False
        self._snapshot: DriftSnapshot | None = None
        self._snapshot_at = -np.inf
        self._fold_failures = 0

    def _plans(
        self, refs: Sequence[Reference], numeric: int, categorical: int
    ) -> tuple[list[TensorPlan], int, int]:
        """Plans for ``refs``, numbering their window columns on from the counts given."""
        plans = []
        for tensor, group in references_by_tensor(refs).items():
            columns: list[tuple[Selector, int, Encoder | None]] = []
            for ref in group:
                if isinstance(ref, NumericReference):
                    position, numeric = numeric, numeric + 1
                    columns.append((ref.selector, position, None))
                else:
                    position, categorical = categorical, categorical + 1
                    columns.append((ref.selector, position, Encoder(ref.values)))
                self._position[id(ref)] = position
            plans.append(plan(tensor, columns))
        return plans, numeric, categorical

    @property
    def fold_errors(self) -> int:
        """Rows of a tensor that could not be recorded (wrong type or size), plus folds that
        failed as a whole."""
        plans = (*self._input_plans, *self._output_plans)
        return self._fold_failures + sum(p.errors for p in plans)

    # ------------------------------------------------------------------ request path
    def record(self, inputs: Mapping[str, Array], outputs: Mapping[str, Array], rows: int) -> None:
        """Stage one request's rows; cheap enough for every request."""
        self._times.append(self._clock())
        self._counts.append(rows)
        start = self._pending_rows
        sources = (inputs, outputs)
        for tensor_plan, side in self._staging:
            array = sources[side].get(tensor_plan.tensor)
            # TensorPlan.add's fast path, inlined: a method call per tensor is measurable here.
            if (
                array is not None
                and array.dtype == tensor_plan.dtype
                and array.nbytes == rows * tensor_plan.row_bytes
            ):
                try:  # bytearray's own +=: the operator would make numpy add
                    tensor_plan.data.__iadd__(array)  # type: ignore[arg-type]
                except (BufferError, TypeError):  # not C-contiguous
                    tensor_plan.data.__iadd__(array.tobytes())
            else:
                tensor_plan.add(array, rows, start)
        self._pending_rows = start = start + rows
        if start >= self.fold_rows and not self._fold_scheduled:
            self._schedule_fold()

    def _schedule_fold(self) -> None:
        """Fold on the event loop's next turn, after the current response is written; at
        once when there is no loop (tests, tools)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.fold()
            return
        self._fold_scheduled = True
        loop.call_soon(self._scheduled_fold)

    def _scheduled_fold(self) -> None:
        self._fold_scheduled = False
        self.fold()

    # ------------------------------------------------------------------ amortised
    def fold(self) -> None:
        """Move staged rows into the window; a failure drops them, never the request."""
        times, counts, total = self._times, self._counts, self._pending_rows
        self._times, self._counts, self._pending_rows = [], [], 0
        if not times:
            return
        try:
            self._fold(times, counts, total)
        except Exception:  # never let drift bookkeeping fail an inference request
            self._fold_failures += 1
            if self._fold_failures == 1 or self._fold_failures % 1000 == 0:
                log.exception("drift: could not record %d requests", len(times))

    def _fold(self, times: list[float], counts: list[int], total: int) -> None:
        window = self.window
        numeric = np.full((total, window.numeric_columns), np.nan, dtype=np.float64)
        codes = np.full((total, window.categorical_columns), MISSING, dtype=np.int32)
        for tensor_plan in (*self._input_plans, *self._output_plans):
            tensor_plan.fold(total, numeric, codes)
        stamps = np.array(times, dtype=np.float64)
        if total != len(times):
            stamps = np.repeat(stamps, counts)
        window.extend(numeric, codes, stamps)  # keeps the newest ``capacity`` rows

    # ------------------------------------------------------------------ scrape time
    def snapshot(self) -> DriftSnapshot:
        """The statistics over the window now (recomputed at most once per ``refresh``)."""
        now = self._clock()
        self.fold()
        if self._snapshot is not None and now - self._snapshot_at < self.refresh:
            return self._snapshot
        view = self.window.view(now)
        features = tuple(filter(None, (self._column(ref, view) for ref in self.profile.features)))
        outputs = tuple(filter(None, (self._column(ref, view) for ref in self.profile.outputs)))
        score = ratio = None
        if features:
            score = max(c.psi for c in features)
            ratio = sum(c.psi > self.threshold for c in features) / len(features)
        self._snapshot = DriftSnapshot(view.rows, features, outputs, score, ratio)
        self._snapshot_at = now
        return self._snapshot

    def _column(self, ref: Reference, view: WindowView) -> ColumnDrift | None:
        position = self._position[id(ref)]
        if isinstance(ref, CategoricalReference):
            column_codes = view.codes[:, position]
            column_codes = column_codes[column_codes != MISSING]
            if column_codes.size < self.min_samples:
                return None
            counts = np.bincount(column_codes, minlength=len(ref.values) + 1)
            return ColumnDrift(
                ref.name,
                "categorical",
                int(column_codes.size),
                psi(ref.proportions, counts),
                js=js_distance(ref.proportions, counts),
            )
        values = view.numeric[:, position]
        values = values[~np.isnan(values)]
        if values.size < self.min_samples:
            return None
        return ColumnDrift(
            ref.name,
            "numeric",
            int(values.size),
            psi(ref.proportions, bin_counts(ref.edges, values)),
            ks=ks_from_cdf(ref.points, ref.cdf, values),
        )

"""Build a reference profile: read the training data, run the model on it, summarise every
feature and output column (``serinus profile``)."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serinus_serving.drift.columns import Column, input_columns, output_columns
from serinus_serving.drift.data import DataError, read_table, to_tensors
from serinus_serving.drift.profile import (
    CategoricalReference,
    NumericReference,
    Profile,
    Reference,
    Target,
)
from serinus_serving.drift.stats import FloatArray, bin_counts
from serinus_serving.runtime.base import Array
from serinus_serving.runtime.onnx import OnnxRuntime

#: PSI's rules of thumb (0.1 moderate, 0.2-0.25 significant) were set for about 10 bins.
DEFAULT_BINS = 10
#: KS resolution: the statistic is exact at these quantiles, within ~1/Q between them.
DEFAULT_QUANTILES = 100
DEFAULT_MAX_ROWS = 200_000
DEFAULT_MAX_CATEGORIES = 64
#: Values per model call while profiling.
_CHUNK_ELEMENTS = 1 << 22


class BuildError(ValueError):
    """The profile cannot be built; the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    features: Sequence[str] | None = None
    categorical: Collection[str] = ()
    bins: int = DEFAULT_BINS
    quantiles: int = DEFAULT_QUANTILES
    max_rows: int = DEFAULT_MAX_ROWS
    max_categories: int = DEFAULT_MAX_CATEGORIES
    seed: int = 0


def _round7(values: FloatArray) -> FloatArray:
    """Seven significant digits (a float32's worth): shorter JSON, and the profile's counts
    are made against the rounded edges, so nothing is lost."""
    return np.array([float(f"{v:.7g}") for v in values], dtype=np.float64)


def numeric_reference(
    column: Column, values: Array, *, bins: int, quantiles: int
) -> NumericReference:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    nan = np.isnan(data)
    valid = np.sort(data[~nan])
    if valid.size == 0:
        raise BuildError(f"feature {column.name!r} has no values (all missing)")
    finite = valid[np.isfinite(valid)]
    if finite.size == 0:
        raise BuildError(f"feature {column.name!r} has no finite values")
    inner = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(_round7(np.quantile(finite, inner)))
    # The ends stay exact, so that the CDF reaches 1 at the last point.
    inner_points = _round7(np.quantile(finite, np.linspace(0, 1, quantiles + 1)[1:-1]))
    points = np.unique(np.concatenate([[finite[0]], inner_points, [finite[-1]]]))
    n = valid.size
    return NumericReference(
        name=column.name,
        selector=column.selector,
        count=int(n),
        missing=int(nan.sum()),
        edges=edges,
        proportions=bin_counts(edges, valid) / n,
        points=points,
        cdf=np.searchsorted(valid, points, side="right") / n,
        mean=float(f"{finite.mean():.7g}"),
        std=float(f"{finite.std():.7g}"),
    )


def categorical_reference(
    column: Column, values: Array, *, max_categories: int
) -> CategoricalReference:
    items = [v for v in np.asarray(values).reshape(-1).tolist() if not _is_missing(v)]
    if not items:
        raise BuildError(f"feature {column.name!r} has no values (all missing)")
    counts = Counter(items)
    common = counts.most_common(max_categories)
    n = len(items)
    kept = sum(c for _, c in common)
    return CategoricalReference(
        name=column.name,
        selector=column.selector,
        count=n,
        missing=int(np.asarray(values).size - n),
        values=tuple(_jsonable(v) for v, _ in common),
        proportions=np.array([c / n for _, c in common] + [(n - kept) / n], dtype=np.float64),
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _jsonable(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def reference(column: Column, values: Array, options: ProfileOptions) -> Reference:
    if column.kind == "categorical":
        return categorical_reference(column, values, max_categories=options.max_categories)
    return numeric_reference(column, values, bins=options.bins, quantiles=options.quantiles)


def _sample(tensors: dict[str, Array], *, max_rows: int, seed: int) -> dict[str, Array]:
    rows = {a.shape[0] for a in tensors.values()}
    if len(rows) != 1:
        raise BuildError(f"the inputs have different numbers of rows: {sorted(rows)}")
    (total,) = rows
    if total == 0:
        raise BuildError("the data has no rows")
    if total <= max_rows:
        return tensors
    keep = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    return {name: array[keep] for name, array in tensors.items()}


def _load(model: str) -> OnnxRuntime:
    runtime = OnnxRuntime(model)
    asyncio.run(runtime.load())
    if not runtime.ready:
        raise BuildError(f"cannot load the model {model}: {runtime.reason}")
    return runtime


def _predict(runtime: OnnxRuntime, tensors: dict[str, Array]) -> dict[str, Array]:
    rows = next(iter(tensors.values())).shape[0]
    per_row = max(1, sum(a[:1].size for a in tensors.values()))
    fixed = {s.shape[0] for s in runtime.inputs if s.shape and s.shape[0] > 0}
    if len(fixed) > 1:
        raise BuildError(f"the model's inputs fix different batch sizes: {sorted(fixed)}")
    chunk = next(iter(fixed)) if fixed else max(1, min(65_536, _CHUNK_ELEMENTS // per_row))
    usable = rows - rows % chunk if fixed else rows
    if usable == 0:
        raise BuildError(f"the model takes batches of exactly {chunk} rows; the data has {rows}")
    parts: dict[str, list[Array]] = {}
    for start in range(0, usable, chunk):
        batch = {name: array[start : start + chunk] for name, array in tensors.items()}
        try:
            outputs = runtime.predict(batch)
        except Exception as exc:  # ONNX Runtime raises its own types
            raise BuildError(
                f"the model failed on rows {start}-{start + chunk - 1}: {exc}"
            ) from None
        for name, array in outputs.items():
            parts.setdefault(name, []).append(array)
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def _target(outputs: Sequence[Reference]) -> Target | None:
    for ref in outputs:
        if ref.kind == "categorical" and ref.selector.index is None:
            return Target(ref.selector.tensor, "classification")
    for ref in outputs:
        if ref.kind == "numeric" and ref.selector.index is None:
            return Target(ref.selector.tensor, "regression")
    return None


def build_profile(model: str, data: Path, options: ProfileOptions) -> Profile:
    """Everything ``serinus profile`` writes."""
    runtime = _load(model)
    try:
        tensors, names = to_tensors(runtime.inputs, read_table(data), features=options.features)
    except DataError as exc:
        raise BuildError(str(exc)) from None
    tensors = _sample(tensors, max_rows=options.max_rows, seed=options.seed)
    rows = next(iter(tensors.values())).shape[0]
    try:
        features = input_columns(
            runtime.inputs,
            widths={n: a.shape[1] for n, a in tensors.items() if a.ndim == 2},
            names=names,
            categorical=options.categorical,
        )
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    outputs = _predict(runtime, tensors)
    rows = next(iter(outputs.values())).shape[0] if outputs else rows
    tensors = {name: array[:rows] for name, array in tensors.items()}
    out_columns = output_columns(
        runtime.outputs, widths={n: a.shape[1] for n, a in outputs.items() if a.ndim == 2}
    )
    feature_refs = tuple(
        reference(c, c.selector.extract(tensors[c.selector.tensor], rows), options)
        for c in features
    )
    output_refs = tuple(
        reference(c, c.selector.extract(outputs[c.selector.tensor], rows), options)
        for c in out_columns
        if c.selector.tensor in outputs
    )
    return Profile(
        model_sha256=runtime.sha256,
        features=feature_refs,
        outputs=output_refs,
        target=_target(output_refs),
        rows=rows,
        source=data.name,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model_inputs=tuple(s.as_metadata() for s in runtime.inputs),
        model_outputs=tuple(s.as_metadata() for s in runtime.outputs),
    )

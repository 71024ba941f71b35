"""Training data for ``serinus profile``: CSV, Parquet, ``.npy`` and ``.npz`` into the
model's input tensors.

How a file maps onto the inputs (docs/drift.md):

- CSV and Parquet have named columns. A model whose only input is 2-D ``[N, F]`` takes
  ``F`` of them, in order: those named by ``--features``, else all of them. Otherwise every
  input ``[N]`` or ``[N, 1]`` takes the column named after it, and an input ``[N, C]`` the
  columns ``name[0]`` … ``name[C-1]``.
- ``.npy`` holds one array. For a single-input model it is that input (any rank); for several
  inputs, a 2-D array whose columns are split over the inputs in their order.
- ``.npz`` holds one array per input, by input name (needed for several inputs of rank 3+).

Parquet needs pyarrow (``pip install 'serinus[parquet]'``).
"""

from __future__ import annotations

import csv
import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serinus_serving.datatypes import NUMPY_BY_DATATYPE
from serinus_serving.runtime.base import Array, TensorSpec

_MISSING_TEXT = frozenset({"", "na", "nan", "null", "none"})


class DataError(ValueError):
    """Training data that cannot be read or does not fit the model."""


def read_table(path: Path) -> dict[str, Array] | Array:
    """Named 1-D columns (CSV, Parquet, ``.npz``) or one array (``.npy``)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable numpy file: {exc}") from None
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    raise DataError(f"{path}: unknown data format {suffix!r}; use .csv, .parquet, .npy or .npz")


def _read_csv(path: Path) -> dict[str, Array]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV; the first line must name the columns")
        if len(set(header)) != len(header):
            raise DataError(f"{path}: the header names a column twice")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    columns = list(zip(*rows, strict=True))
    return {
        name: np.array(values, dtype=object) for name, values in zip(header, columns, strict=True)
    }


def _read_parquet(path: Path) -> dict[str, Array]:
    try:
        parquet: Any = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow, which is not installed: "
            "pip install 'serinus[parquet]' (or convert the data to CSV, .npy or .npz)"
        ) from None
    try:
        table = parquet.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"{path}: cannot read Parquet: {exc}") from None
    return {
        name: np.asarray(table.column(name).to_numpy(zero_copy_only=False))
        for name in table.column_names
    }


# ---------------------------------------------------------------------------- to tensors
def to_tensors(
    specs: Sequence[TensorSpec], table: dict[str, Array] | Array, *, features: Sequence[str] | None
) -> tuple[dict[str, Array], list[str] | None]:
    """The model's inputs from the data, and the feature names of a single 2-D input."""
    single_2d = len(specs) == 1 and len(specs[0].shape) == 2
    if features and not single_2d:
        raise DataError(
            "--features applies to a model whose only input is 2-D [N, F]; this model's "
            "features are named after its inputs: "
            + ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
        )
    if isinstance(table, np.ndarray):
        return _from_array(specs, table, features=features)
    if single_2d:
        spec = specs[0]
        if spec.name in table and features is None and table[spec.name].ndim == 2:
            return {spec.name: _cast(spec, table[spec.name], spec.name)}, None  # .npz
        names = list(features) if features else list(table)
        _check_width(spec, len(names), "selected columns" if features else "columns")
        missing = [n for n in names if n not in table]
        if missing:
            raise DataError(f"no column(s) {missing} in the data (it has: {', '.join(table)})")
        columns = [_cast(spec, table[n], n) for n in names]
        return {spec.name: np.stack(columns, axis=1)}, names
    tensors: dict[str, Array] = {}
    for spec in specs:
        if spec.name in table and table[spec.name].ndim == len(spec.shape) > 1:
            tensors[spec.name] = _cast(spec, table[spec.name], spec.name)  # .npz, whole tensor
            continue
        tensors[spec.name] = _named_input(spec, table)
    return tensors, None


def _named_input(spec: TensorSpec, table: dict[str, Array]) -> Array:
    rank = len(spec.shape)
    if rank >= 3:
        raise DataError(
            f"input {spec.name!r} has rank {rank}: give it as an array in a .npz keyed by "
            "input name (or a .npy for a single-input model)"
        )
    width = 1 if rank == 1 else spec.shape[1]
    if rank == 1 or width == 1:
        if spec.name not in table:
            raise DataError(
                f"the data has no column {spec.name!r} for input {spec.name!r} "
                f"(it has: {', '.join(table)})"
            )
        column = _cast(spec, table[spec.name], spec.name)
        return column if rank == 1 else column.reshape(-1, 1)
    if width < 0:
        width = sum(1 for n in table if n.startswith(f"{spec.name}["))
    names = [f"{spec.name}[{j}]" for j in range(width)]
    missing = [n for n in names if n not in table]
    if not names or missing:
        raise DataError(
            f"input {spec.name!r} {list(spec.shape)} needs columns {names or spec.name + '[0]…'}"
        )
    return np.stack([_cast(spec, table[n], n) for n in names], axis=1)


def _from_array(
    specs: Sequence[TensorSpec], array: Array, *, features: Sequence[str] | None
) -> tuple[dict[str, Array], list[str] | None]:
    if array.ndim == 0:
        raise DataError("the .npy array is a scalar; it needs one row per sample")
    if len(specs) == 1:
        spec = specs[0]
        if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] in (1, -1):
            array = array.reshape(-1, 1)
        if array.ndim != len(spec.shape):
            raise DataError(
                f"the .npy array has shape {list(array.shape)}; input {spec.name!r} takes "
                f"{list(spec.shape)}"
            )
        if array.ndim == 2:
            _check_width(spec, array.shape[1], ".npy columns")
            if features and len(features) != array.shape[1]:
                raise DataError(f"{len(features)} --features names for {array.shape[1]} columns")
        return {spec.name: _cast(spec, array, spec.name)}, list(features) if features else None
    if array.ndim != 2:
        raise DataError(
            f"for a model with several inputs the .npy array must be 2-D [N, columns], "
            f"not {list(array.shape)}; or use a .npz keyed by input name"
        )
    tensors: dict[str, Array] = {}
    start = 0
    for spec in specs:
        rank = len(spec.shape)
        if rank >= 3 or (rank == 2 and spec.shape[1] < 0):
            raise DataError(
                f"input {spec.name!r} {list(spec.shape)} cannot be cut from a 2-D .npy; "
                "use a .npz keyed by input name"
            )
        width = 1 if rank == 1 else spec.shape[1]
        block = array[:, start : start + width]
        start += width
        if block.shape[1] != width:
            break
        tensors[spec.name] = _cast(spec, block.reshape(-1) if rank == 1 else block, spec.name)
    if start != array.shape[1] or len(tensors) != len(specs):
        raise DataError(
            f"the .npy array has {array.shape[1]} columns; the inputs take {start} in order: "
            + ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
        )
    return tensors, None


def _check_width(spec: TensorSpec, width: int, what: str) -> None:
    if spec.shape[1] >= 0 and width != spec.shape[1]:
        raise DataError(
            f"input {spec.name!r} takes {spec.shape[1]} columns, the data has {width} {what}; "
            "name the ones to use with --features"
        )


def _cast(spec: TensorSpec, values: Array, name: str) -> Array:
    """Column or tensor values as the input's dtype; CSV text is parsed here."""
    if spec.datatype == "BYTES":
        return np.asarray([_text(v) for v in values.ravel().tolist()], dtype=object).reshape(
            values.shape
        )
    dtype = NUMPY_BY_DATATYPE[spec.datatype]
    if values.dtype == object:
        values = _parse_numbers(values, name, integral=dtype.kind in "iub")
    if dtype.kind in "iub" and values.dtype.kind == "f":
        if np.isnan(values).any():
            raise DataError(
                f"column {name!r} has missing values; input {spec.name!r} is {spec.datatype}"
            )
        if np.any(np.asarray(values, dtype=np.float64) % 1 != 0):
            raise DataError(
                f"column {name!r} has fractions; input {spec.name!r} is {spec.datatype}"
            )
    try:
        return values.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {name!r} does not convert to {spec.datatype}: {exc}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_numbers(values: Array, name: str, *, integral: bool) -> Array:
    out = np.empty(values.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, value in enumerate(values.ravel().tolist()):
        if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING_TEXT):
            flat[i] = math.nan
            continue
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            flat[i] = 1.0 if value.strip().lower() == "true" else 0.0
            continue
        try:
            flat[i] = float(value)
        except (TypeError, ValueError):
            kind = "an integer" if integral else "a number"
            raise DataError(f"column {name!r}: {value!r} is not {kind}") from None
    return out

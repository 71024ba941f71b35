"""Which columns a model's tensors give, and how to read one column out of a tensor.

The same rule serves ``serinus profile`` (on training data) and ``serinus serve`` (on live
requests), so that a profile's columns are exactly those the server extracts:

- a tensor ``[N]`` or ``[N, 1]`` is one column, named after the tensor;
- a tensor ``[N, C]`` is ``C`` columns, ``name[0]`` … ``name[C-1]`` (a model whose only
  input is 2-D may name them: ``--features`` or the CSV header);
- a tensor of rank 3 or more (an image, a sequence) is one numeric column, its per-row mean
  (``name:mean``): a brightness or scale change shows there.

Strings and booleans are categorical; numbers are numeric unless named categorical.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from serinus_serving.runtime.base import Array, TensorSpec

Kind = Literal["numeric", "categorical"]
KINDS: tuple[Kind, ...] = ("numeric", "categorical")
#: A float output with more columns than this (an embedding, say) is not profiled.
MAX_OUTPUT_COLUMNS = 32
_CATEGORICAL_TYPES = frozenset({"BYTES", "BOOL"})


class ColumnError(ValueError):
    """A tensor or a column that the drift rules cannot handle."""


@dataclass(frozen=True, slots=True)
class Selector:
    """Where a column's values come from: a tensor, optionally one of its columns or the
    mean over everything but its batch axis."""

    tensor: str
    index: int | None = None
    reduce: Literal["mean"] | None = None

    def extract(self, array: Array, rows: int) -> Array:
        """One value per row, as a 1-D array of ``rows`` values."""
        if self.reduce == "mean":
            means: Array = np.asarray(array, dtype=np.float64).reshape(rows, -1).mean(axis=1)
            return means
        if self.index is not None:
            return array.reshape(rows, -1)[:, self.index]
        return array.reshape(rows)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    selector: Selector
    kind: Kind


def is_categorical_type(datatype: str) -> bool:
    return datatype in _CATEGORICAL_TYPES


def _width(spec: TensorSpec, widths: dict[str, int]) -> int:
    if spec.shape[1] >= 0:
        return spec.shape[1]
    if spec.name not in widths:
        raise ColumnError(f"{spec.name!r} has a dynamic second dimension and no data to size it")
    return widths[spec.name]


def input_columns(
    specs: Sequence[TensorSpec],
    *,
    widths: dict[str, int] | None = None,
    names: Sequence[str] | None = None,
    categorical: Collection[str] = (),
) -> list[Column]:
    """The feature columns of a model's inputs. ``widths`` sizes dynamic second dimensions;
    ``names`` names the columns of a model whose only input is 2-D."""
    widths = widths or {}
    columns: list[Column] = []
    for spec in specs:
        rank = len(spec.shape)
        if rank == 0:
            raise ColumnError(f"input {spec.name!r} is a scalar; drift needs a batch axis")
        if rank >= 3:
            if is_categorical_type(spec.datatype):
                raise ColumnError(f"input {spec.name!r}: a {spec.datatype} tensor of rank {rank}")
            columns.append(
                Column(f"{spec.name}:mean", Selector(spec.name, reduce="mean"), "numeric")
            )
            continue
        width = 1 if rank == 1 else _width(spec, widths)
        if rank == 1 or (width == 1 and not names):
            columns.append(_column(spec, spec.name, Selector(spec.name), categorical))
            continue
        own = list(names) if names and len(specs) == 1 else None
        if own is not None and len(own) != width:
            raise ColumnError(
                f"input {spec.name!r} has {width} columns but {len(own)} feature names were given"
            )
        for j in range(width):
            name = own[j] if own is not None else f"{spec.name}[{j}]"
            columns.append(_column(spec, name, Selector(spec.name, index=j), categorical))
    if names and not (len(specs) == 1 and len(specs[0].shape) == 2):
        raise ColumnError(
            "feature names apply to a model whose only input is 2-D [N, F]; this model's "
            "columns are named after its inputs"
        )
    _check_unique(columns)
    unknown = set(categorical) - {c.name for c in columns}
    if unknown:
        raise ColumnError(
            f"categorical column(s) {sorted(unknown)} are not features of this model "
            f"(features: {', '.join(c.name for c in columns)})"
        )
    return columns


def output_columns(specs: Sequence[TensorSpec], *, widths: dict[str, int]) -> list[Column]:
    """The prediction columns: labels are categorical, scores numeric; wide float outputs
    (over ``MAX_OUTPUT_COLUMNS``) and tensors of rank 3 or more are left out."""
    columns: list[Column] = []
    for spec in specs:
        rank = len(spec.shape)
        width = 1 if rank == 1 else widths.get(spec.name, spec.shape[1] if rank == 2 else -1)
        if rank not in (1, 2) or width < 1:
            continue
        kind: Kind = "categorical" if _is_label_type(spec.datatype) else "numeric"
        if width == 1:
            columns.append(Column(spec.name, Selector(spec.name), kind))
        elif kind == "numeric" and width <= MAX_OUTPUT_COLUMNS:
            columns.extend(
                Column(f"{spec.name}[{j}]", Selector(spec.name, index=j), "numeric")
                for j in range(width)
            )
    return columns


def _is_label_type(datatype: str) -> bool:
    return is_categorical_type(datatype) or datatype.startswith(("INT", "UINT"))


def _column(
    spec: TensorSpec, name: str, selector: Selector, categorical: Collection[str]
) -> Column:
    kind: Kind = (
        "categorical" if is_categorical_type(spec.datatype) or name in categorical else "numeric"
    )
    return Column(name, selector, kind)


def _check_unique(columns: Sequence[Column]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column.name in seen:
            raise ColumnError(f"two columns are named {column.name!r}")
        seen.add(column.name)

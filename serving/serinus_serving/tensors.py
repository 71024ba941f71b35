"""Decode one tensor of a request: its shape against the model's, its values from JSON
``data`` or from raw little-endian bytes (the binary tensor extension).

This is the request path, so it avoids pydantic and per-element Python loops: numpy parses
the JSON lists. Every malformed tensor raises :class:`InferenceError` with a message that
names the input and what was expected.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np
import orjson

from serinus_serving.datatypes import ACCEPTED_KINDS, NUMPY_BY_DATATYPE
from serinus_serving.errors import InferenceError
from serinus_serving.runtime.base import Array, TensorSpec

_INT_INFO = {
    dt: np.iinfo(NUMPY_BY_DATATYPE[dt].name)
    for dt in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
}


def describe(specs: Mapping[str, TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in specs.values())


def load_json(body: bytes) -> Any:
    if not body:
        raise InferenceError("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferenceError(f"request body is not valid JSON: {exc}") from None


#: The most elements a shape may describe, counting a zero dimension as 1: no request body
#: carries that many, and numpy refuses to shape even an empty array much past it (an
#: array of shape [0, 2**62] cannot exist).
MAX_EXTENT = 1 << 48


def parse_shape(name: str, raw: Any) -> tuple[int, ...]:
    if type(raw) is list:
        extent = 1
        for dim in raw:  # bool is an int subclass; the exact type check keeps it out
            if type(dim) is not int or dim < 0:
                break
            extent *= dim or 1
        else:
            if extent > MAX_EXTENT:
                raise InferenceError(
                    f"input {name!r}: shape {raw} is too large: its non-zero dimensions "
                    f"multiply to more than 2**48"
                )
            return tuple(raw)
    raise InferenceError(f"input {name!r}: 'shape' must be a list of non-negative integers")


def nested_shape(data: list[Any]) -> tuple[int, ...] | None:
    """The shape numpy would find for nested lists, without building an array (numpy
    would make strings fixed-width: one long string among many short ones costs
    gigabytes); None when they are ragged or mix lists and values at one level."""
    shape = [len(data)]
    level = data
    while level:
        kinds = set(map(type, level))
        if list not in kinds:
            break
        if kinds != {list}:
            return None
        lengths = set(map(len, level))
        if len(lengths) != 1:
            return None
        shape.append(lengths.pop())
        level = list(chain.from_iterable(level))
    return tuple(shape)


def check_shape(spec: TensorSpec, shape: tuple[int, ...], *, max_rows: int) -> int:
    """Validate ``shape`` against the model's input; return the batch size (rows)."""
    if len(shape) != len(spec.shape):
        raise InferenceError(
            f"input {spec.name!r}: shape {list(shape)} has rank {len(shape)}, "
            f"the model expects rank {len(spec.shape)} ({list(spec.shape)})"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise InferenceError(
                f"input {spec.name!r}: dimension {axis} is {got}, the model expects {want} "
                f"(model shape {list(spec.shape)}, -1 is any)"
            )
    rows = shape[0] if shape else 1
    if shape and spec.shape[0] < 0 and rows > max_rows:
        raise InferenceError(
            f"input {spec.name!r}: batch of {rows} rows is over the limit of {max_rows}"
        )
    return rows


def from_json_data(spec: TensorSpec, shape: tuple[int, ...], data: Any) -> Array:
    """The tensor of a JSON ``data`` array, its memory bounded by what was sent.

    The Python types of the values are checked before numpy sees them, and strings never
    reach numpy's own conversion: it would make a fixed-width string array with every
    element as wide as the longest (one long string among many short elements cost
    gigabytes from a body of kilobytes) and strip trailing NULs from BYTES values.
    """
    if not isinstance(data, list):
        raise InferenceError(f"input {spec.name!r}: 'data' must be a JSON array")
    kinds = _leaf_types(data)
    if spec.datatype == "BYTES" or str in kinds:
        return _strings(spec, shape, data, kinds)
    try:
        array = np.asarray(data)  # numbers, booleans, nulls: at most 8 bytes each
    except (ValueError, OverflowError):
        raise _ragged(spec) from None
    if list in kinds:
        raise _ragged(spec)
    _check_size(spec, shape, array.size)
    datatype = spec.datatype
    info = _INT_INFO.get(datatype)
    if info is not None and array.dtype.kind in "fO" and array.size:
        # numpy turns [2**63, 0] into floats; integers that only fit uint64 take this path.
        array = _exact_integers(spec, data)
    if array.size and array.dtype.kind not in ACCEPTED_KINDS[datatype]:
        raise InferenceError(
            f"input {spec.name!r}: 'data' holds {_kind_name(array.dtype.kind)} values, "
            f"which are not valid for datatype {datatype}"
        )
    target = NUMPY_BY_DATATYPE[datatype]
    if (
        info is not None
        and array.size
        and array.dtype != target
        and (array.min() < info.min or array.max() > info.max)
    ):
        raise InferenceError(f"input {spec.name!r}: a value is out of range for {datatype}")
    with np.errstate(over="ignore"):  # an overflow is refused just below
        narrowed = array.astype(target, copy=False)
    # JSON has no infinities (the parser refuses them), so one here is a value past the
    # datatype's range (1e39 as FP32), refused as out-of-range integers are.
    narrowing = narrowed is not array and target.kind == "f" and array.dtype.kind == "f"
    if narrowing and np.isinf(narrowed).any():
        raise InferenceError(f"input {spec.name!r}: a value is out of range for {datatype}")
    return narrowed if narrowed.shape == shape else narrowed.reshape(shape)


def _leaf_types(data: list[Any]) -> set[type]:
    """The types of the innermost values of nested lists (``list`` among them when lists
    and values are mixed at one level): one pass, in C, per level of nesting."""
    level, kinds = data, set(map(type, data))
    while kinds == {list}:
        kinds = set(map(type, chain.from_iterable(level)))
        if kinds == {list}:  # deeper still: only then is the level itself needed
            level = list(chain.from_iterable(level))
    return kinds


def _ragged(spec: TensorSpec) -> InferenceError:
    return InferenceError(
        f"input {spec.name!r}: 'data' is ragged or holds mixed types; "
        "send a flat row-major array or one nested to match 'shape'"
    )


def _check_size(spec: TensorSpec, shape: tuple[int, ...], size: int) -> None:
    expected = math.prod(shape)
    if size != expected:
        raise InferenceError(
            f"input {spec.name!r}: shape {list(shape)} needs {expected} elements, 'data' has {size}"
        )


def _strings(spec: TensorSpec, shape: tuple[int, ...], data: list[Any], kinds: set[type]) -> Array:
    """BYTES ``data``: strings, kept as they are (an object array of str, NULs and all)."""
    if spec.datatype != "BYTES":
        raise InferenceError(
            f"input {spec.name!r}: 'data' holds string values, which are not valid for "
            f"datatype {spec.datatype}"
        )
    if list in kinds:
        raise _ragged(spec)
    others = kinds - {str}
    if others:
        what = _PYTHON_KINDS.get(next(iter(others)), "null or object")
        raise InferenceError(
            f"input {spec.name!r}: 'data' holds {what} values, which are not valid for "
            "datatype BYTES"
        )
    try:
        objects = np.array(data, dtype=object)
    except ValueError:
        raise _ragged(spec) from None
    if objects.size and type(objects.flat[0]) is not str:
        raise _ragged(spec)  # nested lists of different lengths, kept as lists
    _check_size(spec, shape, objects.size)
    return objects if objects.shape == shape else objects.reshape(shape)


def _exact_integers(spec: TensorSpec, data: list[Any]) -> Array:
    flat = np.array(data, dtype=object).ravel()
    if not all(type(x) is int for x in flat):
        raise InferenceError(
            f"input {spec.name!r}: 'data' holds non-integer values, which are not valid "
            f"for datatype {spec.datatype}"
        )
    try:
        return np.array(flat.tolist(), dtype=NUMPY_BY_DATATYPE[spec.datatype])
    except OverflowError:
        raise InferenceError(
            f"input {spec.name!r}: a value is out of range for {spec.datatype}"
        ) from None


_PYTHON_KINDS: dict[type, str] = {bool: "boolean", int: "integer", float: "floating-point"}


def _kind_name(kind: str) -> str:
    return {
        "b": "boolean",
        "i": "integer",
        "u": "integer",
        "f": "floating-point",
        "U": "string",
        "O": "null, object or out-of-range",
    }.get(kind, kind)


def from_binary(spec: TensorSpec, shape: tuple[int, ...], chunk: bytes) -> Array:
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        items: list[str] = []
        offset = 0
        try:
            while offset < len(chunk):
                (length,) = struct.unpack_from("<I", chunk, offset)
                offset += 4
                if offset + length > len(chunk):
                    raise InferenceError(f"input {spec.name!r}: truncated BYTES element")
                items.append(chunk[offset : offset + length].decode())
                offset += length
        except (struct.error, UnicodeDecodeError) as exc:
            raise InferenceError(f"input {spec.name!r}: malformed BYTES data: {exc}") from None
        if len(items) != count:
            raise InferenceError(
                f"input {spec.name!r}: shape {list(shape)} needs {count} elements, "
                f"binary data has {len(items)}"
            )
        return np.asarray(items, dtype=object).reshape(shape)
    dtype = NUMPY_BY_DATATYPE[spec.datatype].newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise InferenceError(
            f"input {spec.name!r}: shape {list(shape)} of {spec.datatype} needs "
            f"{count * dtype.itemsize} bytes, binary_data_size is {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)

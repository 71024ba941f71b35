"""Decode and encode inference requests: OIP v2 JSON (with the binary tensor extension)
and KServe v1 ``instances``.

This is the request path, so it avoids pydantic and per-element Python loops: numpy parses
the JSON lists, orjson writes numpy arrays directly. Every malformed request raises
:class:`InferenceError` with a message that names the field.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from serinus_serving.datatypes import ACCEPTED_KINDS, DATATYPE_BY_NUMPY, NUMPY_BY_DATATYPE
from serinus_serving.errors import InferenceError
from serinus_serving.runtime.base import Array, TensorSpec

HEADER_LENGTH = "inference-header-content-length"
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
_INT_INFO = {
    dt: np.iinfo(NUMPY_BY_DATATYPE[dt].name)
    for dt in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
}


@dataclass(slots=True)
class InferRequest:
    """A decoded, validated request ready for the runtime."""

    inputs: dict[str, Array]
    rows: int
    id: str | None = None
    outputs: list[str] | None = None
    binary_outputs: frozenset[str] = field(default_factory=frozenset)


def _describe(specs: Mapping[str, TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in specs.values())


def load_json(body: bytes) -> Any:
    if not body:
        raise InferenceError("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferenceError(f"request body is not valid JSON: {exc}") from None


def _shape(name: str, raw: Any) -> tuple[int, ...]:
    if type(raw) is list:
        for dim in raw:  # bool is an int subclass; the exact type check keeps it out
            if type(dim) is not int or dim < 0:
                break
        else:
            return tuple(raw)
    raise InferenceError(f"input {name!r}: 'shape' must be a list of non-negative integers")


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


def _from_json_data(spec: TensorSpec, shape: tuple[int, ...], data: Any) -> Array:
    if not isinstance(data, list):
        raise InferenceError(f"input {spec.name!r}: 'data' must be a JSON array")
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError):
        raise InferenceError(
            f"input {spec.name!r}: 'data' is ragged or holds mixed types; "
            "send a flat row-major array or one nested to match 'shape'"
        ) from None
    expected = math.prod(shape)
    if array.size != expected:
        raise InferenceError(
            f"input {spec.name!r}: shape {list(shape)} needs {expected} elements, "
            f"'data' has {array.size}"
        )
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
    array = array.astype(target, copy=False)
    return array if array.shape == shape else array.reshape(shape)


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


def _kind_name(kind: str) -> str:
    return {
        "b": "boolean",
        "i": "integer",
        "u": "integer",
        "f": "floating-point",
        "U": "string",
        "O": "null, object or out-of-range",
    }.get(kind, kind)


def _from_binary(spec: TensorSpec, shape: tuple[int, ...], chunk: bytes) -> Array:
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


def _requested_outputs(
    raw: Any, known: Sequence[TensorSpec], *, binary_default: bool
) -> tuple[list[str] | None, frozenset[str]]:
    names = {s.name for s in known}
    if raw is None:
        return None, frozenset(names if binary_default else ())
    if not isinstance(raw, list):
        raise InferenceError("'outputs' must be a list of {\"name\": ...} objects")
    selected: list[str] = []
    binary: set[str] = set()
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InferenceError("each entry of 'outputs' must be an object with a string 'name'")
        name = item["name"]
        if name not in names:
            raise InferenceError(
                f"unknown output {name!r}; the model has outputs: {', '.join(sorted(names))}"
            )
        params = item.get("parameters", {})
        if not isinstance(params, dict):
            raise InferenceError(f"output {name!r}: 'parameters' must be an object")
        if params.get("binary_data", binary_default) is True:
            binary.add(name)
        if name not in selected:
            selected.append(name)
    return selected or None, frozenset(binary)


def parse_v2(
    body: bytes,
    specs: Mapping[str, TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_rows: int,
    header_length: int | None = None,
) -> InferRequest:
    """Decode an OIP v2 ``/infer`` body (JSON, or JSON + binary tensors)."""
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InferenceError(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"of {len(body)} bytes"
            )
        body, binary = body[:header_length], body[header_length:]
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InferenceError("request body must be a JSON object with an 'inputs' list")
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InferenceError(
            f"'inputs' must be a non-empty list; the model takes: {_describe(specs)}"
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceError("'id' must be a string")
    params = payload.get("parameters", {})
    if not isinstance(params, dict):
        raise InferenceError("'parameters' must be an object")

    inputs: dict[str, Array] = {}
    rows = -1
    offset = 0
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise InferenceError("each entry of 'inputs' must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise InferenceError("each input needs a string 'name'")
        spec = specs.get(name)
        if spec is None:
            raise InferenceError(f"unknown input {name!r}; the model takes: {_describe(specs)}")
        if name in inputs:
            raise InferenceError(f"input {name!r} is given more than once")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            raise InferenceError(
                f"input {name!r}: datatype {datatype!r} does not match the model's {spec.datatype}"
            )
        shape = _shape(name, item.get("shape"))
        this_rows = check_shape(spec, shape, max_rows=max_rows)
        if rows not in (-1, this_rows):
            raise InferenceError(
                f"input {name!r}: batch of {this_rows} rows differs from the other inputs' {rows}"
            )
        rows = this_rows
        item_params = item.get("parameters", {})
        if not isinstance(item_params, dict):
            raise InferenceError(f"input {name!r}: 'parameters' must be an object")
        size = item_params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InferenceError(
                    f"input {name!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} binary bytes left in the body"
                )
            inputs[name] = _from_binary(spec, shape, binary[offset : offset + size])
            offset += size
        else:
            inputs[name] = _from_json_data(spec, shape, item.get("data"))
    if offset != len(binary):
        raise InferenceError(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    missing = [n for n in specs if n not in inputs]
    if missing:
        raise InferenceError(
            f"missing input(s) {', '.join(map(repr, missing))}; the model takes: {_describe(specs)}"
        )
    binary_default = params.get("binary_data_output") is True
    selected, binary_outputs = _requested_outputs(
        payload.get("outputs"), outputs, binary_default=binary_default
    )
    return InferRequest(
        inputs=inputs, rows=rows, id=request_id, outputs=selected, binary_outputs=binary_outputs
    )


def _datatype_of(array: Array) -> str:
    known = DATATYPE_BY_NUMPY.get(array.dtype)
    if known is not None:
        return known
    if array.dtype.kind in "OUS":
        return "BYTES"
    return DATATYPE_BY_NUMPY.get(array.dtype.newbyteorder("="), "BYTES")


def _bytes_payload(array: Array) -> bytes:
    parts = []
    for item in array.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def render_v2(
    outputs: Mapping[str, Array],
    *,
    model_name: str,
    model_version: str,
    request_id: str | None = None,
    binary_outputs: frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """Encode an OIP v2 response; returns the body and, when binary, the JSON header length."""
    rendered: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        datatype = _datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary_outputs:
            raw = (
                _bytes_payload(array)
                if datatype == "BYTES"
                else np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif datatype == "BYTES":
            entry["data"] = [str(x) for x in array.ravel().tolist()]
        else:
            entry["data"] = array.ravel()  # C-contiguous, as orjson needs
        rendered.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = rendered
    header = orjson.dumps(response, option=_JSON_OPTS)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def parse_v1(
    body: bytes, specs: Mapping[str, TensorSpec], *, max_rows: int
) -> tuple[dict[str, Array], int]:
    """Decode a KServe v1 ``{"instances": [...]}`` body into model inputs."""
    payload = load_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InferenceError("request body must be a JSON object with an 'instances' list")
    instances: list[Any] = payload["instances"]
    if not instances:
        raise InferenceError("'instances' is empty")
    if len(specs) == 1:
        (spec,) = specs.values()
        columns = {spec.name: instances}
    else:
        if not all(isinstance(row, dict) for row in instances):
            raise InferenceError(
                f"this model takes several inputs ({_describe(specs)}); each instance must "
                "be an object keyed by input name"
            )
        columns = {}
        for name in specs:
            try:
                columns[name] = [row[name] for row in instances]
            except KeyError:
                raise InferenceError(f"an instance is missing input {name!r}") from None
        extra = {k for row in instances for k in row} - set(specs)
        if extra:
            raise InferenceError(
                f"unknown input(s) {sorted(extra)}; the model takes: {_describe(specs)}"
            )
    inputs: dict[str, Array] = {}
    for name, column in columns.items():
        spec = specs[name]
        try:
            shape = np.shape(column)
        except ValueError:
            shape = ()
        if len(shape) != len(spec.shape):
            raise InferenceError(
                f"input {name!r}: instances have shape {list(shape)}, the model expects "
                f"{list(spec.shape)} with the batch first (is the data ragged?)"
            )
        check_shape(spec, tuple(shape), max_rows=max_rows)
        inputs[name] = _from_json_data(spec, tuple(shape), column)
    return inputs, len(instances)


def render_v1(outputs: Mapping[str, Array]) -> bytes:
    """``{"predictions": [...]}``: one value per instance, an object per instance when the
    model has several outputs."""
    if len(outputs) == 1:
        (array,) = outputs.values()
        return orjson.dumps({"predictions": _jsonable(array)}, option=_JSON_OPTS)
    names = list(outputs)
    columns = [_jsonable(outputs[n]) for n in names]
    lists = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=False)]
    return orjson.dumps({"predictions": rows})


def _jsonable(array: Array) -> Any:
    if array.dtype.kind in "OUS":
        return array.astype(str).tolist()
    return np.ascontiguousarray(array)

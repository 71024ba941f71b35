"""Decode and encode OIP v2 inference requests (JSON, with the binary tensor extension).

This is the request path, so it avoids pydantic and per-element Python loops: numpy parses
the JSON lists (serinus_serving.tensors), orjson writes numpy arrays directly. Every
malformed request raises :class:`InferenceError` with a message that names the field.
KServe v1 ``instances`` are in codec_v1.py.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from serinus_serving.datatypes import DATATYPE_BY_NUMPY
from serinus_serving.errors import InferenceError
from serinus_serving.runtime.base import Array, TensorSpec
from serinus_serving.tensors import (
    check_shape,
    describe,
    from_binary,
    from_json_data,
    load_json,
    parse_shape,
)

HEADER_LENGTH = "inference-header-content-length"
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class InferRequest:
    """A decoded, validated request ready for the runtime."""

    inputs: dict[str, Array]
    rows: int
    id: str | None = None
    outputs: list[str] | None = None
    binary_outputs: frozenset[str] = field(default_factory=frozenset)


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
    body, binary = _split_binary(body, header_length)
    return decode_v2(load_json(body), binary, specs=specs, outputs=outputs, max_rows=max_rows)


def decode_v2(
    payload: Any,
    binary: bytes,
    *,
    specs: Mapping[str, TensorSpec],
    outputs: Sequence[TensorSpec],
    max_rows: int,
) -> InferRequest:
    """Decode the parsed JSON of an OIP v2 ``/infer`` body and its ``binary`` tensors."""
    raw_inputs, request_id, params = _v2_envelope(payload, specs)
    inputs, rows = _v2_inputs(raw_inputs, specs, binary, max_rows=max_rows)
    binary_default = params.get("binary_data_output") is True
    selected, binary_outputs = _requested_outputs(
        payload.get("outputs"), outputs, binary_default=binary_default
    )
    return InferRequest(
        inputs=inputs, rows=rows, id=request_id, outputs=selected, binary_outputs=binary_outputs
    )


def _split_binary(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensors after it (the binary tensor extension)."""
    if header_length is None:
        return body, b""
    if header_length < 0 or header_length > len(body):
        raise InferenceError(
            f"Inference-Header-Content-Length {header_length} is outside the body "
            f"of {len(body)} bytes"
        )
    return body[:header_length], body[header_length:]


def _v2_envelope(
    payload: Any, specs: Mapping[str, TensorSpec]
) -> tuple[list[Any], str | None, dict[str, Any]]:
    """The request's ``inputs`` list, ``id`` and ``parameters``, checked for their types."""
    if not isinstance(payload, dict):
        raise InferenceError("request body must be a JSON object with an 'inputs' list")
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InferenceError(
            f"'inputs' must be a non-empty list; the model takes: {describe(specs)}"
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceError("'id' must be a string")
    params = payload.get("parameters", {})
    if not isinstance(params, dict):
        raise InferenceError("'parameters' must be an object")
    return raw_inputs, request_id, params


def _v2_inputs(
    raw_inputs: list[Any], specs: Mapping[str, TensorSpec], binary: bytes, *, max_rows: int
) -> tuple[dict[str, Array], int]:
    """Every model input exactly once, from JSON ``data`` or its slice of ``binary``; and
    the batch size they share."""
    inputs: dict[str, Array] = {}
    rows = -1
    offset = 0
    for item in raw_inputs:
        name, spec, shape = _v2_tensor(item, specs, inputs)
        this_rows = check_shape(spec, shape, max_rows=max_rows)
        if rows not in (-1, this_rows):
            raise InferenceError(
                f"input {name!r}: batch of {this_rows} rows differs from the other inputs' {rows}"
            )
        rows = this_rows
        size = _binary_data_size(item, name)
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InferenceError(
                    f"input {name!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} binary bytes left in the body"
                )
            inputs[name] = from_binary(spec, shape, binary[offset : offset + size])
            offset += size
        else:
            inputs[name] = from_json_data(spec, shape, item.get("data"))
    if offset != len(binary):
        raise InferenceError(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    missing = [n for n in specs if n not in inputs]
    if missing:
        raise InferenceError(
            f"missing input(s) {', '.join(map(repr, missing))}; the model takes: {describe(specs)}"
        )
    return inputs, rows


def _v2_tensor(
    item: Any, specs: Mapping[str, TensorSpec], seen: Mapping[str, Array]
) -> tuple[str, TensorSpec, tuple[int, ...]]:
    """One entry of ``inputs``: its name, the model's spec of it and its shape."""
    if not isinstance(item, dict):
        raise InferenceError("each entry of 'inputs' must be an object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InferenceError("each input needs a string 'name'")
    spec = specs.get(name)
    if spec is None:
        raise InferenceError(f"unknown input {name!r}; the model takes: {describe(specs)}")
    if name in seen:
        raise InferenceError(f"input {name!r} is given more than once")
    datatype = item.get("datatype")
    if datatype != spec.datatype:
        raise InferenceError(
            f"input {name!r}: datatype {datatype!r} does not match the model's {spec.datatype}"
        )
    return name, spec, parse_shape(name, item.get("shape"))


def _binary_data_size(item: dict[str, Any], name: str) -> Any:
    """The entry's ``parameters.binary_data_size`` (None when its data is JSON), unchecked."""
    item_params = item.get("parameters", {})
    if not isinstance(item_params, dict):
        raise InferenceError(f"input {name!r}: 'parameters' must be an object")
    return item_params.get("binary_data_size")


def datatype_of(array: Array) -> str:
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
        datatype = datatype_of(array)
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

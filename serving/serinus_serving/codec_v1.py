"""Decode and encode KServe v1 requests: ``{"instances": [...]}`` in,
``{"predictions": [...]}`` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from serinus_serving.errors import InferenceError
from serinus_serving.runtime.base import Array, TensorSpec
from serinus_serving.tensors import (
    check_shape,
    describe,
    from_json_data,
    load_json,
    nested_shape,
)

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


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
                f"this model takes several inputs ({describe(specs)}); each instance must "
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
                f"unknown input(s) {sorted(extra)}; the model takes: {describe(specs)}"
            )
    inputs: dict[str, Array] = {}
    for name, column in columns.items():
        spec = specs[name]
        shape = nested_shape(column) or ()
        if len(shape) != len(spec.shape):
            raise InferenceError(
                f"input {name!r}: instances have shape {list(shape)}, the model expects "
                f"{list(spec.shape)} with the batch first (is the data ragged?)"
            )
        check_shape(spec, shape, max_rows=max_rows)
        inputs[name] = from_json_data(spec, shape, column)
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

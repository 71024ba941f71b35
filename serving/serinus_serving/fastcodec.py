"""A direct decoder for the common OIP v2 request: one tensor of numbers as JSON ``data``.

For a model with one numeric or boolean input, a request that gives just that input
(name, datatype, shape and a flat, or evenly nested, list of numbers; an optional string
``id``; no ``parameters`` or ``outputs``) goes from the parsed JSON to the model's dtype in
one validation, skipping the generic machinery of codec.parse_v2. Anything else, including
every malformed request, makes :meth:`FastV2Decoder.decode` return None and the generic
decoder then decodes it or refuses it with its own message. What this accepts, the generic
decoder accepts with an identical array (tests/unit/serving/test_fastcodec.py and the
codec_decode fuzz target compare the two).

Memory stays proportional to the body: anything but numbers is refused (``math.hypot``
for floats, a set of the values' types otherwise) before numpy sees the values, so a string
never reaches numpy's fixed-width conversion.

The response side is :class:`V2Renderer`: ``render_v2``'s bytes, its envelope built once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np
import orjson

from serinus_serving.codec import InferRequest, datatype_of, render_v2
from serinus_serving.datatypes import NUMPY_BY_DATATYPE
from serinus_serving.runtime.base import Array, TensorSpec

_INT = frozenset({int})
_BOOL = frozenset({bool})
_LIST = {list}
_NO_OUTPUTS: frozenset[str] = frozenset()

#: Float datatypes and the largest magnitude taken here. A larger value goes to the generic
#: decoder, which refuses it or, if it rounds to the largest finite value, accepts it.
_FLOAT_LIMITS = {
    "FP16": 65504.0,
    "FP32": float(np.finfo(np.float32).max),
    "FP64": math.inf,
}
#: Integer and boolean datatypes: the Python types their values may have, and their range.
_EXACT_RULES: dict[str, tuple[frozenset[type], int, int]] = {
    "BOOL": (_BOOL, 0, 1),
    **{
        dt: (
            _INT,
            int(np.iinfo(NUMPY_BY_DATATYPE[dt].name).min),
            int(np.iinfo(NUMPY_BY_DATATYPE[dt].name).max),
        )
        for dt in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
    },
}


class FastV2Decoder:
    """The direct decoder for one model input (see the module's docstring)."""

    __slots__ = ("_dtype", "_float_limit", "_kinds", "_range", "dims", "max_rows", "spec")

    def __init__(self, spec: TensorSpec, *, max_rows: int) -> None:
        self.spec = spec
        self.dims = spec.shape
        self.max_rows = max_rows if spec.shape[0] < 0 else None
        self._dtype = NUMPY_BY_DATATYPE[spec.datatype]
        self._float_limit = _FLOAT_LIMITS.get(spec.datatype)
        kinds, lo, hi = _EXACT_RULES.get(spec.datatype, (_INT, 0, 0))
        self._kinds, self._range = kinds, (lo, hi)

    @classmethod
    def for_model(cls, specs: Mapping[str, TensorSpec], *, max_rows: int) -> FastV2Decoder | None:
        """The decoder for a model with one input of a datatype it handles, else None."""
        if len(specs) != 1:
            return None
        spec = next(iter(specs.values()))
        known = spec.datatype in _FLOAT_LIMITS or spec.datatype in _EXACT_RULES
        if not known or not spec.shape:
            return None
        return cls(spec, max_rows=max_rows)

    def decode(self, payload: Any) -> InferRequest | None:
        """The request decoded, or None to leave ``payload`` to the generic decoder."""
        if type(payload) is not dict or "parameters" in payload or "outputs" in payload:
            return None
        inputs = payload.get("inputs")
        request_id = payload.get("id")
        if type(inputs) is not list or len(inputs) != 1:
            return None
        if request_id is not None and type(request_id) is not str:
            return None
        item = inputs[0]
        spec = self.spec
        if (
            type(item) is not dict
            or "parameters" in item
            or item.get("name") != spec.name
            or item.get("datatype") != spec.datatype
        ):
            return None
        shape: Any = item.get("shape")
        size = self._size(shape)
        if size is None:
            return None
        array = self._values(item.get("data"), size)
        if array is None:
            return None
        return InferRequest(
            {spec.name: array.reshape(shape)}, shape[0], request_id, None, _NO_OUTPUTS
        )

    def _size(self, shape: Any) -> int | None:
        """The elements ``shape`` holds when it fits the model's input and is non-empty."""
        dims = self.dims
        if type(shape) is not list or len(shape) != len(dims):
            return None
        size = 1
        for axis, got in enumerate(shape):
            want = dims[axis]
            if type(got) is not int or got <= 0 or (want >= 0 and got != want):
                return None
            size *= got
        if self.max_rows is not None and shape[0] > self.max_rows:
            return None
        return size

    def _values(self, data: Any, size: int) -> Array | None:
        """``data`` (flat, or a list of equal-length lists) as the model's dtype."""
        if type(data) is not list:
            return None
        if data and type(data[0]) is list:
            if set(map(type, data)) != _LIST or len(set(map(len, data))) != 1:
                return None
            data = list(chain.from_iterable(data))
        if len(data) != size:
            return None
        limit = self._float_limit
        if limit is None:
            return self._exact(data)
        try:
            # A bound on every magnitude, and a refusal (TypeError) of anything that is not
            # a number, in one pass in C: strings never reach numpy's fixed-width conversion.
            if not math.hypot(*data) <= limit:
                return None
        except (TypeError, OverflowError):
            return None
        array = np.asarray(data)  # then as the generic decoder: the same dtype, the same cast
        if array.dtype.kind not in "iuf":
            return None  # all booleans, or integers past uint64: the generic decoder refuses
        return array.astype(self._dtype, copy=False)

    def _exact(self, data: list[Any]) -> Array | None:
        """Integers for an integer datatype, booleans for BOOL, within its range."""
        if not set(map(type, data)) <= self._kinds:
            return None
        lo, hi = self._range
        if min(data) < lo or max(data) > hi:
            return None
        return np.array(data, dtype=self._dtype)


class V2Renderer:
    """``render_v2`` for a JSON response, byte for byte, without its per-request work.

    The response's envelope and each output's name, datatype and shape are built once and
    reused while the outputs keep their names, dtypes and shapes; a request only sets each
    output's ``data`` before the one ``orjson.dumps``. BYTES outputs go to ``render_v2``.
    Not thread-safe: the event loop's thread renders every response.
    """

    __slots__ = ("_entries", "_keys", "_plain", "_with_id")

    def __init__(self, *, model_name: str, model_version: str) -> None:
        self._keys: list[tuple[str, tuple[int, ...], np.dtype[Any]]] = []
        self._entries: list[dict[str, Any]] = []
        base = {"model_name": model_name, "model_version": model_version}
        self._plain: dict[str, Any] = {**base, "outputs": self._entries}
        self._with_id: dict[str, Any] = {**base, "id": None, "outputs": self._entries}

    def render(self, outputs: Mapping[str, Array], request_id: str | None) -> bytes:
        """The JSON response for ``outputs`` (and ``request_id`` when not None)."""
        keys, entries = self._keys, self._entries
        if len(outputs) != len(keys):
            return self._renew(outputs, request_id)
        for index, (name, array) in enumerate(outputs.items()):
            known, shape, dtype = keys[index]
            if name != known or array.shape != shape or array.dtype is not dtype:
                return self._renew(outputs, request_id)
            entries[index]["data"] = array.ravel()  # C-contiguous, as orjson needs
        if request_id is None:
            response = self._plain
        else:
            response = self._with_id
            response["id"] = request_id
        # The arrays stay referenced until the next response: one response's worth.
        return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)

    def _renew(self, outputs: Mapping[str, Array], request_id: str | None) -> bytes:
        """Describe these outputs from now on (unless one is BYTES), then render them."""
        self._keys.clear()
        self._entries.clear()
        if any(datatype_of(array) == "BYTES" for array in outputs.values()):
            return render_v2(outputs, model_name=self._plain["model_name"],
                             model_version=self._plain["model_version"],
                             request_id=request_id)[0]  # fmt: skip
        for name, array in outputs.items():
            self._keys.append((name, array.shape, array.dtype))
            self._entries.append(
                {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
            )
        return self.render(outputs, request_id)

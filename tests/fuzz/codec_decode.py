"""Fuzz the Open Inference Protocol decoders: ``codec.parse_v2`` (JSON, and the binary
tensor extension with its ``Inference-Header-Content-Length``) and ``codec_v1.parse_v1``.

Input layout: one byte ``mode``, then the body. ``mode % 3`` picks the decoder (0: v2
JSON, 1: v2 binary, 2: v1 ``instances``) and ``mode // 3 % len(MODELS)`` the model (its
input specs, a few of each datatype and shape kind). For the binary extension two more
bytes, a little-endian signed 16-bit integer, give the header length (negative and past
the end included: both are client mistakes).

The direct decoder of the common request (``fastcodec.FastV2Decoder``) runs on every v2
JSON body its model allows: whatever it accepts, ``parse_v2`` must accept with the same
request (dtype, shape, bits, rows, id), since the server answers with its result.

Checked for every input: the decoder returns, or raises an ``InferenceError`` whose status
is 4xx; any other exception (``ValueError``, ``OverflowError``, ``MemoryError``...) or a
5xx is a finding, since the server would answer it with a 500. What it returns conforms to
the model: every input, each with the model's dtype and a shape that fits the spec, rows
within ``MAX_ROWS``. And its allocations (tracemalloc's peak) stay within
``64 * len(input) + BASELINE``.

Run: ``python tests/fuzz/codec_decode.py [libFuzzer flags] NEW_DIR
tests/fuzz/corpus/codec_decode`` (or ``make fuzz``; docs/testing.md).
"""

from __future__ import annotations

import struct
import sys
import tracemalloc

import atheris
import harness
import orjson

with atheris.instrument_imports(include=["serinus_serving"]):
    from serinus_serving.codec import InferRequest, parse_v2
    from serinus_serving.codec_v1 import parse_v1
    from serinus_serving.datatypes import NUMPY_BY_DATATYPE
    from serinus_serving.errors import InferenceError
    from serinus_serving.fastcodec import FastV2Decoder
    from serinus_serving.runtime.base import Array, TensorSpec

MAX_ROWS = 64
#: Allocation allowed per byte of input: a JSON number of 2 bytes (``0,``) becomes a list
#: slot and a numpy element (16 bytes), a 3-byte ``[],`` a Python list (56 bytes), ``{},``
#: a dict (64 bytes); 64 leaves room for one temporary copy but not for fixed-width string
#: arrays or anything that grows with a value's magnitude instead of its text.
PER_BYTE = 64
#: The fixed part: numpy's and orjson's first-use allocations, the error messages (which
#: quote the specs). Measured on every seed, each first in a fresh process: at most 7 KiB.
BASELINE = 256 << 10


def _specs(*specs: TensorSpec) -> dict[str, TensorSpec]:
    return {s.name: s for s in specs}


#: (inputs, outputs) of the models the decoders are fuzzed against.
MODELS: list[tuple[dict[str, TensorSpec], tuple[TensorSpec, ...]]] = [
    (
        _specs(TensorSpec("x", "FP32", (-1, 3))),
        (TensorSpec("y", "FP32", (-1, 3)), TensorSpec("label", "INT64", (-1,))),
    ),
    (
        _specs(TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "BYTES", (-1,))),
        (TensorSpec("out", "FP64", (-1,)),),
    ),
    (_specs(TensorSpec("flag", "BOOL", (-1, 2)), TensorSpec("u8", "UINT8", (2, 2))), ()),
    (_specs(TensorSpec("tokens", "INT64", (-1, -1))), (TensorSpec("logits", "FP16", (-1, -1)),)),
    (_specs(TensorSpec("s", "BYTES", (-1,))), (TensorSpec("s_out", "BYTES", (-1,)),)),
    (
        _specs(
            TensorSpec("h", "FP16", (-1, 4)),
            TensorSpec("w", "UINT64", (-1,)),
            TensorSpec("d", "FP64", (-1,)),
            TensorSpec("i8", "INT8", (-1,)),
        ),
        (),
    ),
]

tracemalloc.start()


def _check_decoded(inputs: dict[str, Array], rows: int, specs: dict[str, TensorSpec]) -> None:
    assert set(inputs) == set(specs), f"decoded {sorted(inputs)}, the model takes {sorted(specs)}"
    assert 0 <= rows <= MAX_ROWS, f"{rows} rows, over the limit of {MAX_ROWS}"
    for name, array in inputs.items():
        spec = specs[name]
        want = NUMPY_BY_DATATYPE[spec.datatype]
        assert array.dtype.newbyteorder("=") == want, f"{name}: dtype {array.dtype}, not {want}"
        assert array.ndim == len(spec.shape), f"{name}: shape {array.shape} for {spec.shape}"
        for got, dim in zip(array.shape, spec.shape, strict=True):
            assert dim < 0 or got == dim, f"{name}: shape {array.shape} for {spec.shape}"
        if spec.shape:
            assert array.shape[0] == rows, f"{name}: {array.shape[0]} rows, said {rows}"
        if spec.datatype == "BYTES":
            assert all(type(v) is str for v in array.flat), f"{name}: non-str BYTES values"


def _direct(body: bytes, specs: dict[str, TensorSpec]) -> InferRequest | None:
    """What the direct decoder makes of ``body`` (None: declined, or no JSON object)."""
    fast = FastV2Decoder.for_model(specs, max_rows=MAX_ROWS)
    if fast is None:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fast.decode(payload)


def _check_same(fast: InferRequest, generic: InferRequest) -> None:
    """The direct decoder's request is the generic decoder's."""
    same = (fast.rows, fast.id, fast.outputs, fast.binary_outputs)
    assert same == (generic.rows, generic.id, generic.outputs, generic.binary_outputs), same
    assert fast.inputs.keys() == generic.inputs.keys()
    for name, array in fast.inputs.items():
        other = generic.inputs[name]
        assert (array.dtype, array.shape) == (other.dtype, other.shape), (array, other)
        assert array.tobytes() == other.tobytes(), f"{name}: {array!r} != {other!r}"


def decode(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    specs, outputs = MODELS[mode // 3 % len(MODELS)]
    if mode % 3 == 0:
        fast = _direct(body, specs)
        try:
            decoded = parse_v2(body, specs, outputs, max_rows=MAX_ROWS)
        except InferenceError as exc:
            if fast is not None:
                raise AssertionError(
                    f"the direct decoder took what parse_v2 refuses: {exc}"
                ) from exc
            raise
        _check_decoded(decoded.inputs, decoded.rows, specs)
        if fast is not None:
            _check_same(fast, decoded)
        known = {s.name for s in outputs}
        assert decoded.outputs is None or set(decoded.outputs) <= known
        assert decoded.binary_outputs <= known
    elif mode % 3 == 1:
        if len(body) < 2:
            return
        (length,) = struct.unpack("<h", body[:2])
        decoded = parse_v2(body[2:], specs, outputs, max_rows=MAX_ROWS, header_length=length)
        _check_decoded(decoded.inputs, decoded.rows, specs)
    else:
        inputs, rows = parse_v1(body, specs, max_rows=MAX_ROWS)
        _check_decoded(inputs, rows, specs)


def test_one_input(data: bytes) -> None:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        decode(data)
    except InferenceError as exc:
        if not 400 <= exc.status < 500:
            raise AssertionError(f"refused with status {exc.status}: {exc}") from exc
    peak = tracemalloc.get_traced_memory()[1] - before
    budget = PER_BYTE * len(data) + BASELINE
    if peak > budget:
        raise AssertionError(
            f"decoding {len(data)} bytes allocated {peak} bytes at its peak (budget {budget})"
        )


def _v2(*tensors: dict[str, object], **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(tensors), **extra})


def _t(name: str, datatype: str, shape: list[int], data: object = None, **extra: object) -> dict:
    tensor: dict[str, object] = {"name": name, "datatype": datatype, "shape": shape}
    if data is not None:
        tensor["data"] = data
    return tensor | extra


def _binary(header: bytes, raw: bytes) -> bytes:
    return struct.pack("<h", len(header)) + header + raw


def _bin_tensor(name: str, datatype: str, shape: list[int], raw: bytes) -> dict:
    return _t(name, datatype, shape, parameters={"binary_data_size": len(raw)})


def _bytes_elems(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def _mode(decoder: int, model: int) -> bytes:
    return bytes([model * 3 + decoder])


def seeds() -> dict[str, bytes]:
    """The hand-made seed corpus (``--write-seeds DIR``)."""
    v2, binary, v1 = (lambda model, d=d: _mode(d, model) for d in range(3))
    x = _t("x", "FP32", [2, 3], [1, 2, 3, 4, 5, 6.5])
    raw_x = struct.pack("<6f", *range(6))
    raw_s = _bytes_elems(b"hello", b"", b"a\x00")
    raw_w = struct.pack("<2Q", 0, 2**64 - 1)
    return {
        "v2-fp32-flat": v2(0) + _v2(x),
        "v2-fp32-nested": v2(0) + _v2(_t("x", "FP32", [2, 3], [[1, 2, 3], [4, 5, 6]])),
        "v2-fp32-id-outputs": v2(0)
        + _v2(
            x,
            id="r1",
            outputs=[{"name": "label"}, {"name": "y", "parameters": {"binary_data": True}}],
            parameters={"binary_data_output": True},
        ),
        "v2-fp32-wrong-shape": v2(0) + _v2(_t("x", "FP32", [3, 2], [1, 2, 3, 4, 5, 6])),
        "v2-fp32-strings": v2(0) + _v2(_t("x", "FP32", [1, 3], ["1", "2", "3"])),
        "v2-int64-bytes": v2(1)
        + _v2(_t("a", "INT64", [2], [1, -(2**63)]), _t("b", "BYTES", [2], ["x", "yz\u0000"])),
        "v2-int64-out-of-range": v2(1)
        + _v2(_t("a", "INT64", [1], [2**63]), _t("b", "BYTES", [1], ["x"])),
        "v2-bool-uint8": v2(2)
        + _v2(
            _t("flag", "BOOL", [2, 2], [True, False, False, True]),
            _t("u8", "UINT8", [2, 2], [0, 1, 254, 255]),
        ),
        "v2-tokens-dynamic": v2(3) + _v2(_t("tokens", "INT64", [2, 3], [[1, 2, 3], [4, 5, 6]])),
        "v2-tokens-empty": v2(3) + _v2(_t("tokens", "INT64", [0, 5], [])),
        "v2-bytes": v2(4) + _v2(_t("s", "BYTES", [3], ["a", "", "long string"])),
        "v2-mixed-datatypes": v2(5)
        + _v2(
            _t("h", "FP16", [2, 4], [0.5, 1, 2, 65504, 0, 0, 0, -1]),
            _t("w", "UINT64", [2], [0, 2**64 - 1]),
            _t("d", "FP64", [2], [1e308, -0.0]),
            _t("i8", "INT8", [2], [-128, 127]),
        ),
        # Found while fuzzing (fixed): numpy cannot shape even an empty array so.
        "v2-tokens-empty-huge-dim": v2(3) + _v2(_t("tokens", "INT64", [0, 2**62], [])),
        "bin-tokens-empty-huge-dim": binary(3)
        + _binary(_v2(_bin_tensor("tokens", "INT64", [0, 2**62], b"")), b""),
        "v2-not-json": v2(0) + b'{"inputs": [',
        "v2-empty": v2(0),
        "bin-fp32": binary(0) + _binary(_v2(_bin_tensor("x", "FP32", [2, 3], raw_x)), raw_x),
        "bin-bytes": binary(4) + _binary(_v2(_bin_tensor("s", "BYTES", [3], raw_s)), raw_s),
        "bin-mixed-json-and-binary": binary(1)
        + _binary(
            _v2(_t("a", "INT64", [1], [7]), _bin_tensor("b", "BYTES", [1], _bytes_elems(b"z"))),
            _bytes_elems(b"z"),
        ),
        "bin-uint64": binary(5)
        + _binary(
            _v2(
                _t("h", "FP16", [2, 4], [[1, 2, 3, 4], [5, 6, 7, 8]]),
                _bin_tensor("w", "UINT64", [2], raw_w),
                _t("d", "FP64", [2], [1, 2]),
                _t("i8", "INT8", [2], [1, 2]),
            ),
            raw_w,
        ),
        "bin-header-past-end": binary(0) + struct.pack("<h", 9999) + _v2(x),
        "bin-bytes-truncated": binary(4)
        + _binary(_v2(_bin_tensor("s", "BYTES", [1], raw_s[:6])), raw_s[:6]),
        "v1-fp32": v1(0) + orjson.dumps({"instances": [[1, 2, 3], [4, 5, 6]]}),
        "v1-ragged": v1(0) + orjson.dumps({"instances": [[1, 2, 3], [4, 5]]}),
        "v1-two-inputs": v1(1)
        + orjson.dumps({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}),
        "v1-bytes": v1(4) + orjson.dumps({"instances": ["a", "bc", ""]}),
        # Found while fuzzing (fixed): numpy made the strings fixed-width to find the shape.
        "v1-bytes-long-string-among-many": v1(4)
        + orjson.dumps({"instances": ["x" * 1000, *[""] * 300]}),
        "v1-tokens": v1(3) + orjson.dumps({"instances": [[1, 2], [3, 4]]}),
        "v1-bool": v1(2) + orjson.dumps({"instances": [{"flag": [True, False], "u8": [1, 2]}] * 2}),
    }


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
    sys.exit(0)

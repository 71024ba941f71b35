"""Decoding and encoding of inference requests, table-driven and property-based."""

from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serinus_serving.codec import parse_v2, render_v2
from serinus_serving.codec_v1 import parse_v1, render_v1
from serinus_serving.datatypes import NUMPY_BY_DATATYPE
from serinus_serving.errors import InferenceError
from serinus_serving.runtime.base import TensorSpec

pytestmark = pytest.mark.unit

X = TensorSpec("x", "FP32", (-1, 3))
SPECS = {"x": X}
OUT = (TensorSpec("y", "FP32", (-1, 3)), TensorSpec("label", "INT64", (-1,)))


def body(**payload: object) -> bytes:
    return orjson.dumps(payload)


def tensor(**overrides: object) -> dict[str, object]:
    return {
        "name": "x",
        "shape": [2, 3],
        "datatype": "FP32",
        "data": [0, 1, 2, 3, 4, 5],
    } | overrides


def test_flat_and_nested_data_decode_to_the_same_array() -> None:
    flat = parse_v2(body(inputs=[tensor()]), SPECS, OUT, max_rows=10)
    nested = parse_v2(body(inputs=[tensor(data=[[0, 1, 2], [3, 4, 5]])]), SPECS, OUT, max_rows=10)
    assert flat.rows == nested.rows == 2
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32
    assert flat.inputs["x"].shape == (2, 3)


def test_id_outputs_and_binary_selection_are_kept() -> None:
    request = parse_v2(
        body(
            id="req-1",
            inputs=[tensor()],
            outputs=[{"name": "label"}, {"name": "y", "parameters": {"binary_data": True}}],
        ),
        SPECS,
        OUT,
        max_rows=10,
    )
    assert request.id == "req-1"
    assert request.outputs == ["label", "y"]
    assert request.binary_outputs == frozenset({"y"})


CASES = [
    (b"", "empty"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (body(), "'inputs' must be a non-empty list"),
    (body(inputs=[]), "non-empty"),
    (body(inputs=[1]), "must be an object"),
    (body(inputs=[tensor(name=None)]), "string 'name'"),
    (body(inputs=[tensor(name="z")]), "unknown input 'z'"),
    (body(inputs=[tensor(), tensor()]), "more than once"),
    (body(inputs=[tensor(datatype="FP64")]), "datatype 'FP64' does not match"),
    (body(inputs=[tensor(datatype=None)]), "datatype None"),
    (body(inputs=[tensor(shape=[6])]), "rank 1"),
    (body(inputs=[tensor(shape=[2, 4])]), "dimension 1 is 4"),
    (body(inputs=[tensor(shape=[2, -3])]), "non-negative integers"),
    (body(inputs=[tensor(shape=[2, True])]), "non-negative integers"),
    (body(inputs=[tensor(shape="2,3")]), "non-negative integers"),
    (body(inputs=[tensor(data=[1, 2, 3])]), "needs 6 elements, 'data' has 3"),
    (body(inputs=[tensor(data="abc")]), "must be a JSON array"),
    (body(inputs=[tensor(data=[[1, 2], [3]])]), "ragged"),
    (body(inputs=[tensor(data=["a", "b", "c", "d", "e", "f"])]), "string values"),
    (body(inputs=[tensor(data=[None] * 6)]), "null"),
    (body(inputs=[tensor(data=[True] * 6)]), "boolean values"),
    (body(inputs=[tensor(shape=[11, 3], data=[0.0] * 33)]), "over the limit of 10"),
    (body(inputs=[tensor()], id=5), "'id' must be a string"),
    (body(inputs=[tensor()], outputs=[{"name": "nope"}]), "unknown output 'nope'"),
    (body(inputs=[tensor()], outputs="y"), "'outputs' must be a list"),
    (body(inputs=[tensor()], parameters=[]), "'parameters' must be an object"),
    (body(inputs=[tensor(parameters={"binary_data_size": 24}, data=None)]), "binary_data_size"),
]


@pytest.mark.parametrize(("raw", "message"), CASES)
def test_bad_requests_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(InferenceError) as info:
        parse_v2(raw, SPECS, OUT, max_rows=10)
    assert info.value.status == 400
    assert message in info.value.message


def test_missing_input_is_named() -> None:
    specs = {"a": TensorSpec("a", "INT64", (-1,)), "b": TensorSpec("b", "INT64", (-1,))}
    raw = body(inputs=[{"name": "a", "shape": [1], "datatype": "INT64", "data": [1]}])
    with pytest.raises(InferenceError, match=r"missing input.*'b'"):
        parse_v2(raw, specs, (), max_rows=10)


def test_inputs_must_agree_on_batch() -> None:
    specs = {"a": TensorSpec("a", "INT64", (-1,)), "b": TensorSpec("b", "INT64", (-1,))}
    raw = body(
        inputs=[
            {"name": "a", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "b", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        ]
    )
    with pytest.raises(InferenceError, match="differs from the other inputs"):
        parse_v2(raw, specs, (), max_rows=10)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("INT8", 128),
        ("UINT8", -1),
        ("INT32", 2**31),
        ("UINT16", 70000),
        ("INT64", 2**63),
        ("INT64", 2**64),
        ("UINT64", -1),
    ],
)
def test_integers_out_of_range_are_refused(datatype: str, value: int) -> None:
    spec = {"i": TensorSpec("i", datatype, (-1,))}
    raw = b'{"inputs": [{"name": "i", "shape": [1], "datatype": "%s", "data": [%d]}]}' % (
        datatype.encode(),
        value,
    )
    with pytest.raises(InferenceError):
        parse_v2(raw, spec, (), max_rows=10)


@pytest.mark.parametrize(
    ("datatype", "value"), [("FP32", "1e39"), ("FP32", "-3.5e38"), ("FP16", "65520")]
)
def test_floats_past_the_datatype_range_are_refused_not_made_infinite(
    datatype: str, value: str
) -> None:
    spec = {"f": TensorSpec("f", datatype, (-1,))}
    raw = b'{"inputs": [{"name": "f", "shape": [2], "datatype": "%s", "data": [1.0, %s]}]}' % (
        datatype.encode(),
        value.encode(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning from numpy on the way
        with pytest.raises(InferenceError, match=f"out of range for {datatype}"):
            parse_v2(raw, spec, (), max_rows=10)


def test_floats_at_the_edge_of_the_range_are_kept() -> None:
    spec = {"f": TensorSpec("f", "FP16", (-1,))}
    raw = b'{"inputs": [{"name": "f", "shape": [2], "datatype": "FP16", "data": [65504, -1e-9]}]}'
    decoded = parse_v2(raw, spec, (), max_rows=10).inputs["f"]
    assert decoded.tolist() == [65504.0, -0.0]


def test_floats_are_never_truncated_into_integers() -> None:
    spec = {"i": TensorSpec("i", "INT64", (-1,))}
    raw = body(inputs=[{"name": "i", "shape": [1], "datatype": "INT64", "data": [1.5]}])
    with pytest.raises(InferenceError, match="non-integer values"):
        parse_v2(raw, spec, (), max_rows=10)


NUMERIC = [d for d in NUMPY_BY_DATATYPE if d not in ("BYTES",)]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), datatype=st.sampled_from(NUMERIC), binary=st.booleans())
def test_any_tensor_round_trips_through_json_and_binary(
    data: st.DataObject, datatype: str, binary: bool
) -> None:
    dtype = NUMPY_BY_DATATYPE[datatype]
    elements = (
        hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
        if dtype.kind == "f"
        else hnp.from_dtype(dtype)
    )
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    array = data.draw(hnp.arrays(dtype, shape, elements=elements))
    spec = {"t": TensorSpec("t", datatype, (-1, *shape[1:]))}
    entry: dict[str, object] = {"name": "t", "shape": list(shape), "datatype": datatype}
    header_length = None
    payload = b""
    if binary:
        raw = array.astype(dtype.newbyteorder("<")).tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        header = body(inputs=[entry])
        payload, header_length = header + raw, len(header)
    else:
        entry["data"] = array.ravel().tolist()
        payload = body(inputs=[entry])
    decoded = parse_v2(payload, spec, (), max_rows=100, header_length=header_length)
    np.testing.assert_array_equal(decoded.inputs["t"], array)
    assert decoded.inputs["t"].dtype == dtype

    # and back out: JSON and binary responses carry the same values
    rendered, length = render_v2({"t": array}, model_name="m", model_version="1")
    assert length is None
    out = orjson.loads(rendered)["outputs"][0]
    assert out["datatype"] == datatype and out["shape"] == list(shape)
    np.testing.assert_array_equal(np.asarray(out["data"], dtype=dtype).reshape(shape), array)
    rendered, length = render_v2(
        {"t": array}, model_name="m", model_version="1", binary_outputs=frozenset({"t"})
    )
    assert length is not None
    size = orjson.loads(rendered[:length])["outputs"][0]["parameters"]["binary_data_size"]
    assert size == len(rendered) - length
    back = np.frombuffer(rendered[length:], dtype=dtype.newbyteorder("<")).reshape(shape)
    np.testing.assert_array_equal(back, array)


def test_bytes_tensors_in_binary_form_are_length_prefixed() -> None:
    spec = {"s": TensorSpec("s", "BYTES", (-1,))}
    words = ["héllo", "", "world"]
    raw = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    header = body(
        inputs=[
            {
                "name": "s",
                "shape": [3],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    )
    decoded = parse_v2(header + raw, spec, (), max_rows=10, header_length=len(header))
    assert decoded.inputs["s"].tolist() == words
    out, length = render_v2(
        {"s": decoded.inputs["s"]}, model_name="m", model_version="1", binary_outputs={"s"}
    )
    assert length is not None and out[length:] == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00\x00", "malformed BYTES"),
        (struct.pack("<I", 10) + b"abc", "truncated"),
        (struct.pack("<I", 1) + b"a", "needs 3 elements"),
    ],
)
def test_malformed_binary_bytes_are_refused(raw: bytes, message: str) -> None:
    spec = {"s": TensorSpec("s", "BYTES", (-1,))}
    header = body(
        inputs=[
            {
                "name": "s",
                "shape": [3],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    )
    with pytest.raises(InferenceError, match=message):
        parse_v2(header + raw, spec, (), max_rows=10, header_length=len(header))


def test_unclaimed_binary_bytes_and_bad_header_length_are_refused() -> None:
    header = body(inputs=[tensor()])
    with pytest.raises(InferenceError, match="not claimed"):
        parse_v2(header + b"xx", SPECS, OUT, max_rows=10, header_length=len(header))
    with pytest.raises(InferenceError, match="outside the body"):
        parse_v2(header, SPECS, OUT, max_rows=10, header_length=len(header) + 1)


def test_v1_instances_single_input() -> None:
    inputs, rows = parse_v1(body(instances=[[1, 2, 3], [4, 5, 6]]), SPECS, max_rows=10)
    assert rows == 2
    np.testing.assert_array_equal(inputs["x"], np.arange(1, 7, dtype=np.float32).reshape(2, 3))


def test_v1_instances_several_inputs_are_objects() -> None:
    specs = {"a": TensorSpec("a", "INT64", (-1,)), "b": TensorSpec("b", "FP32", (-1, 2))}
    inputs, rows = parse_v1(
        body(instances=[{"a": 1, "b": [0.5, 1]}, {"a": 2, "b": [2, 3]}]), specs, max_rows=10
    )
    assert rows == 2
    assert inputs["a"].tolist() == [1, 2]
    assert inputs["b"].dtype == np.float32


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body(inputs=[]), "'instances' list"),
        (body(instances=[]), "empty"),
        (body(instances=[[1, 2]]), "dimension 1 is 2"),
        (body(instances=[[1, 2, 3], [1]]), "ragged"),
        (body(instances=[1, 2, 3]), "instances have shape"),
        (body(instances=[["a", "b", "c"]]), "string values"),
    ],
)
def test_v1_bad_instances(raw: bytes, message: str) -> None:
    with pytest.raises(InferenceError, match=message):
        parse_v1(raw, SPECS, max_rows=10)


def test_v1_multi_input_needs_objects() -> None:
    specs = {"a": TensorSpec("a", "INT64", (-1,)), "b": TensorSpec("b", "INT64", (-1,))}
    with pytest.raises(InferenceError, match="keyed by input name"):
        parse_v1(body(instances=[[1, 2]]), specs, max_rows=10)
    with pytest.raises(InferenceError, match="missing input 'b'"):
        parse_v1(body(instances=[{"a": 1}]), specs, max_rows=10)
    with pytest.raises(InferenceError, match="unknown input"):
        parse_v1(body(instances=[{"a": 1, "b": 2, "c": 3}]), specs, max_rows=10)


def test_v1_predictions_per_instance() -> None:
    single = orjson.loads(render_v1({"y": np.array([[1.0, 2.0]], dtype=np.float32)}))
    assert single == {"predictions": [[1.0, 2.0]]}
    several = orjson.loads(
        render_v1(
            {
                "label": np.array([1, 0]),
                "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
            }
        )
    )
    assert several["predictions"] == [
        {"label": 1, "probabilities": [0.25, 0.75]},
        {"label": 0, "probabilities": [0.5, 0.5]},
    ]


def test_response_echoes_id_and_shape() -> None:
    out, _ = render_v2(
        {"y": np.zeros((2, 3), dtype=np.float32)},
        model_name="m",
        model_version="7",
        request_id="abc",
    )
    decoded = orjson.loads(out)
    assert decoded["id"] == "abc" and decoded["model_version"] == "7"
    assert decoded["outputs"][0]["shape"] == [2, 3]
    assert len(decoded["outputs"][0]["data"]) == math.prod((2, 3))


STRINGS = {"s": TensorSpec("s", "BYTES", (-1,))}


@pytest.mark.parametrize(("datatype", "spec"), [("FP32", SPECS), ("BYTES", STRINGS)])
def test_one_long_string_among_many_elements_costs_what_was_sent(
    datatype: str, spec: dict[str, TensorSpec]
) -> None:
    """numpy alone makes a fixed-width string array as wide as the longest string for every
    element: this 36 KB body would have cost 4 * 3,001 * 30,000 bytes (360 MB)."""
    import tracemalloc

    name = next(iter(spec))
    data = ["x" * 30_000, *(["a"] if datatype == "BYTES" else [0.5]) * 3_000]
    raw = body(inputs=[{"name": name, "shape": [len(data)], "datatype": datatype, "data": data}])
    specs = spec if datatype == "BYTES" else {"x": TensorSpec("x", "FP32", (-1,))}
    refused = pytest.raises(InferenceError, match="string values")
    tracemalloc.start()
    try:
        if datatype == "FP32":
            with refused:
                parse_v2(raw, specs, OUT, max_rows=10_000)
        else:
            assert parse_v2(raw, specs, OUT, max_rows=10_000).inputs["s"].size == len(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(raw), f"{peak} bytes for a body of {len(raw)}"


def test_bytes_values_sent_as_json_keep_their_trailing_nuls() -> None:
    data = ["a\x00", "\x00", "b"]
    raw = body(inputs=[{"name": "s", "shape": [3], "datatype": "BYTES", "data": data}])
    decoded = parse_v2(raw, STRINGS, OUT, max_rows=10)
    assert decoded.inputs["s"].tolist() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["a", 1], "integer values"),
        (["a", 1.5], "floating-point values"),
        ([True], "boolean values"),
        (["a", None], "null or object values"),
        (["a", ["b"]], "ragged"),
    ],
)
def test_bytes_data_must_be_strings(data: list[object], message: str) -> None:
    raw = body(inputs=[{"name": "s", "shape": [len(data)], "datatype": "BYTES", "data": data}])
    with pytest.raises(InferenceError, match=message):
        parse_v2(raw, STRINGS, OUT, max_rows=10)


def test_v1_one_long_string_among_many_instances_costs_what_was_sent() -> None:
    """parse_v1 found the instances' shape with numpy, which made the same fixed-width
    string array as the JSON data path once did: 4 * 3,000 * 1,001 bytes (12 MB) for this
    7 KB body (found by tests/fuzz/codec_decode.py's memory budget)."""
    import tracemalloc

    instances = ["x" * 3_000, *["a"] * 1_000]
    raw = body(instances=instances)
    tracemalloc.start()
    try:
        inputs, rows = parse_v1(raw, STRINGS, max_rows=10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == len(instances) and inputs["s"].tolist() == instances
    assert peak < 64 * len(raw), f"{peak} bytes for a body of {len(raw)}"


@pytest.mark.parametrize(
    ("instances", "shape"),
    [
        ([[1, 2], [3, 4], [5, 6]], [3, 2]),
        ([[[]], [[]]], [2, 1, 0]),
        ([[1, 2], [3]], None),  # ragged
        ([[1, 2], 3], None),  # a list and a value at one level
        ([{"a": [1, 2]}, {"a": [3]}], [2]),  # objects are values, as numpy sees them
    ],
)
def test_v1_shapes_are_found_as_numpy_finds_them(
    instances: list[object], shape: list[int] | None
) -> None:
    spec = {"t": TensorSpec("t", "INT64", (-1,) * (len(shape) if shape else 1))}
    if shape is None:
        with pytest.raises(InferenceError, match="ragged"):
            parse_v1(body(instances=instances), spec, max_rows=10)
    elif isinstance(instances[0], dict):
        with pytest.raises(InferenceError, match="not valid for datatype INT64"):
            parse_v1(body(instances=instances), spec, max_rows=10)
    else:
        inputs, _ = parse_v1(body(instances=instances), spec, max_rows=10)
        assert list(inputs["t"].shape) == shape == list(np.shape(instances))


TOKENS = {"t": TensorSpec("t", "INT64", (-1, -1))}
WORDS = {"w": TensorSpec("w", "BYTES", (-1, -1))}


@pytest.mark.parametrize("dim", [2**62, 2**63 - 1, 2**64 - 1])
@pytest.mark.parametrize(
    ("specs", "binary"), [(TOKENS, False), (TOKENS, True), (WORDS, False), (WORDS, True)]
)
def test_an_empty_tensor_with_a_dimension_no_array_can_have_is_refused(
    specs: dict[str, TensorSpec], binary: bool, dim: int
) -> None:
    """numpy cannot shape even an empty array as [0, 2**62]: its ValueError was a 500
    (found by tests/fuzz/codec_decode.py)."""
    (spec,) = specs.values()
    entry: dict[str, object] = {"name": spec.name, "shape": [0, dim], "datatype": spec.datatype}
    if binary:
        entry["parameters"] = {"binary_data_size": 0}
        header = body(inputs=[entry])
        with pytest.raises(InferenceError, match="too large") as info:
            parse_v2(header, specs, (), max_rows=10, header_length=len(header))
    else:
        with pytest.raises(InferenceError, match="too large") as info:
            parse_v2(body(inputs=[entry | {"data": []}]), specs, (), max_rows=10)
    assert info.value.status == 400


def test_an_empty_tensor_with_a_large_dimension_still_decodes() -> None:
    entry = {"name": "t", "shape": [0, 2**40], "datatype": "INT64", "data": []}
    assert parse_v2(body(inputs=[entry]), TOKENS, (), max_rows=10).inputs["t"].shape == (0, 2**40)

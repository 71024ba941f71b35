"""The direct decoder and renderer (fastcodec.py) against the generic ones (codec.py).

Whatever body the direct decoder accepts, the generic decoder accepts with an identical
request (same dtype, shape and bits); whatever it declines goes to the generic decoder, so
the server's answer (array or error message) is the generic decoder's for every body. The
renderer's bytes are render_v2's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_serving.codec import InferRequest, decode_v2, parse_v2, render_v2
from serinus_serving.errors import InferenceError
from serinus_serving.fastcodec import FastV2Decoder, V2Renderer
from serinus_serving.runtime.base import TensorSpec
from serinus_serving.tensors import load_json

pytestmark = pytest.mark.unit

MAX_ROWS = 8
FP32 = TensorSpec("x", "FP32", (-1, 3))
SPECS = [
    FP32,
    TensorSpec("x", "FP16", (-1, 2)),
    TensorSpec("x", "FP64", (-1,)),
    TensorSpec("x", "INT64", (-1, 2)),
    TensorSpec("x", "INT8", (2,)),
    TensorSpec("x", "UINT64", (-1,)),
    TensorSpec("x", "BOOL", (-1, 2)),
    TensorSpec("x", "FP32", (2, -1)),
]
OUT = (TensorSpec("y", "FP32", (-1,)),)


def dumps(value: Any) -> bytes:
    """JSON as a client may send it: integers of any size (orjson parses those past 64
    bits as floats, as the server sees them)."""
    return json.dumps(value).encode()


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except InferenceError as exc:
        return "error", (exc.status, exc.message)


def _as_app_does(body: bytes, spec: TensorSpec) -> InferRequest:
    """ServingApp._decode for a v2 JSON body: the direct decoder, else the generic one."""
    fast = FastV2Decoder.for_model({spec.name: spec}, max_rows=MAX_ROWS)
    assert fast is not None
    payload = load_json(body)
    return fast.decode(payload) or decode_v2(
        payload, b"", specs={spec.name: spec}, outputs=OUT, max_rows=MAX_ROWS
    )


def _same_request(a: InferRequest, b: InferRequest) -> None:
    assert (a.rows, a.id, a.outputs, a.binary_outputs) == (
        b.rows,
        b.id,
        b.outputs,
        b.binary_outputs,
    )
    assert a.inputs.keys() == b.inputs.keys()
    for name, x in a.inputs.items():
        y = b.inputs[name]
        assert (x.dtype, x.shape) == (y.dtype, y.shape)
        assert x.tobytes() == y.tobytes()


def check(body: bytes, spec: TensorSpec) -> bool:
    """The app's decoding equals parse_v2's, result or error; True if the direct decoder
    took the body."""
    generic = _outcome(lambda: parse_v2(body, {spec.name: spec}, OUT, max_rows=MAX_ROWS))
    app = _outcome(lambda: _as_app_does(body, spec))
    assert app[0] == generic[0], (app, generic)
    if generic[0] == "error":
        assert app == generic
    else:
        _same_request(app[1], generic[1])
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    fast = FastV2Decoder.for_model({spec.name: spec}, max_rows=MAX_ROWS)
    assert fast is not None
    return fast.decode(payload) is not None


def _body(data: Any, shape: Any = None, **extra: Any) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 3] if shape is None else shape}
    return dumps({"inputs": [{**tensor, "data": data}], **extra})


ROW = [0.5, -1.25, 3.0]
TAKEN = [
    pytest.param(_body(ROW * 2), id="flat"),
    pytest.param(_body([ROW, ROW]), id="nested"),
    pytest.param(_body([1, 2, 3, 4, 5, 6]), id="integers"),
    pytest.param(_body([1, 2.5, 3, 4, 5, 6]), id="integers-and-floats"),
    pytest.param(_body([True, 2.5, 3, 4, 5, 6]), id="a-boolean-among-numbers"),
    pytest.param(_body([2**53 + 1, 0, 0, 0, 0, 0]), id="integer-rounded-once"),
    pytest.param(_body([-3.4028234e38, 0, 0, 0, 0, 1]), id="near-fp32-max"),
    pytest.param(_body(ROW * 2, id="r-1"), id="with-id"),
    pytest.param(_body(ROW * 2, id=None), id="null-id"),
    pytest.param(_body(ROW * 2, other={"k": [1]}), id="unknown-key"),
    pytest.param(_body(ROW * 3, shape=[3, 3]), id="three-rows"),
    # orjson parses integers past 64 bits as floats, for either decoder
    pytest.param(_body([2**70, 0.5, 0, 0, 0, 0]), id="integer-past-uint64"),
]
DECLINED = [
    # Each goes to the generic decoder, which decodes it or refuses it.
    pytest.param(_body(ROW * 2, outputs=[{"name": "y"}]), id="outputs"),
    pytest.param(_body(ROW * 2, parameters={}), id="parameters"),
    pytest.param(_body(ROW * 2, id=7), id="numeric-id"),
    pytest.param(_body(["1", 2, 3, 4, 5, 6]), id="a-string"),
    pytest.param(_body(["x" * 1000, *[0] * 5]), id="a-long-string"),
    pytest.param(_body([None, 2, 3, 4, 5, 6]), id="null"),
    pytest.param(_body([True, False, True, True, False, True]), id="all-booleans"),
    pytest.param(_body([{}, 2, 3, 4, 5, 6]), id="an-object"),
    pytest.param(_body([ROW, [1, 2]]), id="ragged"),
    pytest.param(_body([ROW, 1, 2, 3]), id="mixed-nesting"),
    pytest.param(_body([[ROW, ROW]], shape=[2, 3]), id="three-levels"),
    pytest.param(_body([1e39, 0, 0, 0, 0, 0]), id="fp32-overflow"),
    pytest.param(_body([3.40282356e38, 0, 0, 0, 0, 0]), id="rounds-to-fp32-max"),
    pytest.param(_body([10**400, 0, 0, 0, 0, 0]), id="huge-integer"),
    pytest.param(_body(ROW), id="too-few-values"),
    pytest.param(_body(ROW * 3), id="too-many-values"),
    pytest.param(_body([], shape=[0, 3]), id="empty"),
    pytest.param(_body(ROW * 9, shape=[9, 3]), id="over-max-rows"),
    pytest.param(_body(ROW * 2, shape=[2, 4]), id="wrong-dim"),
    pytest.param(_body(ROW * 2, shape=[6]), id="wrong-rank"),
    pytest.param(_body(ROW * 2, shape=[2.0, 3]), id="float-dim"),
    pytest.param(_body(ROW * 2, shape=[True, 3]), id="bool-dim"),
    pytest.param(_body(ROW * 2, shape="2x3"), id="shape-string"),
    pytest.param(_body("1,2,3"), id="data-string"),
    pytest.param(
        dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3]}]}), id="no-data"
    ),
    pytest.param(
        dumps({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 3], "data": ROW}]}),
        id="other-name",
    ),
    pytest.param(
        dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": ROW}]}),
        id="other-datatype",
    ),
    pytest.param(
        dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1, 3],
                        "data": ROW,
                        "parameters": {"binary_data_size": 12},
                    }
                ]
            }
        ),
        id="binary",
    ),
    pytest.param(dumps({"inputs": []}), id="no-inputs"),
    pytest.param(dumps({"inputs": [1]}), id="input-not-object"),
    pytest.param(dumps([1]), id="not-object"),
    pytest.param(b"{", id="not-json"),
    pytest.param(b"", id="empty-body"),
]


@pytest.mark.parametrize("body", TAKEN)
def test_the_common_requests_take_the_direct_path_and_decode_as_the_generic(body: bytes) -> None:
    assert check(body, FP32)


@pytest.mark.parametrize("body", DECLINED)
def test_the_rest_go_to_the_generic_decoder(body: bytes) -> None:
    assert not check(body, FP32)


@pytest.mark.parametrize(
    ("spec", "data", "taken"),
    [
        (TensorSpec("x", "INT64", (-1, 2)), [[1, -(2**63)]], True),
        (TensorSpec("x", "INT64", (-1, 2)), [2**63 - 1, 0], True),
        (TensorSpec("x", "INT64", (-1, 2)), [2**63, 0], False),
        (TensorSpec("x", "INT64", (-1, 2)), [1.0, 2], False),
        (TensorSpec("x", "INT64", (-1, 2)), [True, 2], False),
        (TensorSpec("x", "INT8", (2,)), [-128, 127], True),
        (TensorSpec("x", "INT8", (2,)), [-129, 0], False),
        (TensorSpec("x", "UINT64", (-1,)), [2**64 - 1, 0], True),
        (TensorSpec("x", "UINT64", (-1,)), [-1, 0], False),
        (TensorSpec("x", "BOOL", (-1, 2)), [True, False], True),
        (TensorSpec("x", "BOOL", (-1, 2)), [1, 0], False),
        (TensorSpec("x", "FP16", (-1, 2)), [-65504, 0], True),
        (TensorSpec("x", "FP16", (-1, 2)), [0.1, -0.5], True),
        (TensorSpec("x", "FP16", (-1, 2)), [65504, -0.5], False),  # the bound is on both
        (TensorSpec("x", "FP16", (-1, 2)), [65519.0, 0], False),
        (TensorSpec("x", "FP16", (-1, 2)), [70000, 0], False),
        (TensorSpec("x", "FP64", (-1,)), [1e308, -0.0], True),
        (TensorSpec("x", "FP64", (-1,)), [10**400, 0], False),
    ],
)
def test_other_datatypes(spec: TensorSpec, data: list[Any], taken: bool) -> None:
    shape = [2] if len(spec.shape) == 1 else [1, 2]
    body = dumps(
        {"inputs": [{"name": "x", "datatype": spec.datatype, "shape": shape, "data": data}]}
    )
    assert check(body, spec) is taken


def test_models_it_does_not_serve() -> None:
    two = {"a": TensorSpec("a", "FP32", (-1,)), "b": TensorSpec("b", "FP32", (-1,))}
    assert FastV2Decoder.for_model(two, max_rows=8) is None
    assert FastV2Decoder.for_model({"s": TensorSpec("s", "BYTES", (-1,))}, max_rows=8) is None
    assert FastV2Decoder.for_model({"s": TensorSpec("s", "FP32", ())}, max_rows=8) is None


SCALARS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e40, max_value=1e40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-300, max_value=300),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
)
DATA = st.recursive(
    st.lists(SCALARS, max_size=8), lambda inner: st.lists(inner, max_size=3), max_leaves=16
)
SHAPES = st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=3)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    spec=st.sampled_from(SPECS),
    data=DATA,
    shape=SHAPES | st.just([2, 3]),
    request_id=st.none() | st.text(max_size=3) | st.integers(),
)
def test_any_body_decodes_as_the_generic_decoder_does(
    spec: TensorSpec, data: Any, shape: list[int], request_id: Any
) -> None:
    tensor = {"name": "x", "datatype": spec.datatype, "shape": shape, "data": data}
    payload: dict[str, Any] = {"inputs": [tensor]}
    if request_id is not None:
        payload["id"] = request_id
    check(dumps(payload), spec)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    spec=st.sampled_from(SPECS),
    rows=st.integers(min_value=1, max_value=3),
    values=st.lists(
        st.floats(width=32, allow_nan=False, allow_infinity=False)
        | st.integers(min_value=-(2**63), max_value=2**64 - 1),
        min_size=12,
        max_size=12,
    ),
    nested=st.booleans(),
)
def test_well_formed_numbers_decode_as_the_generic_decoder_does(
    spec: TensorSpec, rows: int, values: list[Any], nested: bool
) -> None:
    shape = [d if d >= 0 else (rows if axis == 0 else 2) for axis, d in enumerate(spec.shape)]
    size = int(np.prod(shape))
    data: list[Any] = values[:size]
    if nested and len(shape) == 2:
        data = [data[i : i + shape[1]] for i in range(0, size, shape[1])]
    tensor = {"name": "x", "datatype": spec.datatype, "shape": shape, "data": data}
    check(dumps({"inputs": [tensor]}), spec)


# --------------------------------------------------------------------------- rendering


def _render_both(renderer: V2Renderer, outputs: dict[str, Any], request_id: str | None) -> None:
    want, _ = render_v2(outputs, model_name="m", model_version="7", request_id=request_id)
    assert renderer.render(outputs, request_id) == want


def test_the_renderer_writes_render_v2s_bytes_as_the_outputs_change() -> None:
    renderer = V2Renderer(model_name="m", model_version="7")
    probabilities = np.array([[0.00038194656, 0.99961805]], dtype=np.float32)
    label = np.array([1], dtype=np.int64)
    sequence: list[tuple[dict[str, Any], str | None]] = [
        ({"label": label, "probabilities": probabilities}, None),
        ({"label": label, "probabilities": probabilities}, "req-1"),
        ({"label": label + 1, "probabilities": probabilities * 2}, None),
        ({"label": np.arange(3), "probabilities": np.ones((3, 2), np.float32)}, None),
        ({"probabilities": probabilities, "label": label}, 'x"y'),
        ({"label": label}, None),
        ({"label": label.astype(np.int32)}, None),
        ({"s": np.array(["a", "b"], dtype=object)}, None),
        ({"s": np.array(["a", "b"], dtype=object)}, "r"),
        ({"h": np.array([0.5, 65504], dtype=np.float16), "b": np.array([True])}, None),
        ({"d": np.array([[1e308, -0.0]]), "u": np.array([2**64 - 1], np.uint64)}, None),
        ({"sliced": np.arange(12, dtype=np.float32).reshape(4, 3)[1:2]}, None),
        ({}, None),
        ({"label": label, "probabilities": probabilities}, None),
    ]
    for outputs, request_id in sequence:
        _render_both(renderer, outputs, request_id)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    request_id=st.none() | st.text(max_size=4),
)
def test_rendering_random_outputs_matches_render_v2(
    rows: int, seed: int, request_id: str | None
) -> None:
    rng = np.random.default_rng(seed)
    renderer = V2Renderer(model_name="m", model_version="7")
    for _ in range(2):
        outputs = {
            "label": rng.integers(-(2**40), 2**40, size=rows),
            "probabilities": rng.normal(size=(rows, 2)).astype(np.float32),
        }
        _render_both(renderer, outputs, request_id)

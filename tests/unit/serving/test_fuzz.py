"""Fuzzing the endpoints: no input a client can send yields a 500.

Two generators: schemathesis from the app's own OpenAPI document (every operation,
schema-conforming and not), and hypothesis bodies built to be *almost* right (the right
input name with a wrong shape, the right shape with wrong data...), which is where a
validator is most likely to let something through to ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serinus_serving.app import ServingApp
from support.inprocess import make_app, running

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def loaded_app(mixed_path: Path) -> ServingApp:
    app = make_app(mixed_path, max_request_rows=8, max_body_bytes=4096)
    asyncio.run(app.load())
    assert app.runtime.ready
    return app


@pytest.fixture(scope="module")
def operations(loaded_app: ServingApp) -> st.SearchStrategy[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", loaded_app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in ops} >= {
        "/v2/models/{model_name}/infer",
        "/v1/models/{model_name}:predict",
        "/v2/health/ready",
    }
    return st.one_of(*[op.as_strategy() for op in ops])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), aim=st.booleans())
def test_openapi_operations_never_answer_5xx(
    operations: st.SearchStrategy[Any], data: st.DataObject, aim: bool
) -> None:
    case = data.draw(operations)
    if aim and case.path_parameters:
        # Aim at the served model half the time: unknown names stop at a 404.
        case.path_parameters = {
            **case.path_parameters,
            "model_name": "m",
            **({"model_version": "1"} if "model_version" in case.path_parameters else {}),
        }
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert "error" in response.json()


NAMES = st.sampled_from(["x_fp64", "x_i32", "x_i64", "flag", "nope"])
DATATYPES = st.sampled_from(["FP64", "INT32", "INT64", "BOOL", "FP32", "BYTES", "UINT8", "X"])
SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
DATA = st.recursive(
    st.lists(SCALARS, max_size=8), lambda inner: st.lists(inner, max_size=3), max_leaves=20
)
SHAPES = st.lists(st.integers(min_value=-2, max_value=9), max_size=3) | st.sampled_from(
    [[1, 3], [2, 2], [1, 1], [1], "1", None]
)
TENSOR = st.fixed_dictionaries(
    {"name": NAMES, "datatype": DATATYPES, "shape": SHAPES, "data": DATA | SCALARS},
    optional={"parameters": st.dictionaries(st.just("binary_data_size"), SCALARS, max_size=1)},
)
REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=5) | SCALARS},
    optional={
        "id": SCALARS,
        "outputs": st.lists(
            st.fixed_dictionaries({"name": NAMES | st.sampled_from(["scaled", "negated"])}),
            max_size=2,
        ),
        "parameters": st.dictionaries(st.just("binary_data_output"), SCALARS, max_size=1),
    },
)


@pytest.fixture(scope="module")
def client(mixed_path: Path) -> Iterator[TestClient]:
    with running(make_app(mixed_path, max_request_rows=8, max_body_bytes=4096)) as client:
        yield client


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=REQUEST, path=st.sampled_from(["/v2/models/m/infer", "/v1/models/m:predict"]))
def test_almost_right_requests_get_4xx_not_500(
    client: TestClient, payload: dict[str, Any], path: str
) -> None:
    if path.startswith("/v1"):
        payload = {"instances": payload.get("inputs")}
    response = client.post(path, content=json.dumps(payload))
    assert response.status_code in (200, 400, 413), response.text
    if response.status_code != 200:
        assert response.json()["error"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300), header=st.none() | st.integers(-5, 400).map(str))
def test_arbitrary_bytes_get_4xx_not_500(
    client: TestClient, raw: bytes, header: str | None
) -> None:
    headers = {} if header is None else {"inference-header-content-length": header}
    response = client.post("/v2/models/m/infer", content=raw, headers=headers)
    assert 400 <= response.status_code < 500, response.text

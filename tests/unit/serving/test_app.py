"""The serving app's endpoints, in-process through its real ASGI entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from serinus_serving.app import match_infer
from support.inprocess import make_app, running

pytestmark = pytest.mark.unit

ROW = [float(i) / 10 for i in range(20)]


def infer_body(rows: list[list[float]], **extra: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "X", "shape": [len(rows), 20], "datatype": "FP32", "data": rows}],
        **extra,
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/m/infer", ("v2", "m", None)),
        ("/v2/models/m/versions/3/infer", ("v2", "m", "3")),
        ("/v1/models/m:predict", ("v1", "m", None)),
        ("/v2/models//infer", None),
        ("/v2/models/m/x/infer", None),
        ("/v2/models/m/versions//infer", None),
        ("/v1/models/:predict", None),
        ("/v1/models/a/b:predict", None),
        ("/v2/models/m", None),
    ],
)
def test_match_infer(path: str, expected: object) -> None:
    assert match_infer(path) == expected


def test_predictions_match_onnx_runtime(logreg_path: Path) -> None:
    rows = np.random.default_rng(1).normal(size=(5, 20)).astype(np.float32)
    label, proba = ort.InferenceSession(str(logreg_path)).run(None, {"X": rows})
    with running(make_app(logreg_path)) as client:
        response = client.post("/v2/models/m/infer", json=infer_body(rows.tolist(), id="r1"))
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["id"] == "r1" and payload["model_name"] == "m"
        outputs = {o["name"]: o for o in payload["outputs"]}
        assert outputs["label"]["data"] == label.tolist()
        np.testing.assert_array_equal(
            np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(5, 2), proba
        )
        versioned = client.post(
            "/v2/models/m/versions/1/infer",
            json=infer_body(rows.tolist(), outputs=[{"name": "label"}]),
        )
        assert [o["name"] for o in versioned.json()["outputs"]] == ["label"]
        v1 = client.post("/v1/models/m:predict", json={"instances": rows.tolist()})
        assert [p["label"] for p in v1.json()["predictions"]] == label.tolist()


def test_zipmap_probabilities_become_a_dense_tensor(zipmap_path: Path) -> None:
    with running(make_app(zipmap_path)) as client:
        meta = client.get("/v2/models/m").json()
        assert meta["outputs"][1] == {
            "name": "output_probability",
            "datatype": "FP32",
            "shape": [-1, -1],
        }
        out = client.post("/v2/models/m/infer", json=infer_body([ROW, ROW])).json()["outputs"]
        assert out[1]["shape"] == [2, 2]
        assert sum(out[1]["data"][:2]) == pytest.approx(1.0, abs=1e-5)


def test_metadata_and_health(logreg_path: Path) -> None:
    with running(make_app(logreg_path)) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/m/ready").status_code == 200
        assert client.get("/v2/models/m/versions/1/ready").status_code == 200
        assert client.get("/v2/models/other/ready").status_code == 404
        assert client.get("/v2").json()["name"] == "serinus"
        meta = client.get("/v2/models/m").json()
        assert meta["name"] == "m" and meta["versions"] == ["1"]
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
        assert client.get("/v2/models/m/versions/1").status_code == 200
        assert client.get("/v2/models/m/versions/2").status_code == 404
        assert client.get("/v1/models/m").json() == {"name": "m", "ready": True}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/v2/models/nope/infer", infer_body([ROW]), 404, "unknown model 'nope'"),
        ("post", "/v2/models/m/versions/9/infer", infer_body([ROW]), 404, "no version '9'"),
        ("post", "/v1/models/nope:predict", {"instances": [ROW]}, 404, "unknown model"),
        ("post", "/v2/models/m/infer", b"{", 400, "not valid JSON"),
        ("post", "/v2/models/m/infer", infer_body([ROW[:19]]), 400, "needs 20 elements"),
        ("post", "/v2/models/m/infer", infer_body([ROW] * 11), 400, "over the limit of 10"),
        ("get", "/v2/models/m/infer", None, 405, "Method Not Allowed"),
        ("get", "/nowhere", None, 404, "Not Found"),
    ],
)
def test_client_mistakes_get_4xx_with_an_error_body(
    logreg_path: Path, method: str, path: str, body: object, status: int, message: str
) -> None:
    with running(make_app(logreg_path, max_request_rows=10)) as client:
        if isinstance(body, bytes):
            response = client.request(method, path, content=body)
        else:
            response = client.request(method, path, json=body)
        assert response.status_code == status
        assert message in response.json()["error"]


def test_body_over_the_limit_is_413(logreg_path: Path) -> None:
    with running(make_app(logreg_path, max_body_bytes=100)) as client:
        response = client.post("/v2/models/m/infer", json=infer_body([ROW]))
        assert response.status_code == 413
        assert "limit of 100 bytes" in response.json()["error"]

        def chunks() -> object:  # no Content-Length: the limit holds while streaming
            yield b'{"inputs": ['
            yield b" " * 200

        streamed = client.post("/v2/models/m/infer", content=chunks())
        assert streamed.status_code == 413


def test_invalid_data_for_the_model_is_a_client_error(gather_path: Path) -> None:
    """The request is well formed but ONNX Runtime rejects the values (index out of range)."""
    with running(make_app(gather_path)) as client:
        body = {"inputs": [{"name": "idx", "shape": [2], "datatype": "INT64", "data": [1, 9]}]}
        response = client.post("/v2/models/m/infer", json=body)
        assert response.status_code == 400
        assert "rejected the input" in response.json()["error"]


def test_a_model_that_fails_to_load_never_serves(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a model")
    app = make_app(broken)
    with running(app, wait_ready=False) as client:
        assert app.runtime.state.value == "FAILED"
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 400 and "FAILED" in ready.json()["error"]
        meta = client.get("/v2/models/m")
        assert meta.status_code == 503
        assert meta.json()["state"] == "FAILED"
        assert "cannot load" in meta.json()["reason"]
        infer = client.post("/v2/models/m/infer", json=infer_body([ROW]))
        assert infer.status_code == 503
        assert "FAILED" in infer.json()["error"]


def test_a_checksum_mismatch_never_serves(logreg_path: Path) -> None:
    app = make_app(logreg_path, sha256="0" * 64)
    with running(app, wait_ready=False) as client:
        assert client.get("/v2/health/ready").status_code == 400
        assert "sha256 mismatch" in client.get("/v2/models/m").json()["reason"]


def test_draining_turns_readiness_off_but_keeps_serving(logreg_path: Path) -> None:
    app = make_app(logreg_path)
    with running(app) as client:
        app.begin_drain()
        assert client.get("/v2/health/ready").status_code == 400
        assert client.post("/v2/models/m/infer", json=infer_body([ROW])).status_code == 200


def test_mixed_datatypes(mixed_path: Path) -> None:
    body = {
        "inputs": [
            {"name": "x_fp64", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]},
            {"name": "x_i32", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]},
            {"name": "x_i64", "shape": [2, 1], "datatype": "INT64", "data": [7, 8]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ]
    }
    with running(make_app(mixed_path)) as client:
        response = client.post("/v2/models/m/infer", json=body)
        assert response.status_code == 200, response.text
        out = {o["name"]: o for o in response.json()["outputs"]}
        assert out["scaled"] == {
            "name": "scaled",
            "datatype": "FP64",
            "shape": [2, 3],
            "data": [2, 4, 6, 8, 10, 12],
        }
        assert out["summed"]["datatype"] == "INT32" and out["summed"]["data"] == [2, 3, 4, 5]
        assert out["count"]["data"] == [14, 16]
        assert out["negated"]["datatype"] == "BOOL" and out["negated"]["data"] == [False, True]


def test_strings(strings_path: Path) -> None:
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "bé"]}]}
    with running(make_app(strings_path)) as client:
        out = client.post("/v2/models/m/infer", json=body).json()["outputs"][0]
        assert out == {"name": "echo", "datatype": "BYTES", "shape": [2], "data": ["a", "bé"]}


def test_binary_outputs_carry_the_same_values(logreg_path: Path) -> None:
    body = infer_body([ROW, ROW], parameters={"binary_data_output": True})
    with running(make_app(logreg_path)) as client:
        response = client.post("/v2/models/m/infer", json=body)
        assert response.headers["content-type"] == "application/octet-stream"
        length = int(response.headers["inference-header-content-length"])
        header = orjson.loads(response.content[:length])
        sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
        assert sum(sizes) == len(response.content) - length
        labels = np.frombuffer(response.content[length : length + sizes[0]], dtype="<i8")
        json_out = client.post("/v2/models/m/infer", json=infer_body([ROW, ROW])).json()
        assert labels.tolist() == json_out["outputs"][0]["data"]


def test_metrics_count_outcomes(logreg_path: Path) -> None:
    with running(make_app(logreg_path, revision="abc123")) as client:
        client.post("/v2/models/m/infer", json=infer_body([ROW]))
        client.post("/v2/models/m/infer", content=b"nope")
        text = client.get("/metrics").text
    labels = 'model="m",outcome="{}",protocol="v2",revision="abc123",version="1"'
    assert f"serinus_requests_total{{{labels.format('success')}}} 1.0" in text
    assert f"serinus_requests_total{{{labels.format('client_error')}}} 1.0" in text
    assert 'serinus_model_ready{model="m",revision="abc123",version="1"} 1.0' in text
    assert "serinus_model_info{" in text and 'platform="onnxruntime_onnx"' in text
    assert "serinus_request_duration_seconds_bucket" in text
    assert "_created" not in text

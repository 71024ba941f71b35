"""``serinus serve`` as a real process on 127.0.0.1, spoken to by real clients."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from support.serve import SERINUS, serve

pytestmark = pytest.mark.integration


def _ort(path: Path, rows: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    result: list[np.ndarray] = ort.InferenceSession(str(path), options).run(None, {"X": rows})
    return result


def _v2(rows: np.ndarray, **extra: object) -> dict[str, object]:
    data = rows.tolist()
    return {
        "inputs": [{"name": "X", "shape": list(rows.shape), "datatype": "FP32", "data": data}]
    } | extra


def test_predictions_match_onnx_runtime(logreg_path: Path, tmp_path: Path) -> None:
    rows = np.random.default_rng(3).normal(size=(6, 20)).astype(np.float32)
    label, proba = _ort(logreg_path, rows)
    with serve(
        "--model", str(logreg_path), "--name", "fraud", "--version", "7", log_dir=tmp_path
    ) as s:
        response = httpx.post(f"{s.url}/v2/models/fraud/versions/7/infer", json=_v2(rows, id="x1"))
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["model_name"] == "fraud" and payload["model_version"] == "7"
        assert payload["id"] == "x1"
        out = {o["name"]: o for o in payload["outputs"]}
        assert out["label"]["data"] == label.tolist()
        np.testing.assert_array_equal(
            np.asarray(out["probabilities"]["data"], dtype=np.float32).reshape(6, 2), proba
        )
        v1 = httpx.post(f"{s.url}/v1/models/fraud:predict", json={"instances": rows.tolist()})
        assert [p["label"] for p in v1.json()["predictions"]] == label.tolist()
        metrics = httpx.get(f"{s.url}/metrics").text
        labels = 'model="fraud",outcome="success",protocol="v2",revision="7",version="7"'
        assert f"serinus_requests_total{{{labels}}} 1.0" in metrics
        assert "serinus_model_load_duration_seconds" in metrics


def test_tritonclient_works_unchanged(logreg_path: Path, tmp_path: Path) -> None:
    """NVIDIA's OIP v2 client, with its default binary tensors and with JSON tensors."""
    import tritonclient.http as triton

    rows = np.random.default_rng(4).normal(size=(3, 20)).astype(np.float32)
    label, proba = _ort(logreg_path, rows)
    with serve("--model", str(logreg_path), "--name", "fraud", log_dir=tmp_path) as s:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{s.port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fraud")
        meta = client.get_model_metadata("fraud")
        assert meta["inputs"][0] == {"name": "X", "datatype": "FP32", "shape": [-1, 20]}
        for binary in (True, False):
            tensor = triton.InferInput("X", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = [
                triton.InferRequestedOutput("label", binary_data=binary),
                triton.InferRequestedOutput("probabilities", binary_data=binary),
            ]
            result = client.infer("fraud", [tensor], outputs=outputs, request_id="t-1")
            np.testing.assert_array_equal(result.as_numpy("label"), label)
            np.testing.assert_array_equal(result.as_numpy("probabilities"), proba)
            assert result.get_response()["id"] == "t-1"
        client.close()


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(logreg_path: Path) -> Iterator[str]:
    handler = partial(_Files, directory=str(logreg_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_model_over_http_verified_by_sha256(
    file_server: str, logreg_path: Path, tmp_path: Path
) -> None:
    digest = hashlib.sha256(logreg_path.read_bytes()).hexdigest()
    uri = f"{file_server}/{logreg_path.name}"
    args = ("--model", uri, "--sha256", digest, "--name", "m", "--model-dir", str(tmp_path / "d"))
    with serve(*args, log_dir=tmp_path) as s:
        meta = httpx.get(f"{s.url}/v2/models/m").json()
        assert meta["parameters"]["sha256"] == digest
        kept = tmp_path / "d" / f"sha256-{digest}" / logreg_path.name  # kept by its digest
        assert kept.read_bytes() == logreg_path.read_bytes()


def test_a_model_that_fails_verification_stays_unready_and_says_why(
    file_server: str, logreg_path: Path, tmp_path: Path
) -> None:
    uri = f"{file_server}/{logreg_path.name}"
    with serve(
        "--model", uri, "--sha256", "0" * 64, "--name", "m", log_dir=tmp_path, ready=False
    ) as s:
        deadline = time.monotonic() + 20
        while httpx.get(f"{s.url}/v2/models/m").json().get("state") == "LOADING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        meta = httpx.get(f"{s.url}/v2/models/m")
        assert meta.status_code == 503
        assert meta.json()["state"] == "FAILED"
        assert "sha256 mismatch" in meta.json()["reason"]
        assert httpx.get(f"{s.url}/v2/health/ready").status_code == 400
        assert httpx.get(f"{s.url}/v2/health/live").status_code == 200
        infer = httpx.post(f"{s.url}/v2/models/m/infer", json=_v2(np.zeros((1, 20))))
        assert infer.status_code == 503
        assert s.process.poll() is None
        assert "sha256 mismatch" in s.logs()


def test_adaptive_batching_merges_concurrent_requests_with_identical_results(
    logreg_path: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    requests = [
        rng.normal(size=(int(rng.integers(1, 4)), 20)).astype(np.float32) for _ in range(48)
    ]

    async def fire(url: str) -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.post(f"{url}/v2/models/m/infer", json=_v2(x)) for x in requests)
            )
        assert all(r.status_code == 200 for r in responses)
        return [r.json()["outputs"] for r in responses]

    unbatched = ("--max-batch-size", "0")
    with serve("--model", str(logreg_path), "--name", "m", *unbatched, log_dir=tmp_path) as plain:
        expected = asyncio.run(fire(plain.url))
        assert _sample(httpx.get(f"{plain.url}/metrics").text, "serinus_batch_size_count") == len(
            requests
        )
    limits = ("--max-batch-size", "32", "--max-request-rows", "40")
    with serve("--model", str(logreg_path), "--name", "m", *limits, log_dir=tmp_path) as s:
        for _wave in range(5):
            assert asyncio.run(fire(s.url)) == expected
            metrics = httpx.get(f"{s.url}/metrics").text
            calls = _sample(metrics, "serinus_batch_size_count")
            rows = _sample(metrics, "serinus_batch_size_sum")
            if calls < rows / 1.5:
                break
        assert rows == (_wave + 1) * sum(len(x) for x in requests)
        assert calls < rows / 1.5, f"{calls} calls for {rows} rows: nothing was batched"
        # a request larger than a batch runs alone; one over the request limit is refused
        big = httpx.post(f"{s.url}/v2/models/m/infer", json=_v2(np.zeros((33, 20))))
        assert big.status_code == 200
        assert big.json()["outputs"][0]["shape"] == [33]
        too_big = httpx.post(f"{s.url}/v2/models/m/infer", json=_v2(np.zeros((41, 20))))
        assert too_big.status_code == 400
        assert "over the limit of 40" in too_big.json()["error"]


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_sigterm_drains_in_flight_requests_then_exits_cleanly(
    logreg_path: Path, tmp_path: Path
) -> None:
    args = ("--model", str(logreg_path), "--name", "m", "--drain-seconds", "1.5")
    with serve(*args, log_dir=tmp_path) as s:
        body = orjson.dumps(_v2(np.ones((2, 20), dtype=np.float32)))
        half = len(body) // 2
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:half]
        )
        time.sleep(0.2)
        s.process.send_signal(signal.SIGTERM)
        s.wait_until("/v2/health/ready", 400, timeout=5)
        # still serving while load balancers catch up
        assert httpx.post(f"{s.url}/v2/models/m/infer", content=body).status_code == 200
        time.sleep(2.0)  # past the drain window: no new connections
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{s.url}/v2/health/live", timeout=1)
        slow.sendall(body[half:])
        slow.settimeout(10)
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = slow.recv(65536)
            if not chunk:
                break
            response += chunk
        slow.close()
        assert response.startswith(b"HTTP/1.1 200"), response
        assert b'"outputs"' in response
        assert s.process.wait(timeout=10) == 0


def test_cli_explains_missing_arguments() -> None:
    result = subprocess.run([SERINUS, "serve", "--name", "m"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--model" in result.stderr


@pytest.fixture
def https_server(logreg_path: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTPS file server with a certificate from a throwaway CA (trustme)."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = partial(_Files, directory=str(logreg_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()


def test_model_over_https_with_a_private_ca(
    https_server: tuple[str, Path], logreg_path: Path, tmp_path: Path
) -> None:
    base, ca_file = https_server
    digest = hashlib.sha256(logreg_path.read_bytes()).hexdigest()
    uri = f"{base}/{logreg_path.name}"
    args = ("--model", uri, "--sha256", digest, "--name", "m", "--model-dir", str(tmp_path / "d"))
    with serve(*args, log_dir=tmp_path, env={"SSL_CERT_FILE": str(ca_file)}) as s:
        assert httpx.get(f"{s.url}/v2/models/m").json()["parameters"]["sha256"] == digest
    # without the CA the certificate is refused and the model never serves
    args = ("--model", uri, "--name", "m", "--model-dir", str(tmp_path / "e"))
    with serve(*args, log_dir=tmp_path, ready=False) as s:
        deadline = time.monotonic() + 20
        while (meta := httpx.get(f"{s.url}/v2/models/m").json()).get("state") == "LOADING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert meta["state"] == "FAILED"
        assert "CERTIFICATE_VERIFY_FAILED" in meta["reason"] or "certificate" in meta["reason"]

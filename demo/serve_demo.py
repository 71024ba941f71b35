"""`make demo` (for now): the model server end to end, on this machine.

Builds a fraud-style classifier (20 features, scikit-learn, exported to ONNX), serves it
with ``serinus serve``, and shows what a client and an SRE see: predictions over OIP v2 and
KServe v1, a clear error for a bad request, a tampered model that never takes traffic, and
the metrics. Exits non-zero if anything is not as expected. The rollout demo (canary,
shadow, blue-green) replaces this once ``serinus local`` lands.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

SERINUS = str(Path(sys.executable).with_name("serinus"))
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_model(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
    model = LogisticRegression(max_iter=500).fit(x, y)
    path.write_bytes(
        to_onnx(model, x[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    )
    return x[:4]


def start(*args: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SERINUS, "serve", *args, "--port", str(port), "--drain-seconds", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def wait_live(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url + "/v2/health/live", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} never came up")


def wait_settled(url: str, model: str) -> httpx.Response:
    for _ in range(300):
        meta = httpx.get(f"{url}/v2/models/{model}")
        if meta.status_code == 200 or meta.json().get("state") == "FAILED":
            return meta
        time.sleep(0.05)
    raise SystemExit("model never finished loading")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="serinus-demo-"))
    model = work / "fraud-v1.onnx"
    rows = build_model(model)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    print(f"built {model} (sha256 {digest[:12]}…)\n")

    print("1. serve it, verified by its sha256")
    proc, url = start("--model", str(model), "--sha256", digest, "--name", "fraud",
                      "--version", "v1", log=work / "good.log")  # fmt: skip
    try:
        wait_live(url)
        meta = wait_settled(url, "fraud").json()
        check(httpx.get(url + "/v2/health/ready").status_code == 200, "ready after load + warm-up")
        print(f"     inputs {meta['inputs']}\n     outputs {meta['outputs']}")
        tensor = {"name": "X", "shape": [4, 20], "datatype": "FP32", "data": rows.tolist()}
        body = {"id": "tx-1", "inputs": [tensor]}
        answer = httpx.post(f"{url}/v2/models/fraud/infer", json=body).json()
        labels = answer["outputs"][0]["data"]
        print(f"     OIP v2 labels for 4 transactions: {labels} (id echoed: {answer['id']})")
        check(answer["id"] == "tx-1" and len(labels) == 4, "OIP v2 inference")
        v1 = httpx.post(f"{url}/v1/models/fraud:predict", json={"instances": rows[:1].tolist()})
        print(f"     KServe v1: {v1.json()['predictions'][0]}")
        check(v1.json()["predictions"][0]["label"] == labels[0], "KServe v1 agrees with v2")

        print("\n2. a bad request gets a clear 4xx, never a 500")
        bad = {"inputs": [{"name": "X", "shape": [1, 19], "datatype": "FP32", "data": [0] * 19}]}
        response = httpx.post(f"{url}/v2/models/fraud/infer", json=bad)
        print(f"     {response.status_code} {response.json()['error']}")
        check(response.status_code == 400, "wrong shape is a 400 that names the dimension")

        print("\n3. what Prometheus scrapes")
        metrics = httpx.get(url + "/metrics").text
        for line in metrics.splitlines():
            if line.startswith(("serinus_requests_total", "serinus_model_ready")):
                print("     " + line)
        check('outcome="client_error"' in metrics, "the 400 is counted as a client error")
    finally:
        stop(proc)
    check(proc.returncode == 0, "SIGTERM: drained and exited 0")

    print("\n4. a tampered model never takes traffic")
    tampered = work / "fraud-v2.onnx"
    tampered.write_bytes(model.read_bytes() + b"\0")
    proc, url = start("--model", str(tampered), "--sha256", digest, "--name", "fraud",
                      log=work / "tampered.log")  # fmt: skip
    try:
        wait_live(url)
        meta = wait_settled(url, "fraud")
        print(f"     GET /v2/models/fraud -> {meta.status_code} {meta.json()['reason']}")
        check(meta.json()["state"] == "FAILED", "checksum mismatch keeps the model FAILED")
        check(httpx.get(url + "/v2/health/ready").status_code == 400, "and the pod unready")
    finally:
        stop(proc)

    print(f"\n{'all good' if not failures else 'FAILED: ' + '; '.join(failures)} (logs in {work})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

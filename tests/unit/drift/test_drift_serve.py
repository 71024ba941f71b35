"""Drift and feedback inside the serving app, in-process through its real ASGI entry point."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serinus_serving.drift.build import ProfileOptions, build_profile
from serinus_serving.drift.config import DriftSettings
from serinus_serving.drift.profile import dump_profile
from support.inprocess import make_app, running
from unit.drift.kit import regressor

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory, logreg_path: Path) -> Path:
    folder = tmp_path_factory.mktemp("profile")
    np.save(
        folder / "train.npy", np.random.default_rng(0).normal(size=(5000, 20)).astype(np.float32)
    )
    profile = build_profile(str(logreg_path), folder / "train.npy", ProfileOptions())
    path = folder / "profile.json"
    path.write_bytes(dump_profile(profile))
    return path


def body(rows: np.ndarray, request_id: str | None = None) -> bytes:
    doc: dict[str, object] = {
        "inputs": [
            {"name": "X", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
        ]
    }
    if request_id is not None:
        doc["id"] = request_id
    return orjson.dumps(doc)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            extra = tuple(
                sorted(
                    (k, v) for k, v in s.labels.items() if k not in ("model", "version", "revision")
                )
            )
            out[s.name, extra] = s.value
    return out


def test_drift_metrics_appear_once_the_window_has_enough_rows(
    logreg_path: Path, profile_path: Path
) -> None:
    settings = DriftSettings(profile=str(profile_path), window=400, min_samples=200)
    app = make_app(logreg_path, drift=settings, revision="r1")
    rng = np.random.default_rng(1)
    with running(app) as client:
        first = client.get("/metrics").text
        assert 'serinus_drift_window_samples{model="m",revision="r1",version="1"} 0.0' in first
        assert "serinus_drift_score{" not in first
        for _ in range(25):
            assert (
                client.post(
                    "/v2/models/m/infer", content=body(rng.normal(size=(8, 20)).astype(np.float32))
                ).status_code
                == 200
            )
        time.sleep(1.1)  # past the snapshot cache
        seen = samples(client.get("/metrics").text)
        assert seen["serinus_drift_window_samples", ()] == 200
        assert seen["serinus_drift_score", ()] < 0.2
        assert seen["serinus_drift_drifted_features_ratio", ()] == 0
        assert seen["serinus_drift_feature_psi", (("feature", "X[0]"),)] < 0.2
        assert ("serinus_drift_feature_ks", (("feature", "X[19]"),)) in seen
        assert ("serinus_drift_prediction_psi", (("output", "label"),)) in seen
        assert ("serinus_drift_prediction_js", (("output", "label"),)) in seen
        assert ("serinus_drift_prediction_ks", (("output", "probabilities[1]"),)) in seen

        shifted = rng.normal(size=(400, 20)).astype(np.float32)
        shifted[:, 3] += 2
        client.post("/v2/models/m/infer", content=body(shifted))
        time.sleep(1.1)
        seen = samples(client.get("/metrics").text)
        assert seen["serinus_drift_score", ()] > 0.2
        assert (
            seen["serinus_drift_score", ()]
            == seen["serinus_drift_feature_psi", (("feature", "X[3]"),)]
        )
        assert seen["serinus_drift_drifted_features_ratio", ()] == pytest.approx(1 / 20)


def test_v1_requests_count_too(logreg_path: Path, profile_path: Path) -> None:
    app = make_app(logreg_path, drift=DriftSettings(profile=str(profile_path), min_samples=1))
    with running(app) as client:
        rows = np.random.default_rng(2).normal(size=(5, 20)).tolist()
        assert client.post("/v1/models/m:predict", json={"instances": rows}).status_code == 200
        assert app.dataplane.drift_monitor is not None
        assert app.dataplane.drift_monitor.snapshot().window_samples == 5


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p, tmp: str(tmp / "missing.json"), "cannot fetch the drift profile"),
        (lambda p, tmp: "ftp://x/p.json", "unsupported model URI scheme"),
        (
            lambda p, tmp: _write(
                tmp,
                p.read_text()
                .replace('"sha256":"', '"sha256":"0', 1)
                .replace('","inputs"', '","inputs"', 1),
                shorten=True,
            ),
            "built for the model with sha256",
        ),
        (
            lambda p, tmp: _write(tmp, p.read_text().replace('"input":"X"', '"input":"Z"', 1)),
            "reads input 'Z', which the model does not have",
        ),
        (
            lambda p, tmp: _write(tmp, p.read_text().replace('"index":0,', '"index":25,', 1)),
            "column 25 does not exist in shape [-1, 20]",
        ),
        (
            lambda p, tmp: _write(
                tmp, p.read_text().replace('"schemaVersion": 1', '"schemaVersion": 9')
            ),
            "schemaVersion: 9 is not supported",
        ),
    ],
)
def test_a_bad_profile_keeps_the_server_unready_with_the_reason(
    tmp_path: Path, logreg_path: Path, profile_path: Path, make: object, reason: str
) -> None:
    uri = make(profile_path, tmp_path)  # type: ignore[operator]
    app = make_app(logreg_path, drift=DriftSettings(profile=uri))
    with running(app, wait_ready=False) as client:
        assert client.get("/v2/health/ready").status_code == 400
        meta = client.get("/v2/models/m")
        assert meta.status_code == 503
        assert meta.json()["state"] == "FAILED"
        assert "drift profile" in meta.json()["reason"]
        assert reason in meta.json()["reason"]
        infer = client.post("/v2/models/m/infer", content=body(np.zeros((1, 20), np.float32)))
        assert infer.status_code == 503


def _write(tmp: Path, text: str, *, shorten: bool = False) -> str:
    if shorten:  # keep 64 hex digits after prefixing a 0
        start = text.index('"sha256":"') + len('"sha256":"')
        text = text[:start] + text[start : start + 64] + text[start + 65 :]
    path = tmp / "bad.json"
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------- feedback
def test_feedback_gives_live_accuracy(logreg_path: Path) -> None:
    app = make_app(logreg_path)
    rng = np.random.default_rng(3)
    with running(app) as client:
        truth = {}
        for i in range(20):
            response = client.post(
                "/v2/models/m/infer",
                content=body(rng.normal(size=(1, 20)).astype(np.float32), f"req-{i}"),
            )
            assert response.status_code == 200
            label = response.json()["outputs"][0]["data"][0]
            truth[f"req-{i}"] = label if i < 15 else 1 - label  # 15 of 20 right
        labels = [{"id": k, "label": v} for k, v in truth.items()]
        response = client.post(
            "/v2/models/m/feedback", json={"labels": [*labels, {"id": "nope", "label": 1}]}
        )
        assert response.status_code == 200
        assert response.json() == {"matched": 20, "unknown_id": 1, "expired": 0, "duplicate": 0}
        again = client.post("/v2/models/m/versions/1/feedback", json={"id": "req-0", "label": 0})
        assert again.json()["duplicate"] == 1
        seen = samples(client.get("/metrics").text)
        assert seen["serinus_live_accuracy", ()] == 0.75
        assert seen["serinus_live_window_samples", ()] == 20
        assert seen["serinus_feedback_labels_total", (("result", "matched"),)] == 20
        assert seen["serinus_feedback_labels_total", (("result", "unknown_id"),)] == 1
        assert seen["serinus_feedback_labels_total", (("result", "duplicate"),)] == 1
        assert seen["serinus_feedback_labels_total", (("result", "expired"),)] == 0
        assert "serinus_live_error{" not in client.get("/metrics").text


def test_feedback_expiry_and_bounded_memory(logreg_path: Path) -> None:
    settings = DriftSettings(feedback_max_ids=3, feedback_ttl_seconds=0.5)
    app = make_app(logreg_path, drift=settings)
    row = np.zeros((1, 20), np.float32)
    with running(app) as client:
        for i in range(5):
            client.post("/v2/models/m/infer", content=body(row, f"r{i}"))
        assert samples(client.get("/metrics").text)["serinus_feedback_tracked_ids", ()] == 3
        time.sleep(0.6)
        client.post("/v2/models/m/infer", content=body(row, "fresh"))
        result = client.post(
            "/v2/models/m/feedback",
            json={
                "labels": [
                    {"id": "r0", "label": 0},
                    {"id": "r4", "label": 0},
                    {"id": "fresh", "label": 0},
                ]
            },
        ).json()
        assert result == {"matched": 1, "unknown_id": 1, "expired": 1, "duplicate": 0}


def test_feedback_errors_are_4xx_with_a_message(logreg_path: Path) -> None:
    app = make_app(logreg_path, max_body_bytes=2000)
    with running(app) as client:
        client.post("/v2/models/m/infer", content=body(np.zeros((2, 20), np.float32), "two"))
        cases = [
            ("/v2/models/m/feedback", b"{", 400, "not valid JSON"),
            (
                "/v2/models/m/feedback",
                b'{"labels": [{"id": "two", "label": 1}]}',
                400,
                "the request had 2 row(s)",
            ),
            (
                "/v2/models/m/feedback",
                b'{"labels": [{"id": "two", "label": ["a", "b"]}]}',
                400,
                "predicts class numbers",
            ),
            ("/v2/models/other/feedback", b'{"id": "two", "label": 1}', 404, "unknown model"),
            ("/v2/models/m/versions/9/feedback", b'{"id": "two", "label": 1}', 404, "no version"),
            ("/v2/models/m/feedback", b"x" * 3000, 413, "larger than the limit"),
        ]
        for path, content, status, message in cases:
            response = client.post(path, content=content)
            assert response.status_code == status, (path, content[:40], response.text)
            assert message in response.json()["error"]
        # nothing was recorded by the refused requests
        ok = client.post("/v2/models/m/feedback", json={"id": "two", "label": [1, 0]})
        assert ok.json()["matched"] == 1


def test_feedback_on_a_regressor_gives_live_error(tmp_path: Path) -> None:
    model, x = regressor(tmp_path / "reg.onnx")
    app = make_app(model)
    with running(app) as client:
        doc = {
            "id": "a",
            "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": x[:2].tolist()}],
        }
        predicted = client.post("/v2/models/m/infer", json=doc).json()["outputs"][0]["data"]
        client.post(
            "/v2/models/m/feedback", json={"id": "a", "label": [predicted[0] + 1, predicted[1] - 3]}
        )
        seen = samples(client.get("/metrics").text)
        assert seen["serinus_live_error", ()] == pytest.approx(2.0, rel=1e-5)
        assert "serinus_live_accuracy{" not in client.get("/metrics").text


def test_feedback_off(logreg_path: Path) -> None:
    app = make_app(logreg_path, drift=DriftSettings(feedback_max_ids=0))
    with running(app) as client:
        response = client.post("/v2/models/m/feedback", json={"id": "a", "label": 1})
        assert response.status_code == 400
        assert "feedback is off" in response.json()["error"]
        assert "serinus_feedback" not in client.get("/metrics").text


def test_serve_flags_reach_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from serinus_operator.cli import build_parser
    from serinus_serving.drift.cli import serve_settings

    base = ["serve", "--model", "m.onnx", "--name", "m"]
    args = build_parser().parse_args(
        [*base, "--profile", "p.json", "--drift-window", "200", "--feedback-max-ids", "0"]
    )
    settings = serve_settings(args)
    assert settings.profile == "p.json"
    assert settings.window == 200
    assert settings.min_samples == 200  # the default 300 is capped at the window
    assert settings.feedback_max_ids == 0
    assert serve_settings(build_parser().parse_args(base)) == DriftSettings()
    with pytest.raises(SystemExit) as caught:
        serve_settings(build_parser().parse_args([*base, "--drift-window-seconds", "0"]))
    assert caught.value.code == 2
    assert "--drift-window-seconds must be > 0" in capsys.readouterr().err


def test_batched_requests_are_recorded_once_each(logreg_path: Path, profile_path: Path) -> None:
    """Concurrent requests merged by the batcher enter the window as one block per batch."""
    from serinus_serving.app import create_app
    from serinus_serving.runtime.onnx import OnnxRuntime
    from serinus_serving.settings import ServeSettings

    settings = ServeSettings(
        model_uri=str(logreg_path), name="m", drift=DriftSettings(profile=str(profile_path))
    )
    app = create_app(settings, OnnxRuntime(settings.model_uri))
    rows = np.random.default_rng(4).normal(size=(60, 20)).astype(np.float32)

    async def one(row: np.ndarray) -> int:
        scope = {"type": "http", "path": "/v2/models/m/infer", "method": "POST", "headers": []}
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body(row.reshape(1, 20)), "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])  # type: ignore[call-overload]

    async def scenario() -> list[int]:
        await app.load()
        return await asyncio.gather(*(one(r) for r in rows))

    assert asyncio.run(scenario()) == [200] * 60
    assert app.dataplane.batcher is not None and app.dataplane._batches_recorded
    assert app.metrics.batch_rows.count < 60  # some requests did share a runtime call
    monitor = app.dataplane.drift_monitor
    assert monitor is not None
    monitor.fold()
    view = monitor.window.view(time.monotonic())
    assert view.rows == 60
    assert sorted(view.numeric[:, 0].tolist()) == sorted(rows[:, 0].astype(np.float64).tolist())

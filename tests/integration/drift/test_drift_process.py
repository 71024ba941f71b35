"""Drift end to end: `serinus profile`, then a real `serinus serve --profile` scraped by a
real Prometheus, judged by the built-in `drift` analysis check with its default bound."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from serinus_operator.analysis.providers.prometheus import PrometheusConfig, PrometheusProvider
from serinus_operator.analysis.run import measure, variables_for
from serinus_operator.analysis.verdict import MetricResult, Verdict
from serinus_operator.api import AnalysisSpec, MetricSpec
from support.prometheus import RunningPrometheus, prometheus
from support.serve import SERINUS, ServeProcess, serve

pytestmark = pytest.mark.integration

WINDOW = 500
SPEC = AnalysisSpec(metrics=(MetricSpec("drift"),), interval=timedelta(seconds=5))
VARIABLES = variables_for(namespace="ml", name="fraud", stable="r0", candidate="r1", analysis=SPEC)


@dataclass
class Setup:
    server: ServeProcess
    prom: RunningPrometheus
    train_std: np.ndarray


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, logreg_path: Path) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("drift")
    train = np.random.default_rng(0).normal(size=(5000, 20)).astype(np.float32)
    np.save(work / "train.npy", train)
    profile = work / "profile.json"
    subprocess.run(
        [SERINUS, "profile", "--model", str(logreg_path), "--data", str(work / "train.npy"),
         "-o", str(profile)],
        check=True, capture_output=True,
    )  # fmt: skip
    args = (
        "--model", str(logreg_path), "--name", "fraud", "--version", "v7", "--revision", "r1",
        "--profile", profile.as_uri(), "--drift-window", str(WINDOW), "--drift-min-samples", "200",
        "--drain-seconds", "0",
    )  # fmt: skip
    with (
        serve(*args, log_dir=work) as server,
        prometheus([f"127.0.0.1:{server.port}"], workdir=work, labels={"namespace": "ml"}) as prom,
    ):
        yield Setup(server, prom, train.std(axis=0))


def send(server: ServeProcess, rows: np.ndarray, *, batch: int) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            body = {
                "inputs": [
                    {
                        "name": "X",
                        "shape": list(chunk.shape),
                        "datatype": "FP32",
                        "data": chunk.ravel().tolist(),
                    }
                ]
            }
            response = client.post("/v2/models/fraud/infer", content=orjson.dumps(body))
            assert response.status_code == 200, response.text


def drift_check(url: str) -> MetricResult:
    """One evaluation of the built-in `drift` check, as the operator runs it."""

    async def run() -> MetricResult:
        provider = PrometheusProvider(PrometheusConfig(url))
        try:
            m = await measure(SPEC, provider, variables=VARIABLES, at=datetime.now(UTC))
        finally:
            await provider.aclose()
        (result,) = m.results
        return result

    return asyncio.run(run())


def wait_for(
    url: str, what: str, accept: Callable[[MetricResult], bool], timeout: float = 40.0
) -> MetricResult:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = drift_check(url)
        if accept(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: the drift check never got there; last {last}")


def test_training_traffic_passes_and_a_2_sigma_shift_fails_within_one_window(setup: Setup) -> None:
    url = setup.prom.url
    rng = np.random.default_rng(1)
    # Nothing in the window yet: no data, never a pass.
    assert drift_check(url).verdict is Verdict.NO_DATA

    send(setup.server, rng.normal(size=(WINDOW, 20)).astype(np.float32), batch=1)
    passed = wait_for(url, "training traffic", lambda r: r.verdict is not Verdict.NO_DATA)
    assert passed.verdict is Verdict.PASS, passed
    assert passed.value is not None and passed.value < 0.1

    shifted = rng.normal(size=(WINDOW, 20)).astype(np.float32)
    shifted[:, 5] += 2 * setup.train_std[5]
    send(setup.server, shifted, batch=5)  # exactly one window of rows
    failed = wait_for(url, "shifted traffic", lambda r: r.verdict is Verdict.FAIL)
    assert failed.value is not None and failed.value > 0.2
    assert failed.threshold is not None

    metrics = httpx.get(setup.server.url + "/metrics").text
    assert (
        'serinus_drift_feature_psi{feature="X[5]",model="fraud",revision="r1",version="v7"}'
        in metrics
    )
    ratio = [
        line
        for line in metrics.splitlines()
        if line.startswith("serinus_drift_drifted_features_ratio{")
    ]
    assert ratio and float(ratio[0].rsplit(" ", 1)[1]) == pytest.approx(1 / 20)


def test_the_drift_series_carry_the_prometheus_target_labels(setup: Setup) -> None:
    response = httpx.get(
        setup.prom.url + "/api/v1/query",
        params={
            "query": 'serinus_drift_window_samples{namespace="ml",model="fraud",revision="r1"}'
        },
    ).json()
    (series,) = response["data"]["result"]
    assert series["metric"]["version"] == "v7"
    assert float(series["value"][1]) >= 0

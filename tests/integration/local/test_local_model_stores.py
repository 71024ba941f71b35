"""Models from object storage and a model registry, rolled out by ``serinus local up``.

Everything is real and on 127.0.0.1: moto's S3 server checking signatures (the key is only
in ``spec.serving.env``, as a Secret's keys would be), a real ``mlflow server`` (SQLite,
artifacts behind its proxy), and ``serinus local up`` with its ``serinus serve`` revisions,
``serinus router`` and Prometheus. The ONNX models are made here (``y = x + offset``, one
offset per model, so an answer says which model gave it); nothing is downloaded.

It proves, through those processes:

1. a first revision fetched from ``s3://`` with the credentials of ``spec.serving.env``
   becomes stable and answers through the router;
2. ``models:/fraud@champion`` (the tracking server in ``spec.serving.env`` too) starts a
   rollout whose candidate is pinned: its template says ``models:/fraud/1``, not the alias,
   and it is promoted;
3. asking the registry again (every 5 s) and getting the same version starts nothing;
4. moving the alias to version 2 starts a rollout to ``models:/fraud/2`` on its own (the
   spec does not change) and, once promoted, the answers are version 2's.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from support.local_run import wait_status as wait_for
from support.serve import free_port
from support.stores import Mlflow, MotoS3, mlflow, moto_s3

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "demo"))

from serinus_demo.localup import LocalUp  # noqa: E402

pytestmark = pytest.mark.integration

NAME, NAMESPACE = "fraud", "stores"
MLMODEL = b"flavors:\n  onnx:\n    data: model.onnx\n"
#: What ``serinus local up`` waits between two asks of the registry (UpOptions).
REFRESH_SECONDS = 5.0
#: The offset each model adds: an answer names its model.
S3_OFFSET, V1_OFFSET, V2_OFFSET = 1.0, 10.0, 100.0
X = [1.0, 2.0]


def offset_model(offset: float) -> bytes:
    """``y = x + offset`` on a batch of two features (an ONNX model built here)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    c = helper.make_tensor("offset", TensorProto.FLOAT, [], [offset])
    graph = helper.make_graph([helper.make_node("Add", ["x", "offset"], ["y"])], "o", [x], [y], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def manifest(uri: str, version: str, env: dict[str, str]) -> str:
    """The ModelDeployment: a canary without analysis, so a rollout takes seconds."""
    doc = {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": uri, "version": version},
            "serving": {"env": [{"name": k, "value": v} for k, v in env.items()]},
            "strategy": {
                "type": "Canary",
                "scaleDownDelay": "10s",
                "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]},
            },
            "progressDeadline": "1m",
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def uri_of(entry: dict[str, Any] | None) -> str | None:
    return ((entry or {}).get("template") or {}).get("model", {}).get("uri")


def stable_at(uri: str) -> Callable[[dict[str, Any]], bool]:
    def done(status: dict[str, Any]) -> bool:
        return (
            status.get("phase") == "Stable"
            and status.get("candidate") is None
            and uri_of(status.get("stable")) == uri
        )

    return done


def infer(run: LocalUp) -> tuple[str, list[float]]:
    """One request through the router: (the revision that answered, its output)."""
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": X}]}
    response = httpx.post(f"{run.url}/v2/models/{NAME}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    return response.headers["x-serinus-revision"], [float(v) for v in output["data"]]


def router_ready(run: LocalUp, timeout: float = 30.0) -> None:
    """The router is started with the first routing table; wait for its readiness probe."""
    deadline = time.monotonic() + timeout
    while True:
        run.check_running()
        rows = run.info().get("processes") or []
        if any(r.get("role") == "router" and r.get("state") == "Ready" for r in rows):
            return
        assert time.monotonic() < deadline, f"the router never became ready: {rows}"
        time.sleep(0.1)


def answers_from(run: LocalUp, revision: str) -> list[float]:
    """The output once the router answers from ``revision``: status is written before the
    router has re-read its table (it does within 200 ms), so the first answers after a
    promotion may still be the old revision's; any answer from ``revision`` is returned."""
    deadline = time.monotonic() + 5
    while True:
        answered, output = infer(run)
        if answered == revision:
            return output
        assert time.monotonic() < deadline, f"{answered} still answers, not {revision}"
        time.sleep(0.05)


def rollouts(run: LocalUp) -> int:
    return sum(1 for e in run.events() if e.get("reason") == "RolloutStarted")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MotoS3, Mlflow]]:
    (tmp_path / "s3.onnx").write_bytes(offset_model(S3_OFFSET))
    with (
        moto_s3({"models/fraud/model.onnx": tmp_path / "s3.onnx"}, tmp_path) as s3,
        mlflow(tmp_path) as registry,
    ):
        yield s3, registry


def test_s3_then_an_mlflow_alias_roll_out_pinned_and_follow_the_alias(
    stores: tuple[MotoS3, Mlflow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, registry = stores
    for key in [*s3.env(), "AWS_SESSION_TOKEN", "AWS_PROFILE", "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(key, raising=False)  # spec.serving.env is the only way in
    v1 = registry.register(NAME, {"MLmodel": MLMODEL, "model.onnx": offset_model(V1_OFFSET)})
    v2 = registry.register(NAME, {"MLmodel": MLMODEL, "model.onnx": offset_model(V2_OFFSET)})
    assert (v1, v2) == ("1", "2")
    registry.alias(NAME, "champion", v1)

    run = LocalUp(
        tmp_path / "fraud.yaml",
        state_dir=tmp_path / "state",
        port=free_port(),
        namespace=NAMESPACE,
        name=NAME,
    )
    s3_uri = s3.uri("models/fraud/model.onnx")
    run.write(manifest(s3_uri, "s3", s3.env()))
    run.start()
    try:
        # 1. From S3, with the key of spec.serving.env only: stable, answering.
        status = wait_for(run, stable_at(s3_uri), "the S3 model stable")
        first = status["stable"]["revision"]
        router_ready(run)
        assert answers_from(run, first) == [x + S3_OFFSET for x in X]

        # 2. The alias: a rollout whose candidate is pinned to the version it names.
        candidates: dict[str, str | None] = {}

        def note(status: dict[str, Any]) -> None:
            candidate = status.get("candidate")
            if candidate:
                candidates[candidate["revision"]] = uri_of(candidate)

        registry_env = {"MLFLOW_TRACKING_URI": registry.url}
        run.write(manifest(f"models:/{NAME}@champion", "champion", registry_env))
        status = wait_for(run, stable_at(f"models:/{NAME}/1"), "version 1 promoted", seen=note)
        second = status["stable"]["revision"]
        assert candidates == {second: f"models:/{NAME}/1"}  # seen as candidate, pinned
        assert status["history"][-1]["revision"] == second
        assert status["history"][-1]["outcome"] == "Promoted"
        assert answers_from(run, second) == [x + V1_OFFSET for x in X]

        # 3. Asked again, the same version: nothing starts. Wait for two more asks (the
        # tracking server's access log) and at least two refresh periods, watching status.
        started, history = rollouts(run), len(status["history"])
        asked = asks(tmp_path)
        quiet = time.monotonic() + 2 * REFRESH_SECONDS + 1
        deadline = quiet + 4 * REFRESH_SECONDS
        while time.monotonic() < quiet or asks(tmp_path) < asked + 2:
            assert time.monotonic() < deadline, "the registry was not asked again"
            run.check_running()
            status = run.status()
            assert status.get("candidate") is None, status
            assert status["stable"]["revision"] == second
            time.sleep(0.2)
        assert rollouts(run) == started
        assert len(run.status()["history"]) == history

        # 4. The alias moves to version 2: a rollout on its own, promoted, answering.
        candidates.clear()
        registry.alias(NAME, "champion", v2)
        status = wait_for(run, stable_at(f"models:/{NAME}/2"), "version 2 promoted", seen=note)
        third = status["stable"]["revision"]
        assert third not in (first, second)
        assert candidates == {third: f"models:/{NAME}/2"}
        assert status["history"][-1]["revision"] == third
        assert status["history"][-1]["outcome"] == "Promoted"
        assert rollouts(run) == started + 1
        assert answers_from(run, third) == [x + V2_OFFSET for x in X]
        assert run.object()["spec"]["model"]["uri"] == f"models:/{NAME}@champion"  # unedited
    except BaseException:
        print(run.output())
        raise
    finally:
        left = run.stop()
    assert left == [], f"processes left behind: {left}"


#: A GET is the pinner asking (the test's own alias moves are POSTs; pods fetch by version).
_ALIAS_ASK = re.compile(r'"GET /api/2\.0/mlflow/registered-models/alias\?')


def asks(directory: Path) -> int:
    """How many times the tracking server was asked what an alias names (its access log)."""
    log = directory / "mlflow.log"
    return len(_ALIAS_ASK.findall(log.read_text(errors="replace"))) if log.exists() else 0

"""``serinus router`` as a real process in front of real ``serinus serve`` revisions."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serinus_serving.router.shadow_protocol import STALL_SECONDS
from support.serve import ServeProcess, free_port, router

pytestmark = pytest.mark.integration

N_FEATURES = 4


def write_table(path: Path, revisions: dict[str, ServeProcess], **spec: object) -> None:
    weights = spec.pop("weights", {"old": 100, "new": 0})
    assert isinstance(weights, dict)
    body = {
        "model": "m",
        "revisions": {
            name: {"url": server.url, "weight": weights.get(name, 0)}
            for name, server in revisions.items()
        },
        **spec,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)  # atomic, as a ConfigMap update is


def infer_body(x0: float) -> dict[str, object]:
    row = [x0] + [0.0] * (N_FEATURES - 1)
    return {"inputs": [{"name": "X", "shape": [1, N_FEATURES], "datatype": "FP32", "data": row}]}


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_shadow_worker(client: httpx.Client, *, timeout: float = 30.0) -> None:
    """The router serves at once; copies are compared once its shadow worker is up."""
    deadline = time.monotonic() + timeout
    while metric(client.get("/metrics").text, "serinus_shadow_worker_up") != 1:
        assert time.monotonic() < deadline, "the shadow worker never came up"
        time.sleep(0.05)


def test_split_follows_the_weights(revisions: dict[str, ServeProcess], tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 70, "new": 30})
    n = 2000
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        seen = Counter()
        for i in range(n):
            response = client.post("/v2/models/m/infer", json=infer_body(i / n))
            assert response.status_code == 200
            seen[response.headers["x-serinus-revision"]] += 1
        sigma = math.sqrt(n * 0.3 * 0.7)
        assert abs(seen["new"] - 0.3 * n) < 4.5 * sigma, seen
        # pinning, for previews, whatever the weights
        pinned = client.post(
            "/v2/models/m/infer", json=infer_body(0.6), headers={"x-serinus-revision": "new"}
        )
        assert pinned.headers["x-serinus-revision"] == "new"
        assert pinned.json()["outputs"][0]["data"] == [0]  # new: 0.6 is not over 0.7
        unknown = client.post(
            "/v2/models/m/infer", json=infer_body(0.6), headers={"x-serinus-revision": "zz"}
        )
        assert unknown.status_code == 400 and "not one of" in unknown.json()["error"]
        # OIP metadata and health pass through unchanged
        meta = client.get("/v2/models/m")
        assert meta.json()["inputs"][0]["shape"] == [-1, N_FEATURES]
        seen[meta.headers["x-serinus-revision"]] += 1
        metrics = client.get("/metrics").text
        assert (
            metric(metrics, "serinus_router_requests_total", revision="new", code="200")
            == seen["new"] + 1
        )


def test_sticky_users_see_one_revision(revisions: dict[str, ServeProcess], tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 50, "new": 50}, stickiness={"header": "x-user"})
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        for user in ("ada", "grace", "linus", "barbara"):
            served = {
                client.post(
                    "/v2/models/m/infer", json=infer_body(0.1), headers={"x-user": user}
                ).headers["x-serinus-revision"]
                for _ in range(20)
            }
            assert len(served) == 1, (user, served)


def test_weight_changes_under_load_lose_no_request(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0})
    failures: list[str] = []
    served: Counter[str] = Counter()
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post("/v2/models/m/infer", json=infer_body(0.3))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                served[response.headers.get("x-serinus-revision", "?")] += 1

    with router(routes, log_dir=tmp_path) as r:
        threads = [threading.Thread(target=load, args=(r.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for weights in ({"old": 90, "new": 10}, {"old": 50, "new": 50}, {"old": 0, "new": 100},
                            {"old": 100, "new": 0}, {"old": 0, "new": 100}):  # fmt: skip
                time.sleep(0.4)
                write_table(routes, revisions, weights=weights)
            # the last flip (all to new) applies within a second
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                last = httpx.post(f"{r.url}/v2/models/m/infer", json=infer_body(0.3))
                if last.headers["x-serinus-revision"] == "new":
                    break
            settled = [
                httpx.post(f"{r.url}/v2/models/m/infer", json=infer_body(0.3)).headers[
                    "x-serinus-revision"
                ]
                for _ in range(20)
            ]
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert served["old"] > 0 and served["new"] > 0
    assert set(settled) == {"new"}


def test_invalid_table_is_rejected_and_the_last_good_one_kept(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0})
    with router(routes, log_dir=tmp_path) as r:
        routes.write_text('{"model": "m", "revisions": {}}')
        deadline = time.monotonic() + 5
        while "revisions must list at least one revision" not in r.logs():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (
            'serinus_router_table_reloads_total{result="rejected"}'
            in httpx.get(f"{r.url}/metrics").text
        )
        response = httpx.post(f"{r.url}/v2/models/m/infer", json=infer_body(0.3))
        assert response.status_code == 200 and response.headers["x-serinus-revision"] == "old"


def _source_lines(logs: str, path: Path, *levels: str) -> list[str]:
    """The file source's log lines about ``path`` at ``levels``."""
    return [
        line
        for line in logs.splitlines()
        if str(path) in line
        and any(f" {level} serinus_serving.router.sources " in line for level in levels)
    ]


def test_a_deleted_routes_file_is_reported_once_and_the_last_table_kept(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0})
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        routes.unlink()
        deadline = time.monotonic() + 5
        while not _source_lines(r.logs(), routes, "WARNING", "ERROR"):
            assert time.monotonic() < deadline, r.logs()
            time.sleep(0.05)
        # 2 s (10 polls) without a file: every request is served by the last good table
        until = time.monotonic() + 2
        while time.monotonic() < until:
            response = client.post("/v2/models/m/infer", json=infer_body(0.3))
            assert response.status_code == 200 and response.headers["x-serinus-revision"] == "old"
        assert client.get("/-/ready").status_code == 200
        write_table(routes, revisions, weights={"old": 0, "new": 100})
        deadline = time.monotonic() + 5
        while client.get("/-/routes").json()["weights"] != {"old": 0, "new": 100}:
            assert time.monotonic() < deadline, r.logs()
            time.sleep(0.05)
        text = client.get("/metrics").text
    logs = r.logs()
    missing = _source_lines(logs, routes, "WARNING", "ERROR")
    assert len(missing) == 1 and "does not exist" in missing[0], missing
    back = _source_lines(logs, routes, "INFO")
    assert len(back) == 1 and "readable again" in back[0], back
    assert metric(text, "serinus_router_table_reloads_total", result="rejected") == 1
    assert metric(text, "serinus_router_table_reloads_total", result="applied") == 2


def test_shadow_disagreement_is_measured_at_its_true_fraction(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0},
                shadow={"revision": "new", "percent": 100})  # fmt: skip
    n = 1000
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        wait_for_shadow_worker(client)
        for i in range(n):
            response = client.post("/v2/models/m/infer", json=infer_body((i + 0.5) / n))
            assert response.headers["x-serinus-revision"] == "old"
        deadline = time.monotonic() + 10
        while True:
            text = client.get("/metrics").text
            done = sum(
                metric(text, "serinus_shadow_requests_total", result=result)
                for result in ("agree", "disagree", "error", "dropped")
            )
            if done >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    labels = {"primary": "old", "shadow": "new"}
    disagree = metric(text, "serinus_shadow_requests_total", result="disagree", **labels)
    agree = metric(text, "serinus_shadow_requests_total", result="agree", **labels)
    dropped = metric(text, "serinus_shadow_requests_total", result="dropped", **labels)
    assert agree + disagree + dropped == n
    # inputs are x0 = (i + 0.5) / n; the models disagree for 0.5 < x0 <= 0.7: 200 of them
    assert disagree / (agree + disagree) == pytest.approx(0.2, abs=0.01)
    assert metric(text, "serinus_shadow_difference_count", **labels) == agree + disagree


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_dead_or_hung_shadow_never_fails_the_primary(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    dead = f"http://127.0.0.1:{free_port()}"
    with black_hole() as hung:
        for shadow_url in (dead, hung):
            table = {
                "model": "m",
                "timeoutSeconds": 3,
                "revisions": {
                    "old": {"url": revisions["old"].url, "weight": 100},
                    "shadow": {"url": shadow_url, "weight": 0},
                },
                "shadow": {"revision": "shadow", "percent": 100, "maxConcurrency": 4},
            }
            routes.write_text(json.dumps(table))
            with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
                wait_for_shadow_worker(client)
                for _ in range(30):
                    response = client.post("/v2/models/m/infer", json=infer_body(0.9))
                    assert response.status_code == 200
                    assert response.headers["x-serinus-revision"] == "old"
                # The shadow worker reports its totals a moment later.
                deadline = time.monotonic() + 10
                while True:
                    text = client.get("/metrics").text
                    errors = metric(text, "serinus_shadow_requests_total", result="error")
                    dropped = metric(text, "serinus_shadow_requests_total", result="dropped")
                    inflight = metric(text, "serinus_shadow_inflight")
                    if errors + dropped >= 30 or (shadow_url == hung and inflight == 4):
                        break
                    assert time.monotonic() < deadline, text
                    time.sleep(0.05)
            if shadow_url == dead:  # refused at once: errors
                assert errors + dropped == 30 and errors >= 4
            else:  # hung: 4 copies wait for it, the rest queue (bounded) behind them
                assert inflight == 4 and errors + dropped == 0


def test_dead_primary_is_a_503_with_a_json_error(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    dead = f"http://127.0.0.1:{free_port()}"
    routes.write_text(json.dumps({"model": "m", "revisions": {"x": {"url": dead, "weight": 100}}}))
    with router(routes, log_dir=tmp_path) as r:
        response = httpx.post(f"{r.url}/v2/models/m/infer", json=infer_body(0.1))
        assert response.status_code == 503
        assert "revision x failed" in response.json()["error"]
        text = httpx.get(f"{r.url}/metrics").text
        assert metric(text, "serinus_router_upstream_errors_total", kind="connect") == 1


def _shadow_worker_of(router_pid: int, *, timeout: float = 15.0) -> int:
    """The pid of the router's shadow worker, once its exec has completed (only then is
    its module among its arguments: before, they read empty or as the router's, which
    name the test's directory and so "shadow_worker"). Not that it has run any code yet:
    wait for :func:`wait_for_shadow_worker` for that."""
    deadline = time.monotonic() + timeout
    while True:
        for task in Path(f"/proc/{router_pid}/task").glob("*/children"):
            for pid in task.read_text().split():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"serinus_serving.router.shadow_worker" in argv:
                        return int(pid)
        assert time.monotonic() < deadline, "the router has no shadow worker"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def shadow_totals(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        result: metric(text, "serinus_shadow_requests_total", result=result)
        for result in ("agree", "disagree", "error", "dropped")
    }


def test_the_shadow_worker_idles_and_never_outlives_the_router(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    """Copies are sent and compared by a child process that the kernel runs only when the
    router's CPU is otherwise idle; a router killed outright leaves no worker behind."""
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, shadow={"revision": "new", "percent": 100})
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        # The worker lowers its own priority before it says hello; a ready router has not
        # necessarily heard it (it waits only a moment), nor does an exec'd worker mean it.
        wait_for_shadow_worker(client)
        worker = _shadow_worker_of(r.process.pid)
        assert os.sched_getscheduler(worker) == os.SCHED_IDLE
        r.process.kill()
        r.process.wait()
        deadline = time.monotonic() + 10
        while not _gone(worker):
            assert time.monotonic() < deadline, "the shadow worker outlived its router"
            time.sleep(0.05)


def test_a_killed_shadow_worker_costs_no_primary_and_every_copy_is_counted(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, shadow={"revision": "new", "percent": 100})
    sent = 0
    seen: list[float] = []

    def send(client: httpx.Client, n: int) -> None:
        nonlocal sent
        for i in range(n):
            response = client.post("/v2/models/m/infer", json=infer_body((i + 0.5) / n))
            assert response.status_code == 200 and response.headers["x-serinus-revision"] == "old"
            sent += 1

    def settle(client: httpx.Client) -> dict[str, float]:
        deadline = time.monotonic() + 10
        while True:
            totals = shadow_totals(client)
            seen.append(sum(totals.values()))
            if seen[-1] >= sent:
                return totals
            assert time.monotonic() < deadline, (sent, totals)
            time.sleep(0.05)

    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        wait_for_shadow_worker(client)
        first = _shadow_worker_of(r.process.pid)
        send(client, 100)
        before = settle(client)
        assert before["agree"] + before["disagree"] == 100
        os.kill(first, signal.SIGKILL)
        send(client, 50)  # while it is down or restarting: dropped and counted
        deadline = time.monotonic() + 15
        while True:  # until copies are compared again, by a new worker
            send(client, 10)
            totals = settle(client)
            if totals["agree"] + totals["disagree"] > 100:
                break
            assert time.monotonic() < deadline, totals
        assert _shadow_worker_of(r.process.pid) != first
        totals = settle(client)
        text = client.get("/metrics").text
        assert metric(text, "serinus_shadow_worker_restarts_total") >= 1
    assert sum(totals.values()) == sent  # each copy counted exactly once
    assert seen == sorted(seen)  # the counters never went back
    assert "shadow worker stopped" in r.logs()


def test_a_stopped_shadow_worker_shows_down_and_recovers_when_continued(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    """A worker that is alive but makes no progress (SIGSTOP) is down within the bound:
    copies are dropped and counted at once, the primary never waits; SIGCONT brings the
    same worker back, not a new one."""
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, shadow={"revision": "new", "percent": 100})
    # the bound, plus the watchdog's tick and a scrape, with room for a loaded machine
    within = STALL_SECONDS + 3.0

    def up(client: httpx.Client) -> float:
        return metric(client.get("/metrics").text, "serinus_shadow_worker_up")

    def send(client: httpx.Client, n: int) -> None:
        for i in range(n):
            response = client.post("/v2/models/m/infer", json=infer_body((i + 0.5) / n))
            assert response.status_code == 200 and response.headers["x-serinus-revision"] == "old"

    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        wait_for_shadow_worker(client)
        worker = _shadow_worker_of(r.process.pid)
        os.kill(worker, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            while up(client) != 0:
                assert time.monotonic() - stopped < within, "a stopped worker still shows up"
                time.sleep(0.05)
            send(client, 20)  # while it is stopped: each copy dropped and counted at once
            assert shadow_totals(client) == {"agree": 0, "disagree": 0, "error": 0,
                                             "dropped": 20}  # fmt: skip
            assert up(client) == 0
        finally:
            os.kill(worker, signal.SIGCONT)
        continued = time.monotonic()
        while up(client) != 1:
            assert time.monotonic() - continued < within, "a continued worker stays down"
            time.sleep(0.05)
        send(client, 10)
        deadline = time.monotonic() + 10
        while sum((totals := shadow_totals(client)).values()) < 30:
            assert time.monotonic() < deadline, totals
            time.sleep(0.05)
        assert totals["agree"] + totals["disagree"] == 10 and totals["dropped"] == 20
        assert _shadow_worker_of(r.process.pid) == worker
        assert metric(client.get("/metrics").text, "serinus_shadow_worker_restarts_total") == 0
    logs = r.logs()
    assert logs.count(f"shadow worker {worker} sent nothing") == 1, logs
    assert logs.count(f"shadow worker {worker} is making progress again") == 1, logs


def test_v1_predictions_are_judged_on_labels_as_v2_ones_are(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    """A v1 ``:predict`` client's answers, the primary's and the shadow's, are recorded under
    its request id and joined with its labels, as an OIP v2 client's are."""
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0},
                shadow={"revision": "new", "percent": 100})  # fmt: skip
    # old says 1 above 0.5, new above 0.7; the truth is 1 above 0.55.
    inputs = {"v1-a": 0.1, "v1-b": 0.6, "v1-c": 0.9, "v1-d": 0.65}
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        wait_for_shadow_worker(client)
        for request_id, x0 in inputs.items():
            instance = [x0] + [0.0] * (N_FEATURES - 1)
            answer = client.post(
                "/v1/models/m:predict",
                json={"instances": [instance]},
                headers={"x-request-id": request_id},
            )
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while metric(client.get("/metrics").text, "serinus_prediction_log_answers_total",
                     result="recorded") < 2 * len(inputs):  # fmt: skip
            assert time.monotonic() < deadline, "the answers were never recorded"
            time.sleep(0.05)
        labels = [{"id": i, "label": int(x0 > 0.55)} for i, x0 in inputs.items()]
        joined = client.post("/v2/models/m/feedback", json={"labels": labels})
        assert joined.status_code == 200, joined.text
        assert joined.json()["matched"] == len(inputs)
        text = client.get("/metrics").text
    counted = {
        (name, revision): metric(text, f"serinus_feedback_{name}_total", revision=revision)
        for name in ("labelled", "correct")
        for revision in ("old", "new")
    }
    assert counted == {
        ("labelled", "old"): 4, ("correct", "old"): 4, ("labelled", "new"): 4, ("correct", "new"): 2
    }  # fmt: skip
    cells = {
        cell: metric(
            text, "serinus_feedback_paired_total", primary="old", shadow="new", outcome=cell
        )
        for cell in ("both_right", "only_primary_right", "only_shadow_right", "both_wrong")
    }
    assert cells == {
        "both_right": 2,
        "only_primary_right": 2,
        "only_shadow_right": 0,
        "both_wrong": 0,
    }


def test_a_v1_body_s_id_is_not_taken_for_the_request_id(
    revisions: dict[str, ServeProcess], tmp_path: Path
) -> None:
    """v1 ids come from the header, else the router makes one up: a v1 body's ``id`` (its
    instances' often have one too) is never read, as an OIP v2 body's is."""
    routes = tmp_path / "routes.json"
    write_table(routes, revisions, weights={"old": 100, "new": 0})
    instance = [0.9] + [0.0] * (N_FEATURES - 1)
    with router(routes, log_dir=tmp_path) as r, httpx.Client(base_url=r.url) as client:
        v1 = client.post("/v1/models/m:predict", json={"id": "body-id", "instances": [instance]})
        assert v1.status_code == 200, v1.text
        made_up = v1.headers.get("x-request-id")
        assert made_up is not None and made_up != "body-id" and len(made_up) == 32
        v2 = client.post("/v2/models/m/infer", json={"id": "v2-id", **infer_body(0.9)})
        assert v2.status_code == 200, v2.text
        assert "x-request-id" not in v2.headers  # the body's id is the request's

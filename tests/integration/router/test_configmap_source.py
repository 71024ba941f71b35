"""``serinus router --routes configmap:ml/fraud-routes``: a real router process reading its
table from a ConfigMap through a (fake) Kubernetes API, in front of two real revisions.

The API is kmock's Kubernetes emulator on a real loopback port behind a TCP proxy that
plays outages; see :mod:`support.kube` for what kmock does and what the fixture adds
(resourceVersions; the outage itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serinus_serving.router.kube_source import (
    ConfigMapSource,
    KubeConfig,
    KubeConfigError,
    WatchEvent,
    WatchGone,
    WatchUnsupported,
    _Token,
    parse_event,
    parse_target,
    routes_text,
)
from support.kube import FakeKubeApi
from support.serve import ServeProcess, _running

pytestmark = pytest.mark.integration

N_FEATURES = 4
NS, NAME = "ml", "fraud-routes"


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi()
    try:
        yield api
    finally:
        api.close()


def table(revisions: dict[str, ServeProcess], old: int, new: int) -> str:
    """The routes.json text, as the operator's Router provider writes it."""
    weights = {"old": old, "new": new}
    body = {
        "model": "m",
        "revisions": {
            name: {"url": server.url, "weight": weights[name]} for name, server in revisions.items()
        },
    }
    return json.dumps(body, indent=2) + "\n"


@contextlib.contextmanager
def configmap_router(kube: FakeKubeApi, tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """The router process, pointed at the fake API with a service-account-like token file."""
    token = tmp_path / "token"
    token.write_text("token-1\n")
    env = {
        "SERINUS_KUBE_API": kube.url,
        "SERINUS_KUBE_TOKEN_FILE": str(token),
        "SERINUS_KUBE_CA": "",
    }
    with _running(
        "router",
        "--routes",
        f"configmap:{NS}/{NAME}",
        log_dir=tmp_path,
        wait_for="/-/ready",
        env=env,
    ) as router:
        yield router, token


def weights(client: httpx.Client) -> dict[str, int]:
    routes = client.get("/-/routes").json()
    assert isinstance(routes, dict)
    result: dict[str, int] = routes["weights"]
    return result


def wait_for_weights(client: httpx.Client, expected: dict[str, int], timeout: float) -> float:
    """Seconds until the router reports ``expected``; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if weights(client) == expected:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"weights still {weights(client)} after {timeout} s, not {expected}")


def rejected(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("serinus_router_table_reloads_total{") and 'result="rejected"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_rejections(client: httpx.Client, count: float, timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while rejected(client) < count:
        assert time.monotonic() < deadline, f"only {rejected(client)} rejections, not {count}"
        time.sleep(0.01)


def infer(client: httpx.Client) -> httpx.Response:
    row = [0.3] + [0.0] * (N_FEATURES - 1)
    body = {"inputs": [{"name": "X", "shape": [1, N_FEATURES], "datatype": "FP32", "data": row}]}
    return client.post("/v2/models/m/infer", json=body)


class Load:
    """Continuous requests in a thread; every failure is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.served: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = infer(client)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                self.served[response.headers.get("x-serinus-revision", "?")] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        deadline = time.monotonic() + 10  # the load is running before the test goes on
        while not self.served and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_weight_changes_apply_within_a_second(
    revisions: dict[str, ServeProcess], kube: FakeKubeApi, tmp_path: Path
) -> None:
    kube.create(NS, NAME, {"routes.json": table(revisions, 100, 0)})
    # another ConfigMap in the namespace: kmock ignores the fieldSelector, the router must not
    kube.create(NS, "other-routes", {"routes.json": table(revisions, 0, 100)})
    with (
        configmap_router(kube, tmp_path) as (router, _),
        httpx.Client(base_url=router.url) as client,
    ):
        assert weights(client) == {"old": 100, "new": 0}
        with Load(router.url) as load:
            for old, new in ((70, 30), (0, 100), (100, 0), (0, 100)):
                kube.patch(NS, NAME, {"routes.json": table(revisions, old, new)})
                took = wait_for_weights(client, {"old": old, "new": new}, timeout=1.0)
                assert took < 1.0
            kube.patch(NS, "other-routes", {"routes.json": table(revisions, 50, 50)})
            time.sleep(0.3)
        assert weights(client) == {"old": 0, "new": 100}
        assert load.failures == []
        assert infer(client).headers["x-serinus-revision"] == "new"
        assert rejected(client) == 0
    # the router authenticated with the token file's bearer token
    assert "Bearer token-1" in kube.authorizations()


def test_invalid_table_is_rejected_and_the_last_good_one_kept(
    revisions: dict[str, ServeProcess], kube: FakeKubeApi, tmp_path: Path
) -> None:
    kube.create(NS, NAME, {"routes.json": table(revisions, 70, 30)})
    good = {"old": 70, "new": 30}
    with (
        configmap_router(kube, tmp_path) as (router, _),
        httpx.Client(base_url=router.url) as client,
    ):
        with Load(router.url) as load:
            # weights that do not add up to 100
            kube.patch(NS, NAME, {"routes.json": table(revisions, 70, 70)})
            wait_for_rejections(client, 1)
            assert weights(client) == good
            # not JSON at all
            kube.patch(NS, NAME, {"routes.json": "{not json"})
            wait_for_rejections(client, 2)
            # the key removed
            kube.patch(NS, NAME, {"routes.json": None})
            wait_for_rejections(client, 3)
            # the ConfigMap deleted
            kube.delete(NS, NAME)
            wait_for_rejections(client, 4)
            assert weights(client) == good
            assert client.get("/-/ready").status_code == 200
            # and created again: applied
            kube.create(NS, NAME, {"routes.json": table(revisions, 0, 100)})
            wait_for_weights(client, {"old": 0, "new": 100}, timeout=1.0)
        assert load.failures == []
        assert sum(load.served.values()) > 0
    logs = router.logs()
    assert "rejected, keeping the last good one" in logs
    assert "they add up to 140" in logs
    assert f"configmap {NS}/{NAME} was deleted" in logs


def test_api_outage_fails_no_request_and_later_changes_apply(
    revisions: dict[str, ServeProcess], kube: FakeKubeApi, tmp_path: Path
) -> None:
    kube.create(NS, NAME, {"routes.json": table(revisions, 100, 0)})
    with (
        configmap_router(kube, tmp_path) as (router, token),
        httpx.Client(base_url=router.url) as client,
        Load(router.url) as load,
    ):
        kube.down()
        time.sleep(1.5)  # several reconnect attempts fail meanwhile
        assert client.get("/-/ready").status_code == 200
        token.write_text("token-2\n")  # rotated while the API was away
        # changed while the router cannot see it: picked up on reconnect (re-read)
        kube.patch(NS, NAME, {"routes.json": table(revisions, 50, 50)})
        kube.up()
        wait_for_weights(client, {"old": 50, "new": 50}, timeout=8.0)
        # and the watch works again: a later change applies within a second
        kube.patch(NS, NAME, {"routes.json": table(revisions, 0, 100)})
        took = wait_for_weights(client, {"old": 0, "new": 100}, timeout=1.0)
        assert took < 1.0
    assert load.failures == []
    assert load.served["old"] > 0 and load.served["new"] > 0
    assert "cannot reach the Kubernetes API" in router.logs()
    # the router's own requests (the test's carry no token) switched to the rotated token
    router_auths = [auth for auth in kube.authorizations() if auth]
    assert router_auths[0] == "Bearer token-1"
    assert router_auths[-1] == "Bearer token-2"


# --------------------------------------------------------------------------- protocol details
# No API server needed: the pure event handling, and the GET/watch/re-list sequence against
# scripted answers (httpx.MockTransport). They live here with the integration tests of the
# source they cover.


def _cm(routes: str | None, rv: str, name: str = NAME) -> dict[str, object]:
    data = {} if routes is None else {"routes.json": routes}
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": rv}, "data": data}


def _line(kind: str, obj: dict[str, object]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _table(model: str) -> str:
    return json.dumps(
        {"model": model, "revisions": {"a": {"url": "http://127.0.0.1:9", "weight": 100}}}
    )


class _Recorder:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.rejected: list[str] = []

    def source(
        self, client: httpx.AsyncClient | None = None, poll_interval: float = 2.0
    ) -> ConfigMapSource:
        return ConfigMapSource(
            NS,
            NAME,
            lambda table: self.applied.append(table.model),
            rejected=self.rejected.append,
            config=KubeConfig("http://api", None, None),
            client=client,
            poll_interval=poll_interval,
        )


def test_parse_event() -> None:
    assert parse_event(b"\n") is None
    event = parse_event(_line("MODIFIED", _cm(_table("m"), "7")))
    assert event is not None
    assert (event.type, event.name, event.resource_version) == ("MODIFIED", NAME, "7")
    assert routes_text(event.object) == _table("m")
    assert routes_text(_cm(None, "7")) is None
    with pytest.raises(ValueError, match="not JSON"):
        parse_event(b"{half")
    with pytest.raises(ValueError, match="without type"):
        parse_event(b'{"type": "ADDED"}')
    with pytest.raises(WatchUnsupported):  # a server that answered the watch with a list
        parse_event(b'{"kind": "ConfigMapList", "items": []}')


def test_handle_events() -> None:
    seen = _Recorder()
    source = seen.source()
    assert source.handle(WatchEvent("ADDED", _cm(_table("a"), "1"))) == "1"
    assert source.handle(WatchEvent("ADDED", _cm(_table("a"), "1"))) == "1"  # replayed: no-op
    assert source.handle(WatchEvent("MODIFIED", _cm(_table("x"), "2", name="other"))) == "2"
    assert source.handle(WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "5"}})) == "5"
    source.handle(WatchEvent("MODIFIED", _cm('{"model": "b"}', "6")))  # no revisions
    source.handle(WatchEvent("MODIFIED", _cm(None, "7")))  # key removed
    source.handle(WatchEvent("DELETED", _cm(None, "8")))
    source.handle(WatchEvent("ADDED", _cm(_table("c"), "9")))
    assert seen.applied == ["a", "c"]
    assert len(seen.rejected) == 3
    assert "has no routes.json key" in seen.rejected[1]
    assert "was deleted" in seen.rejected[2]
    with pytest.raises(WatchGone):
        source.handle(WatchEvent("ERROR", {"kind": "Status", "code": 410, "message": "too old"}))


def test_relists_on_gone_and_error_events_and_resumes_from_the_last_version() -> None:
    seen = _Recorder()
    requests: list[dict[str, str]] = []
    done = asyncio.Event()
    script: list[httpx.Response] = [
        httpx.Response(200, json=_cm(_table("a"), "5")),  # GET
        httpx.Response(410),  # watch from 5: gone
        httpx.Response(200, json=_cm(_table("b"), "7")),  # GET again
        httpx.Response(  # watch from 7: a change, then an ERROR event
            200,
            content=_line("MODIFIED", _cm(_table("c"), "8"))
            + b"\n"
            + _line("ERROR", {"kind": "Status", "code": 410}),
        ),
        httpx.Response(200, json=_cm(_table("c"), "9")),  # GET again: unchanged table
        httpx.Response(  # watch from 9: a bookmark, then the stream ends
            200, content=_line("BOOKMARK", {"metadata": {"resourceVersion": "12"}})
        ),
        httpx.Response(200, content=_line("MODIFIED", _cm(_table("d"), "13"))),  # from 12
    ]

    async def answer(request: httpx.Request) -> httpx.Response:
        requests.append(dict(request.url.params) | {"path": request.url.path})
        if not script:
            done.set()
            await asyncio.sleep(30)  # a quiet watch, until the source stops
        return script.pop(0)

    async def main() -> None:
        client = httpx.AsyncClient(base_url="http://api", transport=httpx.MockTransport(answer))
        source = seen.source(client)
        await source.start()
        await asyncio.wait_for(done.wait(), 10)
        await source.stop()
        await client.aclose()

    asyncio.run(main())
    assert seen.applied == ["a", "b", "c", "d"]
    assert seen.rejected == []
    watches = [r for r in requests if r.get("watch") == "true"]
    assert [w.get("resourceVersion") for w in watches] == ["5", "7", "9", "12", "13"]
    assert all(w["fieldSelector"] == f"metadata.name={NAME}" for w in watches)
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    gets = [r["path"] for r in requests if "watch" not in r]
    assert gets == [f"/api/v1/namespaces/{NS}/configmaps/{NAME}"] * 3


def test_polls_when_the_server_cannot_watch() -> None:
    seen = _Recorder()
    reads = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.url.params.get("watch") == "true":
            return httpx.Response(405)
        reads += 1
        model = "a" if reads < 3 else "b"
        return httpx.Response(200, json=_cm(_table(model), ""))  # and no resourceVersion

    async def main() -> None:
        client = httpx.AsyncClient(base_url="http://api", transport=httpx.MockTransport(answer))
        source = seen.source(client, poll_interval=0.02)
        await source.start()
        for _ in range(200):
            if seen.applied == ["a", "b"]:
                break
            await asyncio.sleep(0.01)
        await source.stop()
        await client.aclose()

    asyncio.run(main())
    assert seen.applied == ["a", "b"]


def test_kube_config_and_token_rotation(tmp_path: Path) -> None:
    config = KubeConfig.from_env(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    )
    assert config.base_url == "https://[fd00::1]:6443"
    assert config.token_file == Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    with pytest.raises(KubeConfigError, match="SERINUS_KUBE_API"):
        KubeConfig.from_env({})
    assert parse_target("ml/fraud-routes") == ("ml", "fraud-routes")
    for bad in ("ml", "/x", "ml/", "a/b/c"):
        with pytest.raises(KubeConfigError):
            parse_target(bad)
    token_file = tmp_path / "token"
    token_file.write_text("one\n")
    token = _Token(token_file)
    assert token.header() == {"Authorization": "Bearer one"}
    token_file.write_text("second\n")  # rotated (a different size, so seen even at once)
    assert token.header() == {"Authorization": "Bearer second"}
    token_file.unlink()
    assert token.header() == {}

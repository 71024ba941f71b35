"""``serinus router --routes configmap:NAMESPACE/fraud-routes``: a real router process reading
its table from a ConfigMap through a real Kubernetes API server, in front of two real
revisions.

The API server is the session's real control plane (tests/support/real_cluster.py). Each
test has a namespace of its own holding the router's ServiceAccount, Role and RoleBinding as
the operator builds them (``serinus_operator.resources.router``), and the router
authenticates with a real token of that ServiceAccount: the API server's RBAC decides what
it may read, and its audit log shows what it asked and with which token. Outages stop the
API server itself and start it again (same port, same etcd).

The tests at the end need no API server: the pure event handling, and two scripted
exchanges whose answers the real server cannot give on demand (their docstrings say why).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serinus_operator.resources.meta import routes_name
from serinus_operator.resources.router import (
    router_name,
    router_role,
    router_role_binding,
    router_service_account,
)
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
from support.real_cluster import RealCluster
from support.real_kube import RealKube
from support.serve import ServeProcess, _running

pytestmark = pytest.mark.integration

N_FEATURES = 4
MD_NAME = "fraud"
NAME = routes_name(MD_NAME)  # the one ConfigMap the router's Role lets it read
ROUTER_SA = router_name(MD_NAME)
NS = "ml"  # the scripted tests' namespace (no API server)
CREDENTIAL = "authentication.kubernetes.io/credential-id"


@dataclass
class RouterApi:
    """A namespace of the real API with the router's identity and permissions in it."""

    kube: RealKube
    namespace: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{ROUTER_SA}"

    def token(self) -> str:
        """A new, real token of the router's ServiceAccount (as the kubelet projects it)."""
        return self.kube.token(self.namespace, ROUTER_SA)

    def create(self, name: str, data: dict[str, str]) -> None:
        meta = {"name": name, "namespace": self.namespace}
        self.kube.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data},
            "configmaps",
        )

    def patch(self, name: str, data: dict[str, str | None]) -> None:
        """A JSON merge patch of ``data`` (``None`` removes a key)."""
        self.kube.patch("v1", "configmaps", self.namespace, name, {"data": data})

    def delete(self, name: str) -> None:
        self.kube.delete("v1", "configmaps", self.namespace, name)

    def version(self, name: str) -> str:
        found = self.kube.get("v1", "configmaps", self.namespace, name)
        rv: str = found["metadata"]["resourceVersion"]
        return rv

    def requests(self) -> list[dict[str, Any]]:
        """The router's requests, in order, as the API server's audit log has them: one
        event per request (a watch's when its response started, a refused one's when it
        was refused)."""
        seen: set[str] = set()
        out = []
        for event in self.kube.cluster.audit(user=self.user, namespace=self.namespace):
            if event["auditID"] not in seen:
                seen.add(event["auditID"])
                out.append(event)
        return out


def first_watch_event(kube: RouterApi, rv: str) -> str:
    """The first line of the admin's watch of the routes ConfigMap from ``rv``."""
    params = {
        "watch": "true",
        "fieldSelector": f"metadata.name={NAME}",
        "resourceVersion": rv,
        "timeoutSeconds": "1",
    }
    path = f"/api/v1/namespaces/{kube.namespace}/configmaps"
    with kube.kube.client.stream("GET", path, params=params) as response:
        response.raise_for_status()
        return next(response.iter_lines(), "")


def credential(token: str) -> str:
    """How the audit log names a bound ServiceAccount token: by its JWT ID."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


def used_credentials(requests: list[dict[str, Any]]) -> list[str]:
    return [e["user"]["extra"][CREDENTIAL][0] for e in requests]


def summary(requests: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """What the router asked and was answered, for assertion messages."""
    return [
        (
            e["verb"],
            e["requestURI"],
            e["responseStatus"]["code"],
            e["responseStatus"].get("message", ""),
        )
        for e in requests
    ]


@pytest.fixture
def kube(real_kube: RealKube) -> Iterator[RouterApi]:
    """A fresh namespace with the router's ServiceAccount, Role and RoleBinding, built by the
    operator's own builders (no owner: no ModelDeployment here)."""
    namespace = real_kube.new_namespace("router")
    for obj in (
        router_service_account(MD_NAME, namespace),
        router_role(MD_NAME, namespace),
        router_role_binding(MD_NAME, namespace),
    ):
        real_kube.apply(obj)
    try:
        yield RouterApi(real_kube, namespace)
    finally:
        real_kube.delete("v1", "namespaces", None, namespace)


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
def configmap_router(kube: RouterApi, tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """The router process as the operator runs it in a pod, but reaching the API server by
    its address (``SERINUS_KUBE_API``) instead of ``KUBERNETES_SERVICE_HOST``, with the
    ServiceAccount's token and the cluster's CA in files as the kubelet mounts them."""
    token = tmp_path / "token"
    token.write_text(kube.token() + "\n")
    env = {
        "SERINUS_KUBE_API": kube.kube.url,
        "SERINUS_KUBE_TOKEN_FILE": str(token),
        "SERINUS_KUBE_CA": str(kube.kube.cluster.ca_path),
    }
    with _running(
        "router",
        "--routes",
        f"configmap:{kube.namespace}/{NAME}",
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
    revisions: dict[str, ServeProcess], kube: RouterApi, tmp_path: Path
) -> None:
    kube.create(NAME, {"routes.json": table(revisions, 100, 0)})
    # another ConfigMap in the namespace: not the router's (its Role does not let it read
    # this one, and the server filters the watch by name), so its changes do nothing
    kube.create("other-routes", {"routes.json": table(revisions, 0, 100)})
    with (
        configmap_router(kube, tmp_path) as (router, token),
        httpx.Client(base_url=router.url) as client,
    ):
        issued = credential(token.read_text().strip())
        assert weights(client) == {"old": 100, "new": 0}
        with Load(router.url) as load:
            for old, new in ((70, 30), (0, 100), (100, 0), (0, 100)):
                kube.patch(NAME, {"routes.json": table(revisions, old, new)})
                took = wait_for_weights(client, {"old": old, "new": new}, timeout=1.0)
                assert took < 1.0
            kube.patch("other-routes", {"routes.json": table(revisions, 50, 50)})
            time.sleep(0.3)
        assert weights(client) == {"old": 0, "new": 100}
        assert load.failures == []
        assert infer(client).headers["x-serinus-revision"] == "new"
        assert rejected(client) == 0
    # Every request was the router's ServiceAccount's, with the token file's token, and
    # inside the Role the operator gives it: a GET of its ConfigMap, then one watch by that
    # name (changes came as events, not by re-reading), none refused.
    requests = kube.requests()
    assert set(used_credentials(requests)) == {issued}
    assert [(e["verb"], e["objectRef"].get("name")) for e in requests] == [
        ("get", NAME),
        ("watch", NAME),
    ], summary(requests)
    assert all(e["responseStatus"]["code"] == 200 for e in requests), summary(requests)


def test_invalid_table_is_rejected_and_the_last_good_one_kept(
    revisions: dict[str, ServeProcess], kube: RouterApi, tmp_path: Path
) -> None:
    kube.create(NAME, {"routes.json": table(revisions, 70, 30)})
    good = {"old": 70, "new": 30}
    with (
        configmap_router(kube, tmp_path) as (router, _),
        httpx.Client(base_url=router.url) as client,
    ):
        with Load(router.url) as load:
            # weights that do not add up to 100
            kube.patch(NAME, {"routes.json": table(revisions, 70, 70)})
            wait_for_rejections(client, 1)
            assert weights(client) == good
            # not JSON at all
            kube.patch(NAME, {"routes.json": "{not json"})
            wait_for_rejections(client, 2)
            # the key removed
            kube.patch(NAME, {"routes.json": None})
            wait_for_rejections(client, 3)
            # the ConfigMap deleted
            kube.delete(NAME)
            wait_for_rejections(client, 4)
            assert weights(client) == good
            assert client.get("/-/ready").status_code == 200
            # and created again: applied
            kube.create(NAME, {"routes.json": table(revisions, 0, 100)})
            wait_for_weights(client, {"old": 0, "new": 100}, timeout=1.0)
        assert load.failures == []
        assert sum(load.served.values()) > 0
    logs = router.logs()
    assert "rejected, keeping the last good one" in logs
    assert "they add up to 140" in logs
    assert f"configmap {kube.namespace}/{NAME} was deleted" in logs
    # the deletion and the re-creation came through the same watch
    assert [e["verb"] for e in kube.requests()] == ["get", "watch"]


def test_server_side_timeouts_and_bookmarks_renew_the_watch(
    kube: RouterApi, tmp_path: Path
) -> None:
    """The source in-process with a 4 s ``watch_timeout``. The server sends a BOOKMARK
    shortly before it ends the watch (2 s before ``timeoutSeconds``), and the source watches
    again from that bookmark's resourceVersion; a change made after the renewal applies.

    Another ConfigMap is created while the first watch runs: its events are not the
    router's (the server filters them out by name), but they move the server's
    resourceVersion on, so the renewal's version can only have come from a bookmark."""
    kube.create(NAME, {"routes.json": _table("a")})
    token = tmp_path / "token"
    token.write_text(kube.token())
    config = KubeConfig(kube.kube.url, token, kube.kube.cluster.ca_path)
    seen = _Recorder()
    unrelated: list[int] = []

    def watches() -> list[dict[str, Any]]:
        return [e for e in kube.requests() if e["verb"] == "watch"]

    async def until(probe: Callable[[], bool], what: str) -> None:
        for _ in range(100):
            if await asyncio.to_thread(probe):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def create_unrelated() -> None:
        kube.create("unrelated", {})
        found = kube.kube.get("v1", "configmaps", kube.namespace, "unrelated")
        unrelated.append(int(found["metadata"]["resourceVersion"]))

    async def main() -> None:
        source = ConfigMapSource(
            kube.namespace,
            NAME,
            lambda table: seen.applied.append(table.model),
            rejected=seen.rejected.append,
            config=config,
            watch_timeout=4,
        )
        await source.start()
        try:
            await until(lambda: len(watches()) >= 1, "the first watch")
            await asyncio.to_thread(create_unrelated)
            await until(lambda: len(watches()) >= 2, "the watch renewed after 4 s")
            await asyncio.to_thread(kube.patch, NAME, {"routes.json": _table("b")})
            await until(lambda: seen.applied == ["a", "b"], "the change")
        finally:
            await source.stop()

    asyncio.run(main())
    assert seen.applied == ["a", "b"]
    assert seen.rejected == []
    requests = kube.requests()
    assert [e["verb"] for e in requests] == ["get", "watch", "watch"], summary(requests)
    assert all(e["responseStatus"]["code"] == 200 for e in requests), summary(requests)
    first, second = (httpx.URL(e["requestURI"]).params for e in requests[1:])
    assert first["timeoutSeconds"] == second["timeoutSeconds"] == "4"
    assert first["allowWatchBookmarks"] == second["allowWatchBookmarks"] == "true"
    assert "resourceVersion" not in first  # after a read: from "now"
    assert int(second["resourceVersion"]) >= unrelated[0]


def test_api_outage_fails_no_request_and_later_changes_apply(
    revisions: dict[str, ServeProcess], kube: RouterApi, real_cluster: RealCluster, tmp_path: Path
) -> None:
    """The API server stops (SIGTERM: it ends the router's watch, then refuses connections)
    and starts again on the same port with the same etcd."""
    kube.create(NAME, {"routes.json": table(revisions, 100, 0)})
    rotated = kube.token()  # asked for now: no token is issued while the API is away
    with (
        configmap_router(kube, tmp_path) as (router, token),
        httpx.Client(base_url=router.url) as client,
        Load(router.url) as load,
    ):
        issued = credential(token.read_text().strip())
        real_cluster.stop_apiserver()
        time.sleep(1.5)  # several reconnect attempts fail meanwhile
        assert client.get("/-/ready").status_code == 200
        token.write_text(rotated + "\n")  # rotated while the API was away
        real_cluster.start_apiserver()
        # Changed as soon as the API is back, while the router is still backing off (its
        # attempts are seconds apart by now): picked up when it reconnects.
        kube.patch(NAME, {"routes.json": table(revisions, 50, 50)})
        wait_for_weights(client, {"old": 50, "new": 50}, timeout=8.0)
        # and the watch works again: a later change applies within a second
        kube.patch(NAME, {"routes.json": table(revisions, 0, 100)})
        took = wait_for_weights(client, {"old": 0, "new": 100}, timeout=1.0)
        assert took < 1.0
    assert load.failures == []
    assert load.served["old"] > 0 and load.served["new"] > 0
    assert "cannot reach the Kubernetes API" in router.logs()
    # the router switched to the rotated token (the audit log names each token by its JWT ID)
    requests = kube.requests()
    assert used_credentials(requests)[0] == issued
    assert used_credentials(requests)[-1] == credential(rotated)
    # A request that reaches the server while it starts, before its RBAC caches are filled,
    # is refused (403) although the Role allows it: retried, like any error.
    assert {e["responseStatus"]["code"] for e in requests} <= {200, 403}, summary(requests)
    assert requests[-1]["responseStatus"]["code"] == 200


def test_a_table_older_than_the_watch_window_is_watched_without_spinning(
    revisions: dict[str, ServeProcess], kube: RouterApi, real_cluster: RealCluster, tmp_path: Path
) -> None:
    """The API server keeps a window of recent changes (its watch cache) and answers a watch
    from an older resourceVersion with an ERROR event, "410 too old resource version". Right
    after a restart that window begins at the restart, so a ConfigMap unchanged since then
    is older than the window (as is, on a cluster with many ConfigMap writes, one unchanged
    for a few minutes: the window is sized in events). A
    router starting then reads it and must watch from "now": GETting and watching from the
    ConfigMap's own version again would loop, with no pause, for as long as it is unchanged.
    """
    kube.create(NAME, {"routes.json": table(revisions, 100, 0)})
    # any later write moves etcd's revision on (a real cluster writes leases and events all
    # the time; this one is quiet): the window will begin after the ConfigMap's version
    kube.create("unrelated", {})
    real_cluster.stop_apiserver(kill=True)  # a crash; etcd keeps the data
    real_cluster.start_apiserver()
    # what a watch from the ConfigMap's own version is answered now
    assert "too old resource version" in first_watch_event(kube, kube.version(NAME))

    def answered(requests: list[dict[str, Any]]) -> list[str]:
        """The verbs, without the refusals of a server still filling its RBAC caches."""
        return [e["verb"] for e in requests if e["responseStatus"]["code"] != 403]

    with (
        configmap_router(kube, tmp_path) as (router, _),
        httpx.Client(base_url=router.url) as client,
    ):
        assert weights(client) == {"old": 100, "new": 0}
        time.sleep(1.0)
        requests = kube.requests()
        # a GET and a watch that stays open
        assert answered(requests) == ["get", "watch"], summary(requests)
        kube.patch(NAME, {"routes.json": table(revisions, 0, 100)})
        took = wait_for_weights(client, {"old": 0, "new": 100}, timeout=1.0)
        assert took < 1.0
    requests = kube.requests()
    assert answered(requests) == ["get", "watch"], summary(requests)
    assert {e["responseStatus"]["code"] for e in requests} <= {200, 403}, summary(requests)


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
    """A scripted server, because the real one cannot give this sequence on demand: it
    answers a watch from a too-old resourceVersion with 200 and an ERROR event (see
    test_a_table_older_than_the_watch_window_is_watched_without_spinning), never with a 410
    status on the watch request itself; an ERROR in the middle of a stream, after a
    change, comes only from conditions a test cannot time to the event; and it sends
    bookmarks on its own clock (2 s before ``timeoutSeconds``; see
    test_server_side_timeouts_and_bookmarks_renew_the_watch).

    After each read the watch starts from "now" (no resourceVersion; see the first of those
    tests for why), and after a stream ends it resumes from the last version it saw."""
    seen = _Recorder()
    requests: list[dict[str, str]] = []
    done = asyncio.Event()
    script: list[httpx.Response] = [
        httpx.Response(200, json=_cm(_table("a"), "5")),  # GET
        httpx.Response(410),  # watch from now: gone
        httpx.Response(200, json=_cm(_table("b"), "7")),  # GET again
        httpx.Response(  # watch from now: a change, then an ERROR event
            200,
            content=_line("MODIFIED", _cm(_table("c"), "8"))
            + b"\n"
            + _line("ERROR", {"kind": "Status", "code": 410}),
        ),
        httpx.Response(200, json=_cm(_table("c"), "9")),  # GET again: unchanged table
        httpx.Response(  # watch from now: a bookmark, then the stream ends
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
    assert [w.get("resourceVersion") for w in watches] == [None, None, None, "12", "13"]
    assert all(w["fieldSelector"] == f"metadata.name={NAME}" for w in watches)
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    gets = [r["path"] for r in requests if "watch" not in r]
    assert gets == [f"/api/v1/namespaces/{NS}/configmaps/{NAME}"] * 3


def test_polls_when_the_server_cannot_watch() -> None:
    """A scripted server that refuses watches (405) and carries no resourceVersion, as a
    plain HTTP stand-in for the API would: a real API server always watches."""
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

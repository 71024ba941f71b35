"""The watch caches (platforms/watch_cache.py) as a specification: list in pages, watch,
resume, list again on 410 and count what vanished as deleted, never let an older version
replace a newer one, and wake the ModelDeployment a change belongs to.

The API server here is :class:`Script`, a stand-in that answers list pages from a dict and
plays scripted watch streams; it has no resourceVersion history of its own. The real API
server's lists, watches, bookmarks and 410s are exercised by tests/integration/operator
(test_faults.py compacts etcd under the watches; test_rbac.py shows an idle fleet sends no
request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_operator.platforms.kubernetes import (
    APPLIED_ANNOTATION,
    FIELD_MANAGER,
    cached_kinds,
    content,
    slim,
)
from serinus_operator.platforms.watch_cache import (
    Gone,
    Kind,
    KindCache,
    ObjectCache,
    Unserved,
    newer,
)

pytestmark = pytest.mark.unit

CM = Kind("v1", "ConfigMap", "/api/v1/namespaces/{ns}/configmaps", "l=1", model_label="model")


def cm(name: str, version: int, *, model: str = "fraud", ns: str = "ns") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(version),
            "labels": {"model": model},
        },
        "data": {"v": str(version)},
    }


@dataclass
class Script:
    """Answers lists from ``objects`` (``page`` per page) and plays ``streams`` in turn:
    each a list of events, or an exception to raise when the watch is opened."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 100
    page: int = 2
    streams: list[list[Mapping[str, Any]] | Exception] = field(default_factory=list)
    lists: list[Mapping[str, str]] = field(default_factory=list)
    watches: list[Mapping[str, str]] = field(default_factory=list)
    unserved: bool = False
    #: When given, each scripted stream waits for it (cleared once played).
    gate: asyncio.Event | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def watched(self, count: int) -> None:
        """Until ``count`` watches were opened."""
        while len(self.watches) < count:
            self.opened.clear()
            await self.opened.wait()

    async def list_page(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        self.lists.append(dict(params))
        if self.unserved:
            raise Unserved(path)
        names = sorted(self.objects)
        start = int(params.get("continue") or 0)
        chunk = names[start : start + self.page]
        more = start + self.page < len(names)
        items = [
            {k: v for k, v in self.objects[n].items() if k not in ("apiVersion", "kind")}
            for n in chunk
        ]
        meta = {"resourceVersion": str(self.version)}
        if more:
            meta["continue"] = str(start + self.page)
        return {"items": items, "metadata": meta}

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Mapping[str, Any]]:
        self.watches.append(dict(params))
        self.opened.set()
        if not self.streams:
            await asyncio.Event().wait()  # an open, silent watch
        if self.gate is not None:
            await self.gate.wait()
            self.gate.clear()
        stream = self.streams.pop(0)
        if isinstance(stream, Exception):
            raise stream
        for event in stream:
            yield event


def run_cache(script: Script, *, until: int, kind: Kind = CM) -> tuple[KindCache, list[str]]:
    """A cache over ``script`` run until ``until`` watches were opened (the scripted ones
    all played, the last one left open)."""
    woken: list[str] = []

    async def go() -> KindCache:
        cache = KindCache(
            kind, source=script, namespace="ns", on_change=lambda ns, m: woken.append(m)
        )
        task = asyncio.create_task(cache.run())
        await script.watched(until)
        task.cancel()
        return cache

    return asyncio.run(go()), woken


def test_lists_in_pages_then_watches_from_the_lists_version() -> None:
    script = Script(objects={n: cm(n, 10 + i) for i, n in enumerate("abcde")})
    cache, woken = run_cache(script, until=1)
    assert [p.get("continue") for p in script.lists] == [None, "2", "4"]
    assert all(p["labelSelector"] == "l=1" and p["limit"] == "500" for p in script.lists)
    assert script.watches[0]["resourceVersion"] == "100"
    assert script.watches[0]["allowWatchBookmarks"] == "true"
    assert len(cache) == 5 and cache.synced.is_set()
    got = cache.get("ns", "c")
    assert got is not None and got["kind"] == "ConfigMap" and got["data"] == {"v": "12"}
    assert [o["metadata"]["name"] for o in cache.of_model("ns", "fraud")] == list("abcde")
    assert set(woken) == {"fraud"}


def test_watch_events_change_the_contents_and_wake_the_model() -> None:
    script = Script(
        objects={"a": cm("a", 10)},
        streams=[
            [
                {"type": "ADDED", "object": cm("b", 101, model="other")},
                {"type": "MODIFIED", "object": cm("a", 102)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "150"}}},
                {"type": "DELETED", "object": cm("b", 151, model="other")},
            ]
        ],
    )
    cache, woken = run_cache(script, until=2)
    assert cache.get("ns", "b") is None
    assert (cache.get("ns", "a") or {})["data"] == {"v": "102"}
    assert woken == ["fraud", "other", "fraud", "other"]
    # The stream ended: resumed from the bookmark's version, not listed again.
    assert script.watches[1]["resourceVersion"] == "151"
    assert len(script.lists) == 1


def test_a_410_lists_again_and_what_vanished_meanwhile_is_deleted() -> None:
    script = Script(objects={"a": cm("a", 10), "b": cm("b", 11)}, streams=[Gone("too old")])

    async def go() -> tuple[KindCache, list[str]]:
        script.gate = asyncio.Event()
        woken: list[str] = []
        cache = KindCache(
            CM, source=script, namespace="ns", on_change=lambda ns, m: woken.append(m)
        )
        task = asyncio.create_task(cache.run())
        await cache.synced.wait()
        woken.clear()
        # Meanwhile: b deleted, a changed, and the platform wrote c after the list.
        del script.objects["b"]
        script.objects["a"] = cm("a", 120)
        script.version = 130
        cache.put(cm("c", 140))
        script.gate.set()
        await script.watched(2)
        task.cancel()
        return cache, woken

    cache, woken = asyncio.run(go())
    assert cache.relists == 2
    assert cache.get("ns", "b") is None
    assert (cache.get("ns", "a") or {})["data"] == {"v": "120"}
    assert cache.get("ns", "c") is not None, "a write newer than the list was dropped"
    assert sorted(woken) == ["fraud", "fraud"]  # a changed, b deleted
    assert script.watches[1]["resourceVersion"] == "130"


def test_an_older_event_never_replaces_what_the_platform_wrote() -> None:
    script = Script(objects={"a": cm("a", 10)})

    async def go() -> KindCache:
        cache = KindCache(CM, source=script, namespace="ns", on_change=lambda ns, m: None)
        task = asyncio.create_task(cache.run())
        await cache.synced.wait()
        assert cache.put(cm("a", 30))  # the answer to the platform's own write
        assert not cache.put(cm("a", 20))  # the event of an earlier write, late
        assert not cache.put(cm("a", 30))  # the event of this very write: nothing new
        task.cancel()
        return cache

    assert (asyncio.run(go()).get("ns", "a") or {})["data"] == {"v": "30"}


def test_an_unserved_kind_is_empty_and_looked_for_again() -> None:
    script = Script(unserved=True)

    async def go() -> KindCache:
        cache = KindCache(CM, source=script, namespace="ns", on_change=lambda ns, m: None)
        task = asyncio.create_task(cache.run())
        await cache.synced.wait()
        task.cancel()
        return cache

    cache = asyncio.run(go())
    assert not cache.served and len(cache) == 0 and cache.get("ns", "a") is None


def test_a_failing_watch_is_retried_from_where_it_was() -> None:
    script = Script(objects={"a": cm("a", 10)}, streams=[ConnectionError("reset")])

    async def go() -> None:
        cache = KindCache(CM, source=script, namespace="ns", on_change=lambda ns, m: None)
        task = asyncio.create_task(cache.run())
        await script.watched(2)  # after a back-off of 0.5 to 1.5 s
        task.cancel()

    asyncio.run(asyncio.wait_for(go(), 10))
    assert [w["resourceVersion"] for w in script.watches] == ["100", "100"]
    assert len(script.lists) == 1


def test_scopes_follow_the_operators_namespaces() -> None:
    script = Script()
    plain = ObjectCache([CM], source=script, namespaces=("a", "b"), on_change=lambda n, m: None)
    assert plain.cache("v1", "ConfigMap", "a") is not plain.cache("v1", "ConfigMap", "b")
    assert plain.cache("v1", "ConfigMap", "c") is None
    glob = ObjectCache([CM], source=script, namespaces=("team-*",), on_change=lambda n, m: None)
    wide = glob.cache("v1", "ConfigMap", "team-x")
    assert wide is not None and wide is glob.cache("v1", "ConfigMap", "other")
    assert wide.namespace is None and wide.kind.path(None) == "/api/v1/configmaps"
    assert wide.put(cm("x", 1, ns="team-x")) and not wide.put(cm("y", 1, ns="other"))


def test_every_kind_a_pass_reads_is_cached() -> None:
    kinds = {k.kind: k for k in cached_kinds()}
    assert set(kinds) == {
        "ModelDeployment", "Deployment", "Service", "ConfigMap", "ServiceAccount", "Role",
        "RoleBinding", "HTTPRoute", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    }  # fmt: skip
    assert kinds["ModelDeployment"].label_selector is None
    assert all(k.label_selector for n, k in kinds.items() if n != "ModelDeployment")


def test_the_cache_holds_no_managed_fields_but_the_ones_to_take_over() -> None:
    applied = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {}}}
    legacy = {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:data": {}}}
    obj = cm("a", 1)
    obj["metadata"]["annotations"] = {APPLIED_ANNOTATION: "x"}
    obj["metadata"]["managedFields"] = [applied]
    assert "managedFields" not in slim(obj)["metadata"]
    assert content(slim(obj)) == content(obj)  # the platform's drift digest is unchanged
    obj["metadata"]["managedFields"] = [applied, legacy]
    assert slim(obj)["metadata"]["managedFields"] == [applied, legacy]


@given(
    st.lists(
        st.tuples(st.sampled_from(["event", "write"]), st.integers(min_value=1, max_value=50)),
        max_size=30,
    )
)
def test_what_is_held_never_goes_back_in_time(steps: list[tuple[str, int]]) -> None:
    """Events (in order, as one watch delivers them) interleaved with the answers to the
    platform's writes (in any order relative to the events): the version held is always the
    newest seen."""
    cache = KindCache(CM, source=Script(), namespace="ns", on_change=lambda ns, m: None)
    seen = 0
    event_version = 0
    for source, version in steps:
        if source == "event":
            event_version = max(event_version, version)
            version = event_version
        cache.put(cm("a", version))
        seen = max(seen, version)
        assert (cache.get("ns", "a") or {})["data"] == {"v": str(seen)}


@pytest.mark.parametrize(
    ("candidate", "held", "expected"),
    [
        ("10", "9", True),
        ("9", "10", False),
        ("10", "10", True),
        ("x", "10", True),
        (None, "1", True),
    ],
)
def test_newer(candidate: str | None, held: str | None, expected: bool) -> None:
    assert newer(candidate, held) is expected


def test_a_cache_that_cannot_list_is_waited_for_once_then_bypassed() -> None:
    """A pass waits for a cache's first list; when it never comes (RBAC refuses the list,
    say), later passes read the API server at once instead of waiting again each time."""

    class Refused(Script):
        async def list_page(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
            raise PermissionError("403")

    async def go() -> None:
        caches = ObjectCache(
            [CM], source=Refused(), namespaces=("ns",), on_change=lambda n, m: None
        )
        caches.start()
        try:
            assert await caches.synced("v1", "ConfigMap", "ns", wait=0.05) is None
            # A second wait would take 1000 s; it must not happen.
            found = await asyncio.wait_for(caches.synced("v1", "ConfigMap", "ns", wait=1000), 5)
            assert found is None
        finally:
            await caches.aclose()

    asyncio.run(go())

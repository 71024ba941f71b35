"""Watch-backed caches of the objects the operator reads: what client-go calls informers.

One :class:`KindCache` per kind and scope (a namespace, or the whole cluster) lists the
objects once, in pages, then watches from the list's resourceVersion with bookmarks, so a
dropped watch resumes where it stopped; a ``410 Gone`` (the resourceVersion was compacted
away) lists again and replaces the contents, and what vanished meanwhile counts as deleted.
Every change wakes the ModelDeployment it belongs to (``on_change``): a child edited or
deleted by hand is repaired within seconds, a Deployment that becomes available is seen at
once, and an idle ModelDeployment costs no request at all.

A reconcile pass reads from here instead of the API server. The platform writes what the
API server answered to its own writes back into the cache (``put``), so the pass that
follows its own write never reads the object from before it; an event older than what is
held is ignored. A stale read is always safe: at worst one write that changes nothing, and
the event that makes the cache current wakes the pass that corrects it.

Objects are held as compact JSON after a ``transform`` drops what the operator never reads
(``managedFields``), so memory per ModelDeployment is the size of its children's JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

log = logging.getLogger("serinus.cache")

#: Objects per page of a list: a list of ten thousand Deployments never sits in memory whole.
PAGE_SIZE: Final = 500
#: Each watch asks the API server to end it after about this long; it is then resumed.
WATCH_SECONDS: Final = 300
#: A kind the API server does not serve (HTTPRoute without the Gateway API's CRDs) is
#: looked for again this often, so CRDs installed after the operator are picked up.
UNSERVED_RETRY_SECONDS: Final = 60.0
MAX_BACKOFF_SECONDS: Final = 30.0


class Gone(Exception):
    """``410 Gone``: the resourceVersion a watch or a list page asked for was compacted."""


class Unserved(Exception):
    """``404`` on a collection: the API server does not serve the kind (yet)."""


class Source(Protocol):
    """The two reads a cache makes (the Kubernetes platform's client provides them)."""

    async def list_page(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        """One page of a list; raises :class:`Unserved` on 404, :class:`Gone` on 410."""
        ...

    def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Mapping[str, Any]]:
        """The events of one watch request, decoded, until the server ends it."""
        ...


@dataclass(frozen=True)
class Kind:
    """A kind to cache: its API version and kind, its collection path with ``{ns}`` (the
    cluster-wide path is derived), the label selector the API server filters with, and the
    label that names the ModelDeployment an object belongs to (None: the object's name)."""

    api_version: str
    kind: str
    namespaced_path: str
    label_selector: str | None = None
    model_label: str | None = None

    def path(self, namespace: str | None) -> str:
        if namespace is not None:
            return self.namespaced_path.format(ns=namespace)
        return self.namespaced_path.replace("/namespaces/{ns}", "")

    def model_of(self, obj: Mapping[str, Any]) -> str | None:
        meta = obj.get("metadata") or {}
        if self.model_label is None:
            name = meta.get("name")
        else:
            name = (meta.get("labels") or {}).get(self.model_label)
        return str(name) if name else None


def newer(candidate: str | None, held: str | None) -> bool:
    """Whether an object at resourceVersion ``candidate`` may replace one at ``held``.

    resourceVersions are opaque to clients, but every API server backed by etcd issues
    increasing integers; when both parse, an older one never replaces a newer one (a watch
    event that was already in flight when the platform stored its own write's answer)."""
    if not candidate or not held:
        return True
    try:
        return int(candidate) >= int(held)
    except ValueError:
        return True


def _version(obj: Mapping[str, Any]) -> str | None:
    found = (obj.get("metadata") or {}).get("resourceVersion")
    return str(found) if found else None


@dataclass(slots=True)
class _Entry:
    version: str | None
    model: str | None
    raw: bytes


#: A cache's keys: (namespace, name).
_Key = tuple[str, str]


class KindCache:
    """The objects of one kind in one scope (a namespace, or every namespace ``keep``
    accepts), listed then watched by :meth:`run`."""

    def __init__(
        self,
        kind: Kind,
        *,
        source: Source,
        namespace: str | None,
        on_change: Callable[[str, str], None],
        transform: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda o: o,
        keep: Callable[[str], bool] = lambda ns: True,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self._source = source
        self._on_change = on_change
        self._transform = transform
        self._keep = keep
        self._objects: dict[_Key, _Entry] = {}
        self._by_model: dict[_Key, set[str]] = {}  # (namespace, model) -> names
        self.synced = asyncio.Event()
        #: A pass waited for the first list in vain (it keeps failing: RBAC, say): later
        #: passes read the API server at once instead of waiting again.
        self.waited_in_vain = False
        self.served = True
        self.relists = 0  # how many times it listed (the first one included)

    # ------------------------------------------------------------------ reading
    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        entry = self._objects.get((namespace, name))
        return None if entry is None else _decode(entry.raw)

    def of_model(self, namespace: str, model: str) -> list[Mapping[str, Any]]:
        names = self._by_model.get((namespace, model)) or set()
        return [o for n in sorted(names) if (o := self.get(namespace, n)) is not None]

    def __len__(self) -> int:
        return len(self._objects)

    @property
    def label(self) -> str:
        return self.kind.kind

    def size_bytes(self) -> int:
        return sum(len(e.raw) for e in self._objects.values())

    # ------------------------------------------------------------------ writing
    def put(self, obj: Mapping[str, Any], *, wake: bool = False) -> bool:
        """Hold ``obj`` unless a newer version is held; whether it changed what is held."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if not name or not self._keep(namespace):
            return False
        key = (namespace, name)
        held = self._objects.get(key)
        version = _version(obj)
        if held is not None and (version == held.version or not newer(version, held.version)):
            return False
        slim = self._transform(obj)
        entry = _Entry(version, self.kind.model_of(slim), _encode(slim))
        if held is not None and held.model != entry.model:
            self._unindex(key, held.model)
        self._objects[key] = entry
        if entry.model:
            self._by_model.setdefault((namespace, entry.model), set()).add(name)
        if wake:
            self._wake(namespace, entry.model, held.model if held else None)
        return True

    def discard(self, namespace: str, name: str, *, wake: bool = False) -> None:
        held = self._objects.pop((namespace, name), None)
        if held is None:
            return
        self._unindex((namespace, name), held.model)
        if wake:
            self._wake(namespace, held.model, None)

    def _unindex(self, key: _Key, model: str | None) -> None:
        if not model:
            return
        names = self._by_model.get((key[0], model))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._by_model[(key[0], model)]

    def _wake(self, namespace: str, model: str | None, was: str | None) -> None:
        for m in {model, was} - {None}:
            assert m is not None
            self._on_change(namespace, m)

    # ------------------------------------------------------------------ listing, watching
    async def run(self) -> None:
        """List, then watch, forever: resumed after a dropped watch, listed again on 410."""
        backoff = 1.0
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist()
                version = await self._watch(version)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Unserved:
                self._unserved()
                version = None
                await asyncio.sleep(UNSERVED_RETRY_SECONDS)
            except Gone:
                log.info("%s: resourceVersion %s is gone; listing again", self._what(), version)
                version = None
            except Exception as exc:  # transport errors, 5xx, 403: retry, never crash
                log.warning("%s: watch failed (%s); again in %.0f s", self._what(), exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _what(self) -> str:
        return f"{self.kind.kind} in {self.namespace or 'every namespace'}"

    def _unserved(self) -> None:
        if self.served:
            log.info("%s: not served by the API server; looking again later", self._what())
        self.served = False
        self._replace([])
        self.synced.set()  # nothing to wait for: reads find nothing, as a GET would

    async def _relist(self) -> str | None:
        """List every object in pages; the contents are replaced only once the last page
        arrived, so a failed list leaves the previous (stale but whole) contents."""
        path = self.kind.path(self.namespace)
        params: dict[str, str] = {"limit": str(PAGE_SIZE)}
        if self.kind.label_selector:
            params["labelSelector"] = self.kind.label_selector
        items: list[Mapping[str, Any]] = []
        while True:
            page = await self._source.list_page(path, params)
            items += [i for i in page.get("items") or [] if isinstance(i, Mapping)]
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = str(meta["continue"])
        api_version = self.kind.api_version
        for item in items:  # list items carry neither apiVersion nor kind
            if isinstance(item, dict):
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", self.kind.kind)
        version = meta.get("resourceVersion")
        listed_at = str(version) if version else None
        self.served = True
        self._replace(items, listed_at=listed_at)
        self.relists += 1
        self.synced.set()
        return listed_at

    def _replace(self, items: Iterable[Mapping[str, Any]], *, listed_at: str | None = None) -> None:
        """Make the contents ``items`` (a list taken at ``listed_at``): what is no longer
        there was deleted meanwhile, unless the platform wrote it after the list was taken."""
        listed: set[_Key] = set()
        for obj in items:
            meta = obj.get("metadata") or {}
            listed.add((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
            self.put(obj, wake=True)
        for key, entry in list(self._objects.items()):
            if key not in listed and not _written_after(entry.version, listed_at):
                self.discard(*key, wake=True)

    async def _watch(self, version: str | None) -> str | None:
        path = self.kind.path(self.namespace)
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        if version:
            params["resourceVersion"] = version
        if self.kind.label_selector:
            params["labelSelector"] = self.kind.label_selector
        async for event in self._source.watch(path, params):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(str(obj.get("message") or "410"))
                raise RuntimeError(f"watch error: {obj.get('message') or obj}")
            version = _version(obj) or version
            if kind in ("ADDED", "MODIFIED"):
                self.put(obj, wake=True)
            elif kind == "DELETED":
                meta = obj.get("metadata") or {}
                self.discard(
                    str(meta.get("namespace") or ""), str(meta.get("name") or ""), wake=True
                )
        return version


def _written_after(version: str | None, listed_at: str | None) -> bool:
    """Whether an object held at ``version`` was written after a list taken at
    ``listed_at`` (so the list could not have shown it)."""
    return bool(version and listed_at and version != listed_at and newer(version, listed_at))


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _decode(raw: bytes) -> Mapping[str, Any]:
    decoded: Mapping[str, Any] = json.loads(raw)
    return decoded


class ObjectCache:
    """Every cached kind in every watched scope, and the tasks that keep them current.

    ``namespaces`` are the operator's (``--namespace``, globs allowed); none means every
    namespace. Plain names are watched one by one; with a glob, or every namespace, each
    kind is watched cluster-wide and only the namespaces that match are kept.
    """

    def __init__(
        self,
        kinds: Sequence[Kind],
        *,
        source: Source,
        namespaces: Sequence[str] = (),
        on_change: Callable[[str, str], None],
        transform: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda o: o,
    ) -> None:
        plain = bool(namespaces) and not any(_is_glob(n) for n in namespaces)
        scopes: list[str | None] = list(namespaces) if plain else [None]

        def keep(ns: str) -> bool:
            return not namespaces or any(fnmatch.fnmatchcase(ns, p) for p in namespaces)

        self._caches: dict[tuple[str, str, str | None], KindCache] = {
            (k.api_version, k.kind, scope): KindCache(
                k,
                source=source,
                namespace=scope,
                on_change=on_change,
                transform=transform,
                keep=keep,
            )
            for k in kinds
            for scope in scopes
        }
        self._cluster_wide = not plain
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(c.run()) for c in self._caches.values()]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def cache(self, api_version: str, kind: str, namespace: str) -> KindCache | None:
        scope = None if self._cluster_wide else namespace
        return self._caches.get((api_version, kind, scope))

    async def synced(
        self, api_version: str, kind: str, namespace: str, *, wait: float
    ) -> KindCache | None:
        """The cache of ``kind`` in ``namespace`` once it has listed (waiting at most
        ``wait`` seconds); None when there is none, or it has not listed yet: read the API."""
        found = self.cache(api_version, kind, namespace)
        if found is None or not self._tasks:
            return None
        if not found.synced.is_set() and not found.waited_in_vain:
            try:
                await asyncio.wait_for(found.synced.wait(), wait)
            except TimeoutError:
                found.waited_in_vain = True
                log.warning(
                    "%s has not listed in %.0f s: reading the API server", found.label, wait
                )
        return found if found.synced.is_set() else None

    def all(self) -> list[KindCache]:
        return list(self._caches.values())


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


__all__ = ["Gone", "Kind", "KindCache", "ObjectCache", "Source", "Unserved", "newer"]

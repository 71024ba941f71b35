"""The routing table from a Kubernetes ConfigMap, watched through the API.

``serinus router --routes configmap:NAMESPACE/NAME`` reads the ConfigMap's ``routes.json``
key (what the operator's Router provider writes) and follows changes with a watch, so a
change applies as soon as the API server sends it. Mounted ConfigMaps are refreshed by the
kubelet only every minute or so — far too slow for a rollback.

The API is spoken directly over ``httpx`` (only the operator's Kubernetes platform imports
the ``kubernetes`` client). Protocol, close to client-go's reflector (which LISTs; the
router's Role grants only get and watch):

1. GET the object: the current table (404: no table yet).
2. Watch ``?watch=true&fieldSelector=metadata.name=NAME`` from "now" (no resourceVersion:
   the server starts the stream with the object as it is, an ADDED event that changes
   nothing if the table is the one just read) and apply each ADDED/MODIFIED event;
   BOOKMARKs only move the resourceVersion. Not from the object's own resourceVersion: the
   server keeps a window of recent changes only and answers a watch from before it with
   410 (after an API server restart, any object unchanged since), and re-reading the object
   would give the same version again.
3. When the stream ends (the server's ``timeoutSeconds``), watch again from the last
   resourceVersion; on 410 Gone or an ERROR event, start over at 1.
4. On connection errors, back off (0.2 s doubling to 5 s) and start over at 1.

A table that does not parse, a ConfigMap without ``routes.json`` and a deleted ConfigMap
are rejected with a log line; the last good table stays in force. Nothing here ends the
router: every failure is logged and retried. If the server does not support watching,
the object is re-read every ``poll_interval`` seconds instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from serinus_serving.router.table import RoutingTable, TableError, parse_table

log = logging.getLogger(__name__)

ROUTES_KEY = "routes.json"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0


class KubeConfigError(ValueError):
    """The router cannot tell how to reach the Kubernetes API."""


class WatchGone(Exception):
    """The watch cannot continue from its resourceVersion: read the object again."""


class WatchUnsupported(Exception):
    """The server does not stream watch events: poll instead."""


class ApiError(Exception):
    """The API answered with an unexpected status."""


def parse_target(spec: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` (the part after ``configmap:``) as a pair."""
    namespace, sep, name = spec.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise KubeConfigError(f"expected configmap:NAMESPACE/NAME, got configmap:{spec}")
    return namespace, name


@dataclass(frozen=True)
class KubeConfig:
    """Where the API is and how to authenticate.

    In a pod: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` with the
    service account's token and CA. For tests and local use, ``SERINUS_KUBE_API`` (base
    URL), ``SERINUS_KUBE_TOKEN_FILE`` and ``SERINUS_KUBE_CA`` override those; a token file
    or CA file that does not exist is simply not used.
    """

    base_url: str
    token_file: Path | None
    ca_file: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KubeConfig:
        env = os.environ if env is None else env
        base_url = env.get("SERINUS_KUBE_API")
        if not base_url:
            host = env.get("KUBERNETES_SERVICE_HOST")
            port = env.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise KubeConfigError(
                    "configmap: routing tables need the Kubernetes API: not running in a pod "
                    "(KUBERNETES_SERVICE_HOST is unset) and SERINUS_KUBE_API is not set"
                )
            if ":" in host:  # IPv6
                host = f"[{host}]"
            base_url = f"https://{host}:{port}"
        token = env.get("SERINUS_KUBE_TOKEN_FILE", str(SERVICE_ACCOUNT / "token"))
        ca = env.get("SERINUS_KUBE_CA", str(SERVICE_ACCOUNT / "ca.crt"))
        return cls(
            base_url=base_url.rstrip("/"),
            token_file=Path(token) if token else None,
            ca_file=Path(ca) if ca else None,
        )

    def verify(self) -> ssl.SSLContext | bool:
        if self.ca_file is not None and self.ca_file.is_file():
            return ssl.create_default_context(cafile=str(self.ca_file))
        return True


class _Token:
    """The bearer token, re-read whenever its file changes (projected tokens rotate)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._value: str | None = None

    def header(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._stamp:
                self._value = self.path.read_text().strip() or None
                self._stamp = stamp
        except OSError:
            self._value, self._stamp = None, None
        return {"Authorization": f"Bearer {self._value}"} if self._value else {}


# --------------------------------------------------------------------------- pure parts
@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: dict[str, Any]

    @property
    def name(self) -> str | None:
        name = self.object.get("metadata", {}).get("name")
        return name if isinstance(name, str) else None

    @property
    def resource_version(self) -> str | None:
        rv = self.object.get("metadata", {}).get("resourceVersion")
        return rv if isinstance(rv, str) and rv else None


def parse_event(line: bytes | str) -> WatchEvent | None:
    """One line of a watch stream; None for a blank keep-alive line.

    Raises ``ValueError`` when the line is not a watch event (not JSON, no type, or an
    object that is not a mapping)."""
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"watch stream line is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError("watch stream line is not an object")
    kind, obj = raw.get("type"), raw.get("object")
    if not isinstance(kind, str) or not isinstance(obj, dict):
        if "items" in raw or "kind" in raw:
            raise WatchUnsupported("the server answered a watch with a plain object")
        raise ValueError("watch event without type or object")
    if not isinstance(obj.get("metadata", {}), dict):
        raise ValueError("watch event object has no metadata mapping")
    return WatchEvent(kind, obj)


def routes_text(obj: Mapping[str, Any]) -> str | None:
    """The ``routes.json`` key of a ConfigMap, or None when it lacks one."""
    data = obj.get("data")
    if not isinstance(data, dict):
        return None
    value = data.get(ROUTES_KEY)
    return value if isinstance(value, str) else None


def error_status(event: WatchEvent) -> int | None:
    """The HTTP code of an ERROR event's Status object (410 when the RV is too old)."""
    code = event.object.get("code")
    return code if isinstance(code, int) else None


# --------------------------------------------------------------------------- the source
class ConfigMapSource:
    def __init__(
        self,
        namespace: str,
        name: str,
        apply: Callable[[RoutingTable], None],
        *,
        rejected: Callable[[str], None],
        config: KubeConfig,
        poll_interval: float = 2.0,
        watch_timeout: int = 290,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.apply = apply
        self.rejected = rejected
        self.config = config
        self.poll_interval = poll_interval
        self.watch_timeout = watch_timeout
        self._token = _Token(config.token_file)
        self._client = client
        self._own_client = client is None
        self._task: asyncio.Task[None] | None = None
        # what was last offered (the routes.json text, or why there is none), so a replayed
        # ADDED or an unchanged re-read neither re-applies nor re-rejects
        self._offered: str | None = None
        self._backoff = BACKOFF_START

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    @property
    def _collection(self) -> str:
        return f"/api/v1/namespaces/{quote(self.namespace, safe='')}/configmaps"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.base_url,
                verify=self.config.verify(),
                timeout=httpx.Timeout(10.0, connect=3.0),
                headers={"Accept": "application/json"},
            )
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None and self._own_client:
            await self._client.aclose()

    # ------------------------------------------------------------------ offering
    def offer(self, text: str | None, why_missing: str = "") -> None:
        """Apply ``text`` as the routing table if it changed; reject it if invalid."""
        reason = why_missing or f"{self.where} has no {ROUTES_KEY} key"
        key = text if text is not None else "\0" + reason
        if key == self._offered:
            return
        self._offered = key
        if text is None:
            log.error("routing table rejected, keeping the last good one: %s", reason)
            self.rejected(reason)
            return
        try:
            table = parse_table(text)
        except TableError as exc:
            log.error("routing table %s rejected, keeping the last good one: %s", self.where, exc)
            self.rejected(str(exc))
            return
        self.apply(table)

    def handle(self, event: WatchEvent) -> str | None:
        """Act on one watch event; return the resourceVersion to resume from.

        Raises ``WatchGone`` for an ERROR event (the caller reads the object again)."""
        if event.type == "ERROR":
            raise WatchGone(f"watch error {error_status(event)}: {event.object.get('message', '')}")
        if event.type == "BOOKMARK":
            return event.resource_version
        if event.name is not None and event.name != self.name:
            return event.resource_version  # a server that ignores the fieldSelector
        if event.type in ("ADDED", "MODIFIED"):
            self.offer(routes_text(event.object))
        elif event.type == "DELETED":
            self.offer(None, f"{self.where} was deleted")
        else:
            log.debug("ignoring watch event %s", event.type)
        return event.resource_version

    # ------------------------------------------------------------------ API calls
    async def read(self) -> str | None:
        """GET the ConfigMap: offer its table and return its resourceVersion (None when
        it does not exist or carries none: then the watch starts from "now")."""
        assert self._client is not None
        response = await self._client.get(
            f"{self._collection}/{quote(self.name, safe='')}", headers=self._token.header()
        )
        if response.status_code == 404:
            self.offer(None, f"{self.where} does not exist")
            return None
        if response.status_code != 200:
            raise ApiError(f"GET {self.where}: {response.status_code} {response.text[:200]}")
        obj = response.json()
        self.offer(routes_text(obj))
        rv = obj.get("metadata", {}).get("resourceVersion")
        return rv if isinstance(rv, str) and rv else None

    async def watch(self, rv: str | None) -> str | None:
        """Follow the watch stream until it ends; return the last resourceVersion."""
        assert self._client is not None
        params = {
            "watch": "true",
            "fieldSelector": f"metadata.name={self.name}",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout),
        }
        if rv is not None:
            params["resourceVersion"] = rv
        # no event for longer than the server-side timeout: the connection is dead
        timeout = httpx.Timeout(10.0, connect=3.0, read=self.watch_timeout + 30.0)
        async with self._client.stream(
            "GET", self._collection, params=params, headers=self._token.header(), timeout=timeout
        ) as response:
            if response.status_code == 410:
                raise WatchGone("410 Gone")
            if response.status_code in (404, 405, 501):
                raise WatchUnsupported(f"watch answered {response.status_code}")
            if response.status_code != 200:
                body = (await response.aread())[:200]
                raise ApiError(f"watch {self.where}: {response.status_code} {body!r}")
            self._backoff = BACKOFF_START  # the API is answering
            async for line in response.aiter_lines():
                event = parse_event(line)
                if event is None:
                    continue
                rv = self.handle(event) or rv
        return rv

    # ------------------------------------------------------------------ loops
    async def _run(self) -> None:
        rv: str | None = None
        fresh = True  # read the object before watching
        while True:
            try:
                if fresh:
                    await self.read()
                    fresh, rv = False, None  # watch from "now": see step 2 above
                started = asyncio.get_running_loop().time()
                rv = await self.watch(rv)
                # a stream that ends at once, again and again, must not spin
                if asyncio.get_running_loop().time() - started < 1.0:
                    await self._sleep_backoff()
            except asyncio.CancelledError:
                raise
            except WatchGone as exc:
                log.info("watching %s: %s; reading it again", self.where, exc)
                fresh, rv = True, None
            except WatchUnsupported as exc:
                log.warning(
                    "the API server cannot watch %s (%s); re-reading it every %g s",
                    self.where,
                    exc,
                    self.poll_interval,
                )
                await self._poll()
            except Exception as exc:  # never end the router; keep the table
                log.warning(
                    "cannot reach the Kubernetes API for %s (%s: %s); retrying in %.1f s",
                    self.where,
                    type(exc).__name__,
                    exc,
                    self._backoff,
                )
                fresh, rv = True, None
                await self._sleep_backoff()

    async def _sleep_backoff(self) -> None:
        await asyncio.sleep(self._backoff * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _poll(self) -> None:
        while True:
            try:
                await self.read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end the router; keep the table
                log.warning("cannot read %s: %s: %s", self.where, type(exc).__name__, exc)
            await asyncio.sleep(self.poll_interval)

"""The router's ASGI application: a reverse proxy over a model's revisions.

Requests are buffered (model requests and responses are small) and forwarded unchanged to
the chosen revision over pooled keep-alive connections. The routing table is swapped
atomically: a request keeps the table and pool it started with, so a change never fails
one in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serinus_serving.router.compare import Incomparable, compare
from serinus_serving.router.metrics import RouterMetrics
from serinus_serving.router.selection import UnknownRevision, choose, sticky_point
from serinus_serving.router.table import Backend, RoutingTable
from serinus_serving.router.upstream import HOP_BY_HOP, UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PIN_HEADER = b"x-serinus-revision"
_JSON = (b"content-type", b"application/json")


def _is_inference(path: str) -> bool:
    return (path.startswith("/v2/models/") and path.endswith("/infer")) or (
        path.startswith("/v1/models/") and path.endswith(":predict")
    )


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _cookie(raw: bytes, name: str) -> str | None:
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class RouterApp:
    def __init__(self, *, max_body_bytes: int = 32 << 20, rng: random.Random | None = None) -> None:
        self.table: RoutingTable | None = None
        self.pools: dict[str, UpstreamPool] = {}
        self.max_body_bytes = max_body_bytes
        self.rng = rng or random.Random()  # noqa: S311 - traffic split, not security
        self.metrics = RouterMetrics(lambda: self.table.model if self.table else "")
        self.metrics.weights = lambda: self.table.weights if self.table else {}
        self.draining = False
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []

    # ------------------------------------------------------------------ table
    def apply(self, table: RoutingTable) -> None:
        """Make ``table`` current. Pools are kept per backend URL, so unchanged backends
        keep their warm connections; removed ones are closed once idle."""
        pools = {}
        for backend in table.backends.values():
            pools[backend.url] = self.pools.get(backend.url) or UpstreamPool(
                backend.host, backend.port
            )
        for url, pool in self.pools.items():
            if url not in pools:
                pool.close()
        self.table, self.pools = table, pools
        self.metrics.reloads["applied"] += 1
        log.info(
            "routing table applied: %s",
            ", ".join(f"{r}={b.weight}%" for r, b in sorted(table.backends.items()))
            + (
                f"; shadow {table.shadow.revision} at {table.shadow.percent:g}%"
                if table.shadow
                else ""
            ),
        )

    def rejected(self, reason: str) -> None:
        """An invalid table was offered; the current one stays."""
        self.metrics.reloads["rejected"] += 1

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith("/-/") or path == "/metrics":
            await self._own_endpoint(path, send)
            return
        await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self.on_startup:
                    await hook()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                for hook in self.on_shutdown:
                    await hook()
                await self.wait_for_shadows(grace=5)
                for pool in self.pools.values():
                    pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _own_endpoint(self, path: str, send: Send) -> None:
        if path == "/-/live":
            await _respond(send, 200, b'{"live":true}', [_JSON])
        elif path == "/-/ready":
            ready = self.table is not None and not self.draining
            body = orjson.dumps({"ready": ready, "model": self.table.model if self.table else None})
            await _respond(send, 200 if ready else 503, body, [_JSON])
        elif path == "/-/routes":
            table = self.table
            routes = None
            if table is not None:
                routes = {
                    "model": table.model,
                    "weights": table.weights,
                    "shadow": (
                        {"revision": table.shadow.revision, "percent": table.shadow.percent}
                        if table.shadow
                        else None
                    ),
                }
            await _respond(send, 200, orjson.dumps(routes), [_JSON])
        elif path == "/metrics":
            body = generate_latest(self.metrics.registry)
            await _respond(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
        else:
            await _respond(send, 404, _error(f"no router endpoint {path}"), [_JSON])

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _select(self, table: RoutingTable, headers: list[tuple[bytes, bytes]]) -> str:
        pinned = None
        sticky_key = None
        sticky = table.stickiness
        for name, value in headers:
            if name == PIN_HEADER:
                pinned = value.decode("latin-1")
            elif sticky is not None:
                if sticky.header is not None and name == sticky.header.encode():
                    sticky_key = value.decode("latin-1")
                elif sticky.cookie is not None and name == b"cookie":
                    sticky_key = _cookie(value, sticky.cookie) or sticky_key
        point = sticky_point(sticky_key) if sticky_key else self.rng.random() * 100
        return choose(table, pinned=pinned, point=point)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        table, pools = self.table, self.pools
        if table is None:
            await _respond(send, 503, _error("the router has no routing table yet"), [_JSON])
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            revision = self._select(table, headers)
        except UnknownRevision as exc:
            await _respond(send, 400, _error(str(exc)), [_JSON])
            return
        body = await self._read_body(receive)
        if body is None:
            await _respond(
                send, 413, _error(f"request body is over {self.max_body_bytes} bytes"), [_JSON]
            )
            return
        backend = table.backends[revision]
        pool = pools[backend.url]
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        forwarded = [(n, v) for n, v in headers if n != PIN_HEADER]
        request = pool.encode(scope["method"], target, forwarded, body)
        try:
            response = await pool.request(request, within=table.timeout_seconds)
        except UpstreamError as exc:
            self.metrics.upstream_errors[revision, exc.kind] += 1
            message = f"revision {revision} failed: {exc}"
            await _respond(send, exc.status, _error(message), [_JSON])
            self.metrics.observe(revision, exc.status, time.perf_counter() - started)
            return
        out_headers = [(n, v) for n, v in response.headers if n not in HOP_BY_HOP]
        out_headers.append((PIN_HEADER, revision.encode()))
        await _respond(send, response.status, response.body, out_headers)
        self.metrics.observe(revision, response.status, time.perf_counter() - started)

        shadow = table.shadow
        if (
            shadow is not None
            and shadow.revision != revision
            and response.status == 200
            and _is_inference(scope["path"])
            and (shadow.percent >= 100 or self.rng.random() * 100 < shadow.percent)
        ):
            self._mirror(table, revision, request_target=target, headers=forwarded, body=body,
                         primary=response.body)  # fmt: skip

    # ------------------------------------------------------------------ shadow
    def _mirror(
        self,
        table: RoutingTable,
        primary_revision: str,
        *,
        request_target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        primary: bytes,
    ) -> None:
        """Send a copy to the shadow off the response path, or drop it when saturated."""
        shadow = table.shadow
        assert shadow is not None
        key = (primary_revision, shadow.revision)
        if (
            self.draining
            or self.metrics.shadow_inflight >= shadow.max_concurrency
            or len(body) > shadow.max_body_bytes
        ):
            self.metrics.shadow[(*key, "dropped")] += 1
            return
        backend: Backend = table.backends[shadow.revision]
        pool = self.pools.get(backend.url)
        if pool is None:
            self.metrics.shadow[(*key, "dropped")] += 1
            return
        request = pool.encode("POST", request_target, headers, body)
        self.metrics.shadow_inflight += 1
        task = asyncio.get_running_loop().create_task(
            self._shadow_call(table, pool, request, primary, key)
        )
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow_call(
        self,
        table: RoutingTable,
        pool: UpstreamPool,
        request: bytes,
        primary: bytes,
        key: tuple[str, str],
    ) -> None:
        try:
            response = await pool.request(request, within=table.timeout_seconds)
            if response.status != 200:
                self.metrics.shadow[(*key, "error")] += 1
                return
            verdict = compare(primary, response.body, table.comparison)
        except (UpstreamError, Incomparable) as exc:
            log.debug("shadow %s failed: %s", key[1], exc)
            self.metrics.shadow[(*key, "error")] += 1
            return
        finally:
            self.metrics.shadow_inflight -= 1
        self.metrics.shadow[(*key, "agree" if verdict.agree else "disagree")] += 1
        if verdict.difference is not None:
            self.metrics.difference[key].observe(verdict.difference)

    async def wait_for_shadows(self, grace: float) -> None:
        if self._shadow_tasks:
            await asyncio.wait(list(self._shadow_tasks), timeout=grace)

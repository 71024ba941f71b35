"""The router's request handling: a reverse proxy over a model's revisions.

``RouterApp.handle`` takes a whole request and returns a whole response, independent of the
transport (``http1`` serves it; tests can call it directly). Requests are buffered (model
requests and responses are small) and forwarded unchanged to the chosen revision over pooled
keep-alive connections. The routing table is swapped atomically: a request keeps the table
and pool it started with, so a change never fails one in flight.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric

from serinus_serving.drift.outcomes import FeedbackError, parse_feedback
from serinus_serving.http1 import JSON, Request, Response, error_response, http_date
from serinus_serving.router import recorder as recording
from serinus_serving.router.feedback import FeedbackTotals, declare, join, prune
from serinus_serving.router.feedback import collect as collect_feedback
from serinus_serving.router.metrics import RouterMetrics
from serinus_serving.router.prediction_log import Api, PredictionLogError, body_request_id
from serinus_serving.router.recorder import Recorder, store_key
from serinus_serving.router.selection import UnknownRevision, choose, sticky_point
from serinus_serving.router.shadow_channel import ShadowChannel
from serinus_serving.router.shadow_protocol import Target, encode_copy
from serinus_serving.router.table import RoutingTable
from serinus_serving.router.upstream import HOP_BY_HOP, UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

PIN_HEADER = b"x-serinus-revision"
#: Request headers not forwarded: hop-by-hop ones, the pin (the router's own), and
#: ``expect`` (the router answers ``100-continue`` itself and sends the body at once).
NOT_FORWARDED = HOP_BY_HOP | {PIN_HEADER, b"expect"}
_PROMETHEUS = (b"content-type", CONTENT_TYPE_LATEST.encode())
#: Revisions whose labels are counted: those of the last tables (bounded label values).
KNOWN_REVISIONS = 64


def _is_inference(path: str) -> bool:
    return (path.startswith("/v2/models/") and path.endswith("/infer")) or (
        path.startswith("/v1/models/") and path.endswith(":predict")
    )


def _own(status: int, body: bytes, content_type: tuple[bytes, bytes] = JSON) -> Response:
    return Response(status, [content_type, (b"date", http_date())], body)


def _cookie(raw: bytes, name: str) -> str | None:
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class RouterApp:
    def __init__(
        self,
        *,
        max_body_bytes: int = 32 << 20,
        rng: random.Random | None = None,
        shadows: ShadowChannel | None = None,
        recorder: Recorder | None = None,
        request_id_header: str = "x-request-id",
    ) -> None:
        self.table: RoutingTable | None = None
        self.pools: dict[str, UpstreamPool] = {}
        #: Where the current table's shadow copies go (None: the table has no shadow).
        self.target: Target | None = None
        self.generation = 0
        self.shadows = shadows or ShadowChannel()
        self.max_body_bytes = max_body_bytes
        self.rng = rng or random.Random()  # noqa: S311 - traffic split, not security
        self.metrics = RouterMetrics(lambda: self.table.model if self.table else "")
        self.metrics.weights = lambda: self.table.weights if self.table else {}
        self.metrics.shadow_worker = self.shadows.totals
        self.metrics.shadow_worker_state = lambda: (self.shadows.ready, self.shadows.restarts)
        self.draining = False
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        #: The prediction log's writer; None when feedback goes to the backends instead.
        self.recorder = recorder
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.feedback = FeedbackTotals()
        self.known_revisions: OrderedDict[str, None] = OrderedDict()
        if recorder is not None:
            self.shadows.on_answers = recorder.shadow
            self.metrics.extra.append(self._collect_log)

    def _collect_log(self, model: str) -> Iterator[Metric]:
        assert self.recorder is not None
        yield from collect_feedback(self.feedback, lambda: model)
        dropped = self.shadows.totals().answers_dropped
        yield from recording.collect(self.recorder, model, shadow_dropped=dropped)

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
        self.generation += 1
        target = None
        if table.shadow is not None:
            backend = table.backends[table.shadow.revision]
            target = Target(
                generation=self.generation,
                revision=backend.revision,
                host=backend.host,
                port=backend.port,
                timeout_seconds=table.timeout_seconds,
                max_concurrency=table.shadow.max_concurrency,
                comparison=table.comparison,
            )
        self.table, self.pools, self.target = table, pools, target
        for revision in table.backends:
            self.known_revisions.pop(revision, None)
            self.known_revisions[revision] = None
        while len(self.known_revisions) > KNOWN_REVISIONS:
            self.known_revisions.popitem(last=False)
        if self.recorder is not None:  # the feedback counters at 0 from the start
            prune(self.feedback, self.known_revisions)  # bounded by the known revisions
            declare(self.feedback, table.backends, table.shadow.revision if table.shadow else None)
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

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        if self.recorder is not None:
            await self.recorder.start()
        await self.shadows.start()
        for hook in self.on_startup:
            await hook()

    async def shutdown(self, *, grace: float = 5.0) -> None:
        """Stop the table source, give shadow copies ``grace`` seconds, close the pools."""
        self.draining = True
        for hook in self.on_shutdown:
            await hook()
        await self.shadows.stop(grace=grace)
        if self.recorder is not None:
            await self.recorder.stop()
        for pool in self.pools.values():
            pool.close()

    # ------------------------------------------------------------------ requests
    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/-/") or path == "/metrics":
            return self._own_endpoint(path)
        if (
            self.recorder is not None
            and path.endswith("/feedback")
            and request.method == b"POST"
            and path.startswith("/v2/models/")
        ):
            return await self._feedback(request)
        return await self._proxy(request)

    def _own_endpoint(self, path: str) -> Response:
        if path == "/-/live":
            return _own(200, b'{"live":true}')
        if path == "/-/ready":
            ready = self.table is not None and not self.draining
            body = orjson.dumps({"ready": ready, "model": self.table.model if self.table else None})
            return _own(200 if ready else 503, body)
        if path == "/-/routes":
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
            return _own(200, orjson.dumps(routes))
        if path == "/metrics":
            return _own(200, generate_latest(self.metrics.registry), _PROMETHEUS)
        return error_response(404, f"no router endpoint {path}")

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

    async def _proxy(self, request: Request) -> Response:
        started = time.perf_counter()
        path = request.path
        table, pools, target = self.table, self.pools, self.target
        if table is None:
            return error_response(503, "the router has no routing table yet")
        try:
            revision = self._select(table, request.headers)
        except UnknownRevision as exc:
            return error_response(400, str(exc))
        pool = pools[table.backends[revision].url]
        head = request.method == b"HEAD"
        encoded = pool.encode(
            request.method, request.target, request.headers, request.body, skip=NOT_FORWARDED
        )
        try:
            response = await pool.request(encoded, within=table.timeout_seconds, head=head)
        except UpstreamError as exc:
            self.metrics.upstream_errors[revision, exc.kind] += 1
            self.metrics.observe(revision, exc.status, time.perf_counter() - started)
            return error_response(exc.status, f"revision {revision} failed: {exc}")
        out = [
            (n, v)
            for n, v in response.headers
            if n not in HOP_BY_HOP or (head and n == b"content-length")
        ]
        out.append((PIN_HEADER, revision.encode()))
        self.metrics.observe(revision, response.status, time.perf_counter() - started)
        request_id = ""
        if self.recorder is not None and response.status == 200 and _is_inference(path):
            request_id = self._record(
                table.model, revision, request=request, out=out, body=response.body
            )
        after = None
        shadow = table.shadow
        if (
            shadow is not None
            and target is not None
            and shadow.revision != revision
            and response.status == 200
            and _is_inference(request.path)
            and (shadow.percent >= 100 or self.rng.random() * 100 < shadow.percent)
        ):
            after = functools.partial(
                self._mirror,
                table,
                target,
                revision,
                request=request,
                primary=response.body,
                request_id=request_id,
            )
        return Response(response.status, out, response.body, after)

    # ------------------------------------------------------------------ shadow
    def _mirror(
        self,
        table: RoutingTable,
        target: Target,
        primary_revision: str,
        *,
        request: Request,
        primary: bytes,
        request_id: str = "",
    ) -> None:
        """Once the primary's response is written, hand a copy to the shadow worker, or
        drop and count it: copies are bounded, never queued behind the primary."""
        shadow = table.shadow
        assert shadow is not None
        pool = self.pools.get(table.backends[shadow.revision].url)
        if self.draining or pool is None or len(request.body) > shadow.max_body_bytes:
            self.metrics.shadow[primary_revision, shadow.revision, "dropped"] += 1
            return
        encoded = pool.encode(
            request.method, request.target, request.headers, request.body, skip=NOT_FORWARDED
        )
        log_key = store_key(table.model, request_id).encode() if request_id else b""
        copy = encode_copy(target.generation, primary_revision.encode(), encoded, primary, log_key)
        if not self.shadows.offer(target, copy, primary=primary_revision):
            self.metrics.shadow[primary_revision, shadow.revision, "dropped"] += 1

    # ------------------------------------------------------------------ prediction log
    def _record(
        self,
        model: str,
        revision: str,
        *,
        request: Request,
        out: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> str:
        """Queue the primary's answer under the request's id: the configured header's, else
        (OIP v2) the body's ``id``, else a new one returned in that header. Constant time.
        A v1 body is never searched: its ``id`` fields are the instances'."""
        assert self.recorder is not None
        wanted = self.request_id_header
        api: Api = "v1" if request.path.startswith("/v1/") else "v2"
        request_id = None
        for name, value in request.headers:
            if name == wanted and value:
                request_id = value.decode("latin-1")
                break
        else:
            if api == "v2":
                request_id = body_request_id(request.body)
        if request_id is None:
            request_id = secrets.token_hex(16)
            out.append((wanted, request_id.encode()))
        self.recorder.primary(model, request_id, revision, body, api)
        return request_id

    async def _feedback(self, request: Request) -> Response:
        """``POST /v2/models/{m}[/versions/{v}]/feedback``: labels joined with every answer
        the prediction log holds for their ids (docs/drift.md, section 5)."""
        table = self.table
        if table is None:
            return error_response(503, "the router has no routing table yet")
        parts = request.path.split("/")  # "", v2, models, m, [versions, v,] feedback
        if len(parts) not in (5, 7) or (len(parts) == 7 and parts[4] != "versions"):
            return error_response(404, f"no endpoint {request.path}")
        if parts[3] != table.model:
            return error_response(404, f"model {parts[3]!r} is not served here")
        versions = {b.version for b in table.backends.values() if b.version}
        if len(parts) == 7 and versions and parts[5] not in versions:
            return error_response(404, f"model {parts[3]!r} has no version {parts[5]!r}")
        assert self.recorder is not None
        try:
            labels = parse_feedback(request.body)
            await self.recorder.flush()  # an answer still queued is joined all the same
            result = await join(
                self.recorder.store,
                table.model,
                labels,
                known=self.known_revisions,
                totals=self.feedback,
            )
        except FeedbackError as exc:
            return error_response(exc.status, exc.message)
        except PredictionLogError as exc:
            return error_response(503, f"the prediction log is unavailable: {exc}")
        return _own(200, orjson.dumps(result))

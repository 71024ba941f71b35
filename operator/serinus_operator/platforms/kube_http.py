"""The operator's HTTP client for the Kubernetes API: JSON requests, paged lists and watch
streams over aiohttp (the library kopf already runs on).

Chosen by measurement (``bench/kube_client.py``, BENCHMARKS.md): against the real API
server, aiohttp spends about a third of httpx's client CPU per request at the same
throughput, and its connection pool's cost does not grow with the number of waiting
requests. Requests and watches have separate pools: a watch holds its connection for
minutes and must never take one a pass is waiting for. Every request is paced by the
client-side token bucket (``--kube-api-qps``/``--kube-api-burst``), and a ``429`` is
sent again after its ``Retry-After``. Answers feed :class:`ApiHealth`: no answer, or a
5xx, marks the API down until anything answers again.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from serinus_operator import __version__
from serinus_operator.platforms.base import Conflict
from serinus_operator.platforms.health import ApiHealth
from serinus_operator.platforms.ratelimit import TokenBucket, retry_after
from serinus_operator.platforms.watch_cache import WATCH_SECONDS, Gone, Unserved

USER_AGENT: Final = f"serinus-operator/{__version__}"
#: The one field manager of every child the operator writes (server-side apply).
FIELD_MANAGER: Final = "serinus-operator"
APPLY_PATCH: Final = "application/apply-patch+yaml"
#: A request answered 429 is sent again after its Retry-After this many times at most.
TOO_MANY_RETRIES: Final = 3
#: A watch is silent at most this long: the API server ends it (``timeoutSeconds``) and
#: sends bookmarks well before.
WATCH_READ_TIMEOUT: Final = WATCH_SECONDS + 60.0
#: One watch event larger than this is refused (the API server stores at most ~1.5 MiB
#: per object): a broken stream cannot grow the operator without bound.
MAX_EVENT_BYTES: Final = 16 * 2**20


class ApiError(Exception):
    """A Kubernetes API answer other than success, with its ``Status`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class ApiUnreachable(ConnectionError):
    """No answer from the API server: refused, reset, timed out, or TLS failed."""


@dataclass
class Credentials:
    """How to reach the API server: what kubeconfig or the service account says."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    default_namespace: str | None = None
    token_file: Path | None = None  # re-read: projected service-account tokens rotate
    _refresh: Any = field(default=None, repr=False)
    _refreshed: float = field(default=0.0, repr=False)

    def bearer(self) -> str | None:
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError:
                return self.token
        if self._refresh is not None and time.monotonic() - self._refreshed > 60:
            self._refreshed = time.monotonic()
            self.token = self._refresh() or self.token
        return self.token


def tls_context(credentials: Credentials) -> ssl.SSLContext:
    """The TLS settings of a kubeconfig: its CA (or the system's), its client certificate."""
    if credentials.ca_path:
        ctx = ssl.create_default_context(cafile=credentials.ca_path)
    else:
        ctx = ssl.create_default_context()
    if credentials.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if credentials.cert_path:
        ctx.load_cert_chain(credentials.cert_path, credentials.key_path or None)
    return ctx


def _message(status: int, body: bytes) -> str:
    """The ``Status`` message of an error answer, else the start of its body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:500].decode(errors="replace") or f"HTTP {status}"
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return body[:500].decode(errors="replace")


_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class KubeClient:
    """A small async JSON client for the calls the operator makes."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
        health: ApiHealth | None = None,
        limiter: TokenBucket | None = None,
        pool_size: int = 32,
    ) -> None:
        self.credentials = credentials
        self.health = health or ApiHealth(self.probe)
        self.limiter = limiter
        tls: ssl.SSLContext | bool = (
            tls_context(credentials) if credentials.server.startswith("https") else False
        )
        self._http = aiohttp.ClientSession(
            credentials.server,
            connector=aiohttp.TCPConnector(limit=pool_size, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )
        self._watches = aiohttp.ClientSession(
            credentials.server,
            connector=aiohttp.TCPConnector(limit=0, ssl=tls),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=WATCH_READ_TIMEOUT
            ),
        )

    async def aclose(self) -> None:
        await self.health.aclose()
        await self._http.close()
        await self._watches.close()

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        token = self.credentials.bearer()
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def _pace(self) -> None:
        if self.limiter is not None:
            wait = self.limiter.reserve(asyncio.get_running_loop().time())
            if wait > 0:
                await asyncio.sleep(wait)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """The decoded answer, or None for 404; raises Conflict for 409, ApiError for
        other errors, ApiUnreachable without an answer."""
        headers = self._headers()
        content = None
        if body is not None:
            headers["content-type"] = content_type
            content = json.dumps(body).encode()
        for attempt in range(TOO_MANY_RETRIES + 1):
            status, wait, answer = await self._send(method, path, content, headers, params)
            if status != 429 or attempt == TOO_MANY_RETRIES:
                break
            # Priority and fairness (or a webhook) asked this client to slow down.
            await asyncio.sleep(retry_after(wait))
        if status >= 500:
            self.health.failed()
        else:
            self.health.succeeded()
        if status == 404:
            return None
        if status == 409:
            raise Conflict(_message(status, answer))
        if status >= 400:
            raise ApiError(status, _message(status, answer))
        return json.loads(answer) if answer else {}

    async def _send(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
    ) -> tuple[int, str | None, bytes]:
        """(status, Retry-After, body) of one request."""
        await self._pace()
        try:
            async with self._http.request(
                method, path, data=content, headers=headers, params=params
            ) as response:
                return response.status, response.headers.get("retry-after"), await response.read()
        except _TRANSPORT_ERRORS as exc:
            self.health.failed()
            raise ApiUnreachable(f"{method} {path}: {exc!r}") from exc

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def probe(self) -> bool:
        """Whether the API server is ready (``/readyz`` is readable by every client)."""
        try:
            async with self._http.get(
                "/readyz", timeout=aiohttp.ClientTimeout(total=2.0)
            ) as response:
                await response.read()
                return response.status == 200
        except _TRANSPORT_ERRORS:
            return False

    async def list(self, path: str, *, label_selector: str | None = None) -> list[Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        found = await self.request("GET", path, params=params)
        items: list[Any] = [] if found is None else list(found.get("items") or [])
        return items

    async def list_page(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        """One page of a list (the watch cache's); 404 and 410 raise what it expects."""
        try:
            found = await self.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from exc
            raise
        if found is None:
            raise Unserved(path)
        page: Mapping[str, Any] = found
        return page

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Mapping[str, Any]]:
        """The events of one watch request, one JSON object per line, as they come."""
        await self._pace()
        try:
            async with self._watches.get(path, params=params, headers=self._headers()) as r:
                if r.status >= 300:
                    self._refused(r.status, path, await r.read())
                self.health.succeeded()
                async for line in lines(r.content.iter_any()):
                    event: Mapping[str, Any] = json.loads(line)
                    yield event
        except _TRANSPORT_ERRORS as exc:
            self.health.failed()
            raise ApiUnreachable(f"watch {path}: {exc!r}") from exc

    def _refused(self, status: int, path: str, body: bytes) -> None:
        if status == 410:
            raise Gone(_message(status, body))
        if status == 404:
            raise Unserved(path)
        if status >= 500:
            self.health.failed()
        raise ApiError(status, _message(status, body))

    async def create(self, path: str, obj: Mapping[str, Any]) -> Any:
        return await self.request("POST", path, body=obj)

    async def merge_patch(
        self, path: str, patch: Mapping[str, Any], *, field_manager: str | None = None
    ) -> Any:
        params = {"fieldManager": field_manager} if field_manager else None
        return await self.request(
            "PATCH", path, body=patch, params=params, content_type="application/merge-patch+json"
        )

    async def json_patch(self, path: str, operations: Sequence[Mapping[str, Any]]) -> Any:
        return await self.request(
            "PATCH",
            path,
            body=[dict(o) for o in operations],
            content_type="application/json-patch+json",
        )

    async def server_side_apply(
        self, path: str, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER
    ) -> Any:
        """Server-side apply ``obj`` (JSON is YAML) as ``field_manager``, taking over fields
        another manager set (``force``): the object as stored, or None for 404."""
        return await self.request(
            "PATCH",
            path,
            body=obj,
            params={"fieldManager": field_manager, "force": "true"},
            content_type=APPLY_PATCH,
        )

    async def delete(self, path: str) -> Any:
        return await self.request(
            "DELETE",
            path,
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )


async def lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The non-empty lines of a stream that arrives in ``chunks`` of any size, each line at
    most :data:`MAX_EVENT_BYTES`."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > MAX_EVENT_BYTES:
            raise ValueError(f"a watch event over {MAX_EVENT_BYTES} bytes")
    if buffer.strip():
        yield bytes(buffer)


__all__ = [
    "APPLY_PATCH",
    "FIELD_MANAGER",
    "USER_AGENT",
    "ApiError",
    "ApiUnreachable",
    "Credentials",
    "KubeClient",
    "tls_context",
]

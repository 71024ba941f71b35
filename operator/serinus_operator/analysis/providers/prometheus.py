"""Prometheus over its HTTP API (``/api/v1/query``).

Retries with exponential back-off on connection errors and 5xx, but never past the
caller's deadline (an analysis interval): a late answer is worth less than an honest
Inconclusive. A bearer token is read from a file and re-read when the file changes, as
projected service-account tokens rotate.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from serinus_operator.analysis.evaluate import QueryResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    timeout_seconds: float = 5.0
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False


class _TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._token = ""

    def current(self) -> str:
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            self._token = self.path.read_text().strip()
            self._stamp = stamp
        return self._token


def _sample_value(raw: Any) -> float:
    # Prometheus encodes sample values as strings: "1.5", "NaN", "+Inf".
    return float(raw[1])


def _labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


class PrometheusProvider:
    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        verify: ssl.SSLContext | bool = True
        if config.insecure_skip_verify:
            verify = False
        elif config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
        self._client = httpx.AsyncClient(
            base_url=config.url.rstrip("/"), verify=verify, timeout=config.timeout_seconds
        )
        self._token = _TokenFile(config.bearer_token_file) if config.bearer_token_file else None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"authorization": f"Bearer {self._token.current()}"}

    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        deadline = time.monotonic() + deadline_seconds
        delay = 0.25
        attempt = 0
        last = "no attempt made"
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return QueryResult(error=f"Prometheus unavailable: {last}")
            try:
                response = await self._client.get(
                    "/api/v1/query",
                    params={"query": promql},
                    headers=self._headers(),
                    timeout=min(self.config.timeout_seconds, remaining),
                )
            except (httpx.TransportError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc or 'no detail'} (attempt {attempt})"
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return self._decode(response)
                last = f"HTTP {response.status_code} (attempt {attempt})"
            if time.monotonic() + delay >= deadline:
                return QueryResult(error=f"Prometheus unavailable: {last}")
            await asyncio.sleep(delay)
            delay *= 2

    @staticmethod
    def _decode(response: httpx.Response) -> QueryResult:
        try:
            body = response.json()
        except ValueError:
            return QueryResult(error=f"Prometheus answered HTTP {response.status_code}, not JSON")
        if body.get("status") != "success":
            return QueryResult(
                error=f"Prometheus refused the query: {body.get('errorType')}: {body.get('error')}"
            )
        data: dict[str, Any] = body.get("data") or {}
        kind: Any = data.get("resultType")
        result: Any = data.get("result")
        try:
            if kind == "vector":
                values = tuple(_sample_value(s["value"]) for s in result)
                labels = tuple(_labels(s.get("metric")) for s in result)
                return QueryResult(values, labels=labels)
            if kind == "scalar":
                return QueryResult((_sample_value(result),))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return QueryResult(error=f"unexpected Prometheus answer: {exc}")
        return QueryResult(error=f"query must yield a vector or scalar, got {kind}")

    async def is_online(self) -> bool:
        try:
            response = await self._client.get("/-/ready", headers=self._headers())
        except (httpx.TransportError, OSError):
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["PrometheusConfig", "PrometheusProvider"]

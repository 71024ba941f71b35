"""``http://`` and ``https://``: one file, streamed, retried on connection errors, 429 and
5xx. Certificates are verified against the system bundle or ``SSL_CERT_FILE``."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import httpx

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import (
    CHUNK,
    Fetched,
    Limits,
    Retryable,
    Sink,
    redacted,
    retrying,
)


class HttpSource:
    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched:
        name = Path(urllib.parse.urlparse(uri).path).name or "model.onnx"
        target = into / name
        shown = redacted(uri)
        return Fetched(
            retrying(
                f"downloading {shown}", limits.attempts, lambda: self._once(uri, target, limits)
            )
        )

    def _once(self, uri: str, target: Path, limits: Limits) -> Path:
        try:
            with httpx.stream("GET", uri, timeout=limits.timeout, follow_redirects=True) as r:
                if r.status_code >= 500 or r.status_code == 429:
                    raise Retryable(f"HTTP {r.status_code}")
                if r.status_code != 200:
                    raise ModelLoadError(
                        f"downloading {redacted(uri)} failed: HTTP {r.status_code}"
                    )
                sink = Sink(
                    target, uri=redacted(uri), budget=[limits.max_bytes], limit=limits.max_bytes
                )
                with sink.filling():
                    declared = r.headers.get("content-length")
                    sink.declared(int(declared) if declared and declared.isdigit() else None)
                    for chunk in r.iter_bytes(CHUNK):
                        sink.write(chunk)
                return sink.done()
        except httpx.TransportError as exc:
            message = str(exc).replace(uri, redacted(uri))  # httpx may name the URL
            raise Retryable(message or type(exc).__name__) from exc

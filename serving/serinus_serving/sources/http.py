"""``http://`` and ``https://``: one file, streamed, retried on connection errors, 429 and
5xx; a big one from a server that serves ranges is fetched in parts (``parts.py``).
Certificates are verified against the system bundle or ``SSL_CERT_FILE``."""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Iterator
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
from serinus_serving.sources.parts import fetch_in_parts, in_parts


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
        shown = redacted(uri)
        try:
            with httpx.Client(timeout=limits.timeout, follow_redirects=True) as client:
                with client.stream("GET", uri) as r:
                    _check(r, shown)
                    declared = r.headers.get("content-length")
                    size = int(declared) if declared and declared.isdigit() else None
                    ranged = r.headers.get("accept-ranges", "").lower() == "bytes"
                    if not (ranged and size is not None and in_parts(size, limits=limits)):
                        return _stream(r, target, size=size, uri=shown, limits=limits)
                    url, etag = str(r.url), r.headers.get("etag")
                # The first answer only said how big the file is and that ranges are served.
                read = functools.partial(_range, client, url, etag=etag, uri=shown)
                assert size is not None
                budget = [limits.max_bytes]
                return fetch_in_parts(
                    read, target, size=size, uri=shown, budget=budget, limits=limits
                )
        except httpx.TransportError as exc:
            message = str(exc).replace(uri, shown)  # httpx may name the URL
            raise Retryable(message or type(exc).__name__) from exc


def _check(r: httpx.Response, shown: str, *, expected: int = 200) -> None:
    if r.status_code >= 500 or r.status_code == 429:
        raise Retryable(f"HTTP {r.status_code}")
    if r.status_code == 412:
        raise ModelLoadError(f"{shown} changed while it was being fetched")
    if r.status_code != expected:
        raise ModelLoadError(f"downloading {shown} failed: HTTP {r.status_code}")


def _stream(r: httpx.Response, target: Path, *, size: int | None, uri: str, limits: Limits) -> Path:
    sink = Sink(target, uri=uri, budget=[limits.max_bytes], limit=limits.max_bytes)
    with sink.filling():
        sink.declared(size)
        for chunk in r.iter_bytes(CHUNK):
            sink.write(chunk)
    return sink.done()


def _range(
    client: httpx.Client, url: str, start: int, end: int, *, etag: str | None, uri: str
) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of the file, as long as it is still the version that was
    sized (``If-Match``)."""
    headers = {"range": f"bytes={start}-{end - 1}"}
    if etag:
        headers["if-match"] = etag
    try:
        with client.stream("GET", url, headers=headers) as r:
            _check(r, uri, expected=206)
            yield from r.iter_bytes(CHUNK)
    except httpx.TransportError as exc:
        message = str(exc).replace(url, uri)  # httpx may name the URL
        raise Retryable(message or type(exc).__name__) from exc

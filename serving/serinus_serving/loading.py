"""Fetch a model file from a path, ``file://`` or ``http(s)://`` and verify its sha256.

Downloads stream to disk under a size limit and are retried on transient network
errors; a checksum mismatch is never retried (the bytes are wrong, not late).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx

from serinus_serving.errors import ModelLoadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 4 << 30


@dataclass(frozen=True, slots=True)
class FetchedModel:
    path: Path
    sha256: str
    size: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(uri: str, actual: str, expected: str | None) -> None:
    if expected and actual.lower() != expected.strip().lower():
        raise ModelLoadError(
            f"sha256 mismatch for {uri}: expected {expected.lower()}, got {actual}"
        )


def fetch_model(
    uri: str,
    *,
    sha256: str | None = None,
    dest_dir: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 30.0,
    attempts: int = 3,
) -> FetchedModel:
    """Return a verified local copy of the model at ``uri`` (a path is used in place)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return _download(
            uri,
            sha256=sha256,
            dest_dir=dest_dir,
            max_bytes=max_bytes,
            timeout=timeout,
            attempts=attempts,
        )
    if parsed.scheme == "file":
        path = Path(urllib.parse.unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(uri)
    else:
        raise ModelLoadError(
            f"unsupported model URI scheme {parsed.scheme!r} in {uri!r}: "
            "use a path, file://, http:// or https://"
        )
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist or is not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelLoadError(f"model file {path} is {size} bytes, over the limit of {max_bytes}")
    digest = file_sha256(path)
    _check_digest(uri, digest, sha256)
    return FetchedModel(path=path, sha256=digest, size=size)


def _download(
    uri: str,
    *,
    sha256: str | None,
    dest_dir: Path | None,
    max_bytes: int,
    timeout: float,
    attempts: int,
) -> FetchedModel:
    target_dir = dest_dir or Path(tempfile.mkdtemp(prefix="serinus-model-"))
    target_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(uri).path).name or "model.onnx"
    target = target_dir / name
    if sha256 and target.is_file() and file_sha256(target) == sha256.strip().lower():
        log.info("model %s already present at %s with the expected sha256", uri, target)
        return FetchedModel(path=target, sha256=sha256.strip().lower(), size=target.stat().st_size)
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(uri, target, sha256=sha256, max_bytes=max_bytes, timeout=timeout)
        except (httpx.TransportError, _RetryableStatus) as exc:
            if attempt == attempts:
                raise ModelLoadError(
                    f"downloading {uri} failed after {attempts} attempts: {exc}"
                ) from exc
            log.warning("downloading %s failed (%s); retrying in %.1fs", uri, exc, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class _RetryableStatus(Exception):
    pass


def _download_once(
    uri: str, target: Path, *, sha256: str | None, max_bytes: int, timeout: float
) -> FetchedModel:
    digest = hashlib.sha256()
    size = 0
    partial = target.with_name(target.name + ".partial")
    with httpx.stream("GET", uri, timeout=timeout, follow_redirects=True) as response:
        if response.status_code >= 500 or response.status_code == 429:
            raise _RetryableStatus(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ModelLoadError(f"downloading {uri} failed: HTTP {response.status_code}")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ModelLoadError(
                f"model at {uri} is {declared} bytes, over the limit of {max_bytes}"
            )
        with partial.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    partial.unlink(missing_ok=True)
                    raise ModelLoadError(f"model at {uri} is over the limit of {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
    actual = digest.hexdigest()
    try:
        _check_digest(uri, actual, sha256)
    except ModelLoadError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    log.info("downloaded %s (%d bytes, sha256 %s) to %s", uri, size, actual, target)
    return FetchedModel(path=target, sha256=actual, size=size)

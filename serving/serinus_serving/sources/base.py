"""What every model source shares: the protocol, the limits of a fetch, a sink that
streams to disk under a size limit, retries with back-off, and how a fetched directory is
identified by its content."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import httpx

from serinus_serving.errors import ModelLoadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much a fetch may cost: bytes in all, seconds per request, tries per request."""

    max_bytes: int
    timeout: float = 30.0
    attempts: int = 3


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a source fetched: the ``.onnx`` file the server loads and, when the model is a
    directory of files (external data, a profile beside it), that directory: the model is
    then identified by all of them."""

    model: Path
    root: Path | None = None


class ModelSource(Protocol):
    """One kind of store. ``fetch`` puts the model under ``into`` (or, for a local path,
    leaves it where it is)."""

    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched: ...


class Retryable(Exception):
    """A failure that may pass: a dropped connection, a 5xx, a 429."""


class Sink:
    """Writes one file from chunks, inside :meth:`filling`: to ``NAME.partial``, renamed
    when complete, refused (and dropped) past the bytes left in the fetch's budget, which
    a fetch's files share (``budget``: a one-element list of the bytes still allowed)."""

    def __init__(self, target: Path, *, uri: str, budget: list[int], limit: int) -> None:
        self.target = target
        self.partial = target.with_name(target.name + ".partial")
        self.uri = uri
        self.budget = budget
        self.limit = limit
        self.size = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.partial.open("wb")

    def declared(self, size: int | None) -> None:
        """Refuse at once what says it is too large."""
        if size is not None and size > self.budget[0]:
            raise ModelLoadError(f"model at {self.uri} is over the limit of {self.limit} bytes")

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self.budget[0] -= len(chunk)
        if self.budget[0] < 0:
            raise ModelLoadError(f"model at {self.uri} is over the limit of {self.limit} bytes")
        self._out.write(chunk)

    @contextlib.contextmanager
    def filling(self) -> Iterator[Sink]:
        """Around writing the file: any failure drops it, and a dropped connection is
        :class:`Retryable`."""
        try:
            yield self
        except httpx.TransportError as exc:
            self.abort()
            raise Retryable(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self.abort()
            raise

    def done(self) -> Path:
        self._out.close()
        self.partial.replace(self.target)
        return self.target

    def abort(self) -> None:
        """Drop the file; its bytes no longer count against the budget (a retry may
        fetch them again)."""
        self._out.close()
        self.partial.unlink(missing_ok=True)
        self.budget[0] += self.size
        self.size = 0


def retrying(what: str, attempts: int, fn: Callable[[], T]) -> T:
    """``fn()``, tried up to ``attempts`` times while it raises :class:`Retryable`."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Retryable as exc:
            if attempt == attempts:
                raise ModelLoadError(f"{what} failed after {attempts} attempts: {exc}") from exc
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """The digest of a directory's files: sha256 over ``sha256sum``'s lines for them,
    sorted by path (``cd DIR && find . -type f | sed 's|^./||' | LC_ALL=C sort |
    xargs sha256sum | sha256sum``), so it depends on content and names only."""
    lines = [
        f"{file_sha256(path)}  {path.relative_to(root).as_posix()}\n"
        for path in sorted(p for p in root.rglob("*") if p.is_file())
    ]
    lines.sort(key=lambda line: line[66:].encode())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def redacted(uri: str) -> str:
    """``uri`` fit for a log line, an error or a status: an http(s) URL's query (a presigned
    URL's signature and expiry) becomes ``?…`` and its user and password are dropped. Other
    schemes carry no secret in their URI (credentials come from the environment)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not (parts.query or "@" in parts.netloc):
        return uri
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, "…" if parts.query else "", "")
    )


def quiet_client_logs() -> None:
    """httpx and httpcore log every request's URL at INFO and DEBUG, a presigned URL's
    signature with it: a process that fetches models keeps them to warnings."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def safe_relative(name: str, *, uri: str) -> Path:
    """A file name from a store, as a path that stays inside the fetch directory."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ModelLoadError(f"{uri} names a file outside the model directory: {name!r}")
    return path


def pick_model(root: Path, *, uri: str) -> Path:
    """The model file among a fetched directory's files: its only ``.onnx`` at the top,
    else ``model.onnx``."""
    candidates = sorted(p for p in root.glob("*.onnx") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    if (root / "model.onnx").is_file():
        return root / "model.onnx"
    found = ", ".join(p.name for p in candidates) or "none"
    raise ModelLoadError(
        f"{uri} holds no single model: expected one .onnx file at its top (found {found})"
    )

"""What every model source shares: the protocol, the limits of a fetch, a sink that
streams to disk under a size limit, retries with back-off, and how a fetched directory is
identified by its content."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
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
    """How much a fetch may cost: bytes in all, seconds per request, tries per request;
    and how a big file is fetched: in parts of ``part_bytes``, ``workers`` at once, when it
    is at least ``parts_from`` bytes and its store serves ranges (``sources/parts.py``)."""

    max_bytes: int
    timeout: float = 30.0
    attempts: int = 3
    workers: int = 4
    part_bytes: int = 16 << 20
    parts_from: int = 64 << 20


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


class Progress:
    """A fetch's progress in the log, every ``every`` seconds and at the end: a big model
    takes minutes, and a pod stuck in ``Init`` should say how far it got. Thread-safe."""

    def __init__(self, name: str, total: int | None, *, every: float = 5.0) -> None:
        self.name, self.total, self.every = name, total, every
        self.done = 0
        self.started = self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._last < self.every:
                return
            self._last = now
        log.info("fetching %s: %s", self.name, self._said(now))

    def finished(self) -> None:
        log.info("fetched %s: %s", self.name, self._said(time.monotonic()))

    def _said(self, now: float) -> str:
        mib = self.done / (1 << 20)
        rate = mib / max(now - self.started, 1e-6)
        if self.total:
            share = 100 * self.done / self.total
            of = f"{mib:.1f} of {self.total / (1 << 20):.1f} MiB ({share:.0f}%)"
        else:
            of = f"{mib:.1f} MiB"
        return f"{of} in {now - self.started:.1f} s, {rate:.1f} MiB/s"


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
        self.progress = Progress(target.name, None)

    def declared(self, size: int | None) -> None:
        """Refuse at once what says it is too large."""
        if size is not None and size > self.budget[0]:
            raise ModelLoadError(f"model at {self.uri} is over the limit of {self.limit} bytes")
        self.progress.total = size

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self.budget[0] -= len(chunk)
        if self.budget[0] < 0:
            raise ModelLoadError(f"model at {self.uri} is over the limit of {self.limit} bytes")
        self._out.write(chunk)
        self.progress.add(len(chunk))

    def reserve(self, size: int) -> int:
        """Take ``size`` bytes of the budget at once and size the file to it, for parts
        written at their offsets (:meth:`write_at`); the file descriptor to write to."""
        self.declared(size)
        self.size = size
        self.budget[0] -= size
        self._out.truncate(size)
        return self._out.fileno()

    def write_at(self, fd: int, offset: int, chunk: bytes | memoryview) -> None:
        """One part's bytes at their place (``os.pwrite``: safe from several threads)."""
        written = 0
        while written < len(chunk):
            written += os.pwrite(fd, chunk[written:], offset + written)
        self.progress.add(len(chunk))

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
        self.progress.finished()
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

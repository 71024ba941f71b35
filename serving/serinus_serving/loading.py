"""Fetch a model from where it is kept, and know it by its content.

The URI's scheme picks a source (``sources/``): a path, ``file://`` or ``pvc://`` is used in
place; ``http(s)://``, ``s3://``, ``gs://``, ``az://``, ``oci://`` and MLflow's ``models:/``
are fetched into the model directory. A model is identified by its digest: the sha256 of
its file, or of all its files for a model that is a directory (``sources.base.tree_sha256``).
Fetched models are kept under ``DIR/sha256-DIGEST/``, so a second fetch with the expected
digest reads nothing from the store, and a re-signed URL or a moved alias to the same bytes
is the same model. Downloads stream to disk under a size limit, are retried on transient
errors, and a digest mismatch is never retried (the bytes are wrong, not late).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import (
    Fetched,
    Limits,
    ModelSource,
    file_sha256,
    redacted,
    tree_sha256,
)
from serinus_serving.sources.http import HttpSource
from serinus_serving.sources.local import LocalSource
from serinus_serving.sources.mlflow import MlflowSource
from serinus_serving.sources.object_store import ObjectStoreSource
from serinus_serving.sources.oci import OciSource

__all__ = ["DEFAULT_MAX_BYTES", "FetchedModel", "fetch_model", "file_sha256"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 30

_LOCAL = LocalSource()
SOURCES: dict[str, ModelSource] = {
    "": _LOCAL,
    "file": _LOCAL,
    "pvc": _LOCAL,
    "http": HttpSource(),
    "https": HttpSource(),
    "s3": ObjectStoreSource(),
    "gs": ObjectStoreSource(),
    "az": ObjectStoreSource(),
    "oci": OciSource(),
}
SOURCES["models"] = MlflowSource(SOURCES.get)
_SCHEMES = "a path, file://, pvc://, http(s)://, s3://, gs://, az://, oci:// or models:/"


@dataclass(frozen=True, slots=True)
class FetchedModel:
    #: The .onnx file to load.
    path: Path
    #: The model's identity: its file's sha256, or its directory's (``tree_sha256``).
    sha256: str
    #: Bytes of the model, all its files.
    size: int


def scheme_of(uri: str) -> str:
    scheme = urllib.parse.urlparse(uri).scheme
    return "" if len(scheme) == 1 and os.name == "nt" else scheme  # C:\ is a path


def fetch_model(
    uri: str,
    *,
    sha256: str | None = None,
    dest_dir: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 30.0,
    attempts: int = 3,
    prefetched: bool = False,
) -> FetchedModel:
    """A verified local copy of the model at ``uri`` (a local one is used in place).

    ``prefetched``: ``serinus fetch`` (a pod's init container) fetched ``uri`` into
    ``dest_dir`` already; its copy is used, checked again against the digest it recorded,
    so the model is downloaded once per pod even when no ``sha256`` names it."""
    scheme = scheme_of(uri)
    source = SOURCES.get(scheme)
    if source is None:
        raise ModelLoadError(
            f"unsupported model URI scheme {scheme!r} in {redacted(uri)!r}: use {_SCHEMES}"
        )
    expected = sha256.strip().lower() if sha256 else None
    limits = Limits(max_bytes=max_bytes, timeout=timeout, attempts=attempts)
    if source is _LOCAL:
        return _verified(uri, source.fetch(uri, Path(), limits=limits), expected)
    base = dest_dir or Path(tempfile.mkdtemp(prefix="serinus-model-"))
    base.mkdir(parents=True, exist_ok=True)
    reuse = expected or (_recorded(base, uri) if prefetched else None)
    if reuse is not None:
        cached = _cached(base / f"sha256-{reuse}", reuse)
        if cached is not None:
            log.info("model %s already present at %s", redacted(uri), cached.path)
            return cached
    into = Path(tempfile.mkdtemp(prefix=".fetching-", dir=base))
    try:
        model = _verified(uri, source.fetch(uri, into, limits=limits), expected)
        final = base / f"sha256-{model.sha256}"
        path = final / model.path.relative_to(into)
        _keep(into, final, path, model.sha256)
    finally:
        shutil.rmtree(into, ignore_errors=True)
    _marker(final).write_text(path.relative_to(final).as_posix())
    _record(base, uri).write_text(model.sha256)
    log.info(
        "fetched %s (%d bytes, sha256 %s) to %s", redacted(uri), model.size, model.sha256, path
    )
    return FetchedModel(path=path, sha256=model.sha256, size=model.size)


def _keep(into: Path, final: Path, path: Path, digest: str) -> None:
    """Move a fetched model into place. Another fetch of the same model may have finished
    first (its copy stands); a copy there that changed on disk is replaced."""
    try:
        into.rename(final)
        return
    except OSError:
        if not final.is_dir():
            raise
    files = [p for p in final.rglob("*") if p.is_file()]
    try:
        held = file_sha256(path) if files == [path] else tree_sha256(final)
    except OSError:
        held = ""
    if held != digest:
        log.warning("the copy at %s changed on disk: replacing it", final)
        shutil.rmtree(final, ignore_errors=True)
        into.rename(final)


def _verified(uri: str, fetched: Fetched, expected: str | None) -> FetchedModel:
    if fetched.root is None:
        digest, size = file_sha256(fetched.model), fetched.model.stat().st_size
    else:
        digest = tree_sha256(fetched.root)
        size = sum(p.stat().st_size for p in fetched.root.rglob("*") if p.is_file())
    if expected is not None and digest != expected:
        raise ModelLoadError(
            f"sha256 mismatch for {redacted(uri)}: expected {expected}, got {digest}"
        )
    return FetchedModel(path=fetched.model, sha256=digest, size=size)


def _record(base: Path, uri: str) -> Path:
    """Which digest ``uri`` gave when it was fetched into ``base`` (named by a hash: a URI
    may be long, and a presigned one should not be spelled out on disk)."""
    return base / f"fetched-{hashlib.sha256(uri.encode()).hexdigest()[:32]}"


def _recorded(base: Path, uri: str) -> str | None:
    try:
        digest = _record(base, uri).read_text().strip()
    except OSError:
        log.warning("no model fetched before for %s in %s: fetching it now", scheme_of(uri), base)
        return None
    return digest or None


def _marker(directory: Path) -> Path:
    """Which file of a kept model directory is the model (beside it: not part of it)."""
    return directory.with_name(directory.name + ".model")


def _cached(directory: Path, expected: str) -> FetchedModel | None:
    """A model fetched before with the expected digest, checked again (a file on disk can
    change), or None."""
    try:
        model = directory / _marker(directory).read_text()
    except OSError:
        return None
    files = [p for p in directory.rglob("*") if p.is_file()]
    fetched = Fetched(model) if files == [model] else Fetched(model, directory)
    try:
        return _verified(str(directory), fetched, expected)
    except (ModelLoadError, OSError):
        return None

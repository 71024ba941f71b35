"""``s3://BUCKET/KEY``, ``gs://BUCKET/KEY`` and ``az://CONTAINER/PATH``, through obstore (one
small native client for all three; no SDK).

A key ending in ``/`` is a prefix: every object under it is fetched, keeping their
relative paths (a model with external-data files, or a model with its profile).

Credentials are never in the URI. They come from the environment under the names each
provider's own SDK reads (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN`` for IRSA;
``GOOGLE_APPLICATION_CREDENTIALS`` / ``GOOGLE_SERVICE_ACCOUNT``; ``AZURE_STORAGE_ACCOUNT_NAME``,
``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_CLIENT_ID`` + ``AZURE_FEDERATED_TOKEN_FILE`` for
workload identity), or from the instance's metadata service. What is not secret may be
given as query parameters: ``endpoint`` (an S3-compatible server), ``region``,
``path_style=true`` (S3 paths rather than virtual hosts), ``account`` (Azure).
"""

from __future__ import annotations

import functools
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import from_url

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import (
    CHUNK,
    Fetched,
    Limits,
    Sink,
    pick_model,
    safe_relative,
)

_QUERY = frozenset({"endpoint", "region", "path_style", "account"})


def _store(uri: str, limits: Limits) -> tuple[Any, str]:
    """The store for ``uri``'s bucket, and the key (or prefix) inside it."""
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise ModelLoadError(f"{uri!r} names no bucket: use {parsed.scheme}://BUCKET/KEY")
    query = dict(urllib.parse.parse_qsl(parsed.query, strict_parsing=False))
    unknown = set(query) - _QUERY
    if unknown:
        raise ModelLoadError(
            f"{uri!r}: unknown parameter(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(sorted(_QUERY))} (credentials go in the environment, never the URI)"
        )
    config: dict[str, Any] = {}
    client: dict[str, Any] = {"timeout": f"{limits.timeout:g}s", "connect_timeout": "10s"}
    if "endpoint" in query:
        config["endpoint"] = query["endpoint"]
        if query["endpoint"].startswith("http://"):
            client["allow_http"] = True
    if "region" in query:
        config["region"] = query["region"]
    if query.get("path_style", "").lower() in ("1", "true", "yes"):
        config["virtual_hosted_style_request"] = False
    if "account" in query:
        config["account_name"] = query["account"]
    retry = {
        "max_retries": max(0, limits.attempts - 1),
        "retry_timeout": timedelta(seconds=limits.timeout * limits.attempts),
        "backoff": {"init_backoff": timedelta(seconds=0.5), "base": 2.0},
    }
    options: Any = {"config": config, "client_options": client, "retry_config": retry}
    store = from_url(f"{parsed.scheme}://{parsed.netloc}", **options)
    return store, urllib.parse.unquote(parsed.path).lstrip("/")


def _explain(uri: str, exc: Exception) -> ModelLoadError:
    """The store's error in words that never carry a credential."""
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return ModelLoadError(f"{uri} does not exist")
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError | PermissionError):
        return ModelLoadError(f"{uri}: the store refused the credentials ({type(exc).__name__})")
    return ModelLoadError(f"fetching {uri} failed: {str(exc).splitlines()[0][:300]}")


class ObjectStoreSource:
    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched:
        store, key = _store(uri, limits)
        budget = [limits.max_bytes]
        get = functools.partial(_get, store, uri=uri, budget=budget, limits=limits)
        try:
            if not key or key.endswith("/"):
                objects = [m for page in obstore.list(store, prefix=key or None) for m in page]
                if not objects:
                    raise ModelLoadError(f"{uri} holds no objects")
                for meta in objects:
                    get(meta["path"], into / safe_relative(meta["path"][len(key) :], uri=uri))
                return Fetched(pick_model(into, uri=uri), into)
            return Fetched(get(key, into / safe_relative(Path(key).name, uri=uri)))
        except (BaseError, OSError) as exc:  # obstore raises both
            raise _explain(uri, exc) from None


def _get(
    store: Any, key: str, target: Path, *, uri: str, budget: list[int], limits: Limits
) -> Path:
    result = obstore.get(store, key)
    sink = Sink(target, uri=uri, budget=budget, limit=limits.max_bytes)
    with sink.filling():
        sink.declared(result.meta["size"])
        for chunk in result.stream(min_chunk_size=CHUNK):
            sink.write(memoryview(chunk))
    return sink.done()

"""``s3://BUCKET/KEY``, ``gs://BUCKET/KEY`` and ``az://CONTAINER/PATH``, through obstore (one
small native client for all three; no SDK).

A key ending in ``/`` is a prefix: every object under it is fetched, keeping their
relative paths (a model with external-data files, or a model with its profile).

Credentials are never in the URI. They come from the environment under the names each
provider's own SDK reads (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN`` for IRSA;
``GOOGLE_SERVICE_ACCOUNT_KEY`` / ``GOOGLE_SERVICE_ACCOUNT`` /
``GOOGLE_APPLICATION_CREDENTIALS``; ``AZURE_STORAGE_ACCOUNT_NAME``,
``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_CLIENT_ID`` + ``AZURE_FEDERATED_TOKEN_FILE`` for
workload identity), or from the instance's metadata service. What is not secret may be
given as query parameters: ``endpoint`` (an S3-compatible server, or another GCS or Azure
endpoint such as an emulator), ``region`` and ``path_style=true`` (S3 paths rather than
virtual hosts) for S3, ``account`` for Azure.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterator
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
from serinus_serving.sources.parts import fetch_in_parts, in_parts

_STATUS = re.compile(r"non-2xx status code: (\d{3})\b")
_QUERY = frozenset({"endpoint", "region", "path_style", "account"})
# Which of them each scheme takes, and the obstore setting each one becomes.
_SETTINGS: dict[str, dict[str, str]] = {
    "s3": {
        "endpoint": "endpoint",
        "region": "region",
        "path_style": "virtual_hosted_style_request",
    },
    "gs": {"endpoint": "base_url"},  # the JSON/XML API's root, e.g. fake-gcs-server's
    "az": {"endpoint": "endpoint", "account": "account_name"},  # e.g. HOST/ACCOUNT for Azurite
}


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
    settings = _SETTINGS[parsed.scheme]
    if set(query) - set(settings):
        raise ModelLoadError(
            f"{uri!r}: {parsed.scheme}:// takes only {', '.join(sorted(settings))}, "
            f"not {', '.join(sorted(set(query) - set(settings)))}"
        )
    config: dict[str, Any] = {settings[k]: v for k, v in query.items() if k != "path_style"}
    if query.get("path_style", "").lower() in ("1", "true", "yes"):
        config["virtual_hosted_style_request"] = False
    client: dict[str, Any] = {"timeout": f"{limits.timeout:g}s", "connect_timeout": "10s"}
    if query.get("endpoint", "").startswith("http://"):
        client["allow_http"] = True
    retry = {
        "max_retries": max(0, limits.attempts - 1),
        "retry_timeout": timedelta(seconds=limits.timeout * limits.attempts),
        "backoff": {"init_backoff": timedelta(seconds=0.5), "base": 2.0},
    }
    options: Any = {"config": config, "client_options": client, "retry_config": retry}
    try:
        store = from_url(f"{parsed.scheme}://{parsed.netloc}", **options)
    except BaseError as exc:  # e.g. an Azure key that is not base64, or no such key file
        reason = str(exc).splitlines()[0][:300]  # obstore quotes no credential here
        raise ModelLoadError(f"{uri}: cannot set up the store's client: {reason}") from None
    return store, urllib.parse.unquote(parsed.path).lstrip("/")


def _explain(uri: str, exc: Exception) -> ModelLoadError:
    """The store's error in words that never carry a credential."""
    status = _STATUS.search(str(exc))  # a refused listing is a generic error in obstore
    if isinstance(exc, NotFoundError | FileNotFoundError) or (status and status[1] == "404"):
        return ModelLoadError(f"{uri} does not exist")
    denied = PermissionDeniedError | UnauthenticatedError | PermissionError
    if isinstance(exc, denied) or (status and status[1] in ("401", "403")):
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
    meta = obstore.head(store, key)
    size = int(meta["size"])
    if in_parts(size, limits=limits):
        etag = meta.get("e_tag")

        def read(start: int, end: int) -> Iterator[memoryview]:
            options: Any = {"range": (start, end)}
            if etag:
                options["if_match"] = etag  # the version that was sized, or a failed fetch
            ranged = obstore.get(store, key, options=options)
            for chunk in ranged.stream(min_chunk_size=CHUNK):
                yield memoryview(chunk)

        return fetch_in_parts(read, target, size=size, uri=uri, budget=budget, limits=limits)
    result = obstore.get(store, key)
    sink = Sink(target, uri=uri, budget=budget, limit=limits.max_bytes)
    with sink.filling():
        sink.declared(result.meta["size"])
        for chunk in result.stream(min_chunk_size=CHUNK):
            sink.write(memoryview(chunk))
    return sink.done()

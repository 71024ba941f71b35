"""``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``: a model version in an MLflow model
registry, resolved through the tracking server's REST API (no MLflow client library).

The server is ``$MLFLOW_TRACKING_URI``; credentials are MLflow's own variables,
``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD`` (Basic) or
``MLFLOW_TRACKING_TOKEN`` (Bearer). An alias is resolved to its version at each fetch; the
version's files (the MLflow model directory: ``MLmodel``, the ``.onnx``, …) are then
fetched whole, through the server's artifact proxy (``mlflow-artifacts:``) or, when the
registry points straight at object storage or HTTP, from there with that store's own
source and credentials.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import (
    CHUNK,
    Fetched,
    Limits,
    ModelSource,
    Retryable,
    Sink,
    pick_model,
    retrying,
    safe_relative,
)

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))/?$")
_API = "/api/2.0/mlflow"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_MAX_FILES = 10_000


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, version, alias)`` of a ``models:/`` URI."""
    match = _URI.match(uri)
    if match is None:
        raise ModelLoadError(f"{uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
    return urllib.parse.unquote(match["name"]), match["version"], match["alias"]


def _client(limits: Limits, env: Mapping[str, str] = os.environ) -> httpx.Client:
    server = env.get("MLFLOW_TRACKING_URI", "")
    if not server.startswith(("http://", "https://")):
        raise ModelLoadError(
            "models:/ needs MLFLOW_TRACKING_URI: the MLflow tracking server's http(s) URL"
        )
    headers, auth = {}, None
    if env.get("MLFLOW_TRACKING_TOKEN"):
        headers["authorization"] = "Bearer " + env["MLFLOW_TRACKING_TOKEN"]
    elif env.get("MLFLOW_TRACKING_USERNAME"):
        auth = httpx.BasicAuth(
            env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", "")
        )
    return httpx.Client(
        base_url=server.rstrip("/"), headers=headers, auth=auth, timeout=limits.timeout
    )


def _get_json(client: httpx.Client, path: str, params: dict[str, str], what: str) -> Any:
    try:
        response = client.get(path, params=params)
    except httpx.TransportError as exc:
        raise Retryable(str(exc)) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise Retryable(f"HTTP {response.status_code}")
    if response.status_code in (401, 403):
        raise ModelLoadError(f"{what}: the MLflow server refused the credentials")
    if response.status_code != 200:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = ""
        raise ModelLoadError(f"{what}: {message or f'HTTP {response.status_code}'}")
    return response.json()


def pin_alias(uri: str, *, limits: Limits, env: Mapping[str, str] = os.environ) -> str:
    """``models:/NAME/VERSION`` for ``models:/NAME@ALIAS`` (the version the alias points at
    now); a URI that names its version already is returned as it is."""
    name, version, alias = parse_models_uri(uri)
    if alias is None:
        return uri
    with _client(limits, env) as client:
        path, params = f"{_API}/registered-models/alias", {"name": name, "alias": alias}
        ask = functools.partial(_get_json, client, path, params, uri)
        found = retrying(f"asking MLflow about {uri}", limits.attempts, ask)
    version = str(found["model_version"]["version"])
    return f"models:/{urllib.parse.quote(name, safe='')}/{version}"


class MlflowSource:
    def __init__(self, delegate: Callable[[str], ModelSource | None]) -> None:
        #: The source for an artifact location the registry gives (s3://, https://, …).
        self.delegate = delegate

    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched:
        name, version, alias = parse_models_uri(uri)
        with _client(limits) as client:

            def call(path: str, params: dict[str, str]) -> Any:
                ask = functools.partial(_get_json, client, path, params, uri)
                return retrying(f"asking MLflow about {uri}", limits.attempts, ask)

            if alias is not None:
                found = call(f"{_API}/registered-models/alias", {"name": name, "alias": alias})
                version = str(found["model_version"]["version"])
            location = call(
                f"{_API}/model-versions/get-download-uri", {"name": name, "version": str(version)}
            )["artifact_uri"]
            if not location.startswith("mlflow-artifacts:"):
                return self._elsewhere(uri, location, into, limits)
            root = location.removeprefix("mlflow-artifacts:").lstrip("/").rstrip("/")
            files = _listing(call, root, uri)
            budget = [limits.max_bytes]
            for relative, size in files:
                target = into / safe_relative(relative, uri=uri)
                path = f"{_ARTIFACTS}/{root}/{relative}"
                get = functools.partial(_download, client, path, target, size, uri, budget, limits)
                retrying(f"fetching {relative} of {uri}", limits.attempts, get)
        return Fetched(pick_model(into, uri=uri), into)

    def _elsewhere(self, uri: str, location: str, into: Path, limits: Limits) -> Fetched:
        scheme = urllib.parse.urlparse(location).scheme
        source = self.delegate(scheme)
        if source is None or scheme in ("", "file", "models"):
            raise ModelLoadError(f"{uri}: MLflow keeps its files at {location}, out of reach")
        if not location.endswith("/"):
            location += "/"
        return source.fetch(location, into, limits=limits)


def _listing(
    call: Callable[[str, dict[str, str]], Any], root: str, uri: str
) -> list[tuple[str, int]]:
    """Every file under ``root``, with its size, walking directories."""
    files: list[tuple[str, int]] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        path = f"{root}/{prefix}".rstrip("/")
        for entry in call(_ARTIFACTS, {"path": path}).get("files", []):
            relative = f"{prefix}{entry['path'].rsplit('/', 1)[-1]}"
            if entry.get("is_dir"):
                pending.append(relative + "/")
            else:
                files.append((relative, int(entry.get("file_size", -1))))
            if len(files) > _MAX_FILES:
                raise ModelLoadError(f"{uri} holds over {_MAX_FILES} files")
    if not files:
        raise ModelLoadError(f"{uri}: the model version has no files")
    return files


def _download(
    client: httpx.Client,
    path: str,
    target: Path,
    size: int,
    uri: str,
    budget: list[int],
    limits: Limits,
) -> None:
    sink = Sink(target, uri=uri, budget=budget, limit=limits.max_bytes)
    with sink.filling(), client.stream("GET", path) as response:
        sink.declared(size if size >= 0 else None)
        if response.status_code >= 500 or response.status_code == 429:
            raise Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ModelLoadError(f"{uri}: {target.name}: HTTP {response.status_code}")
        for chunk in response.iter_bytes(CHUNK):
            sink.write(chunk)
    sink.done()

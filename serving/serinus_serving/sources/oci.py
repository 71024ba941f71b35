"""``oci://REGISTRY/REPOSITORY:TAG`` or ``…@sha256:DIGEST``: a model pushed to an OCI
registry as an artifact, by ORAS's conventions (``oras push REGISTRY/REPO:TAG model.onnx``):
each layer is a file named by its ``org.opencontainers.image.title`` annotation.

Every layer is checked against its digest and size, and a manifest asked for by digest
against that digest, so what is served is exactly what was pushed. Plain HTTP is used for
``localhost``/``127.0.0.1`` registries or with ``?plain_http=true``.

Credentials: a Docker ``config.json`` (``auths``: what ``docker login``/``oras login`` write,
and what a Kubernetes ``kubernetes.io/dockerconfigjson`` Secret holds) at
``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.
Registries that answer 401 with a ``Bearer`` challenge get a token from their token service
(with those credentials, or anonymously); ``Basic`` ones get the credentials directly.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import httpx

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import (
    CHUNK,
    Fetched,
    Limits,
    Retryable,
    Sink,
    pick_model,
    retrying,
    safe_relative,
)

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{MANIFEST}, {INDEX}, application/vnd.docker.distribution.manifest.v2+json"
TITLE = "org.opencontainers.image.title"
#: The key of a ``kubernetes.io/dockerconfigjson`` Secret.
DOCKERCONFIGJSON: Final = ".dockerconfigjson"
_REFERENCE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_MAX_MANIFEST = 4 << 20


def parse_reference(uri: str) -> tuple[str, str, str, bool]:
    """``(registry, repository, tag or digest, plain HTTP)`` of an ``oci://`` URI."""
    parsed = urllib.parse.urlparse(uri)
    match = _REFERENCE.match(parsed.path.lstrip("/"))
    if not parsed.netloc or match is None or not (match["tag"] or match["digest"]):
        raise ModelLoadError(
            f"{uri!r} is not oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:…"
        )
    query = dict(urllib.parse.parse_qsl(parsed.query))
    host = parsed.hostname or ""
    plain = query.get("plain_http", "").lower() in ("1", "true") or host in (
        "localhost",
        "127.0.0.1",
        "::1",
    )
    return parsed.netloc, match["repo"], match["digest"] or match["tag"], plain


def _configs(env: Mapping[str, str]) -> Iterator[str]:
    """Docker config.json documents, in the order they are looked at: a
    ``kubernetes.io/dockerconfigjson`` Secret's ``.dockerconfigjson`` key (the operator
    hands a Secret's keys over as ``env``), then the files."""
    if env.get(DOCKERCONFIGJSON):
        yield env[DOCKERCONFIGJSON]
    candidates = [
        env.get("REGISTRY_AUTH_FILE"),
        os.path.join(env["DOCKER_CONFIG"], "config.json") if env.get("DOCKER_CONFIG") else None,
        os.path.expanduser("~/.docker/config.json"),
    ]
    for name in filter(None, candidates):
        try:
            yield Path(name).read_text()
        except OSError:
            continue


def _credentials(registry: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The registry's user and password from a Docker config.json, if there is one."""
    for config in _configs(env):
        try:
            auths = json.loads(config).get("auths", {})
        except (ValueError, AttributeError):
            continue
        for key, entry in auths.items():
            if key.removeprefix("https://").removeprefix("http://").rstrip("/") != registry:
                continue
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return user, password
            if entry.get("username"):
                return entry["username"], entry.get("password", "")
    return None


class _Registry:
    """One repository on one registry, authenticating as it is challenged."""

    def __init__(self, uri: str, limits: Limits, env: Mapping[str, str] = os.environ) -> None:
        self.uri = uri
        self.registry, self.repo, self.reference, plain = parse_reference(uri)
        self.base = f"{'http' if plain else 'https'}://{self.registry}/v2/{self.repo}"
        self.client = httpx.Client(timeout=limits.timeout, follow_redirects=True)
        self.auth: str | None = None
        self.creds = _credentials(self.registry, env)

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        request = self.client.build_request("GET", f"{self.base}/{path}", headers=headers)
        if self.auth:
            request.headers["authorization"] = self.auth
        response = self.client.send(request, stream=True)
        if response.status_code == 401 and self.auth is None:
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            self.auth = self._authenticate(challenge)
            return self.get(path, headers)
        return response

    def _authenticate(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.creds is None:
                raise ModelLoadError(f"{self.uri}: the registry asks for credentials; none found")
            return "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        if scheme.lower() != "bearer":
            raise ModelLoadError(f"{self.uri}: the registry refused access ({challenge or 401})")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.repo}:pull")
        auth = httpx.BasicAuth(*self.creds) if self.creds else None
        answer = self.client.get(fields.get("realm", ""), params=query, auth=auth)
        if answer.status_code != 200:
            raise ModelLoadError(
                f"{self.uri}: the registry's token service refused (HTTP {answer.status_code})"
            )
        body = answer.json()
        return "Bearer " + str(body.get("token") or body.get("access_token"))


class OciSource:
    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched:
        registry = _Registry(uri, limits)
        try:
            manifest = retrying(f"reading {uri}", limits.attempts, lambda: _manifest(registry))
            layers = [
                layer
                for layer in manifest.get("layers", [])
                if layer.get("annotations", {}).get(TITLE)
            ]
            if not layers:
                raise ModelLoadError(f"{uri} has no file layers (pushed without titles?)")
            budget = [limits.max_bytes]
            for layer in layers:
                target = into / safe_relative(layer["annotations"][TITLE], uri=uri)
                fetch_one = functools.partial(_blob, registry, layer, target, budget, limits)
                retrying(f"fetching {target.name} of {uri}", limits.attempts, fetch_one)
        finally:
            registry.client.close()
        if len(layers) == 1:
            return Fetched(into / layers[0]["annotations"][TITLE])
        return Fetched(pick_model(into, uri=uri), into)


def pin_tag(uri: str, *, limits: Limits, env: Mapping[str, str] = os.environ) -> str:
    """``oci://REGISTRY/REPOSITORY@sha256:DIGEST`` for a tag (the manifest or index the tag
    names now); a URI that names its digest already is returned as it is."""
    parsed = urllib.parse.urlparse(uri)
    _, repo, reference, _ = parse_reference(uri)
    if reference.startswith("sha256:"):
        return uri
    registry = _Registry(uri, limits, env)

    def read() -> bytes:
        try:
            with contextlib.closing(
                registry.get(f"manifests/{reference}", {"accept": ACCEPT})
            ) as response:
                _check(response, f"{uri}: no manifest {reference}")
                return _read(response, _MAX_MANIFEST, "the manifest")
        except httpx.TransportError as exc:
            raise Retryable(str(exc)) from exc

    try:
        body = retrying(f"reading {uri}", limits.attempts, read)
    finally:
        registry.client.close()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    query = f"?{parsed.query}" if parsed.query else ""
    return f"oci://{parsed.netloc}/{repo}@{digest}{query}"


def _read(response: httpx.Response, limit: int, what: str) -> bytes:
    body = b""
    for chunk in response.iter_bytes(CHUNK):
        body += chunk
        if len(body) > limit:
            raise ModelLoadError(f"{what} is over {limit} bytes")
    return body


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        response.close()
        raise Retryable(f"HTTP {response.status_code}")
    if response.status_code != 200:
        response.close()
        raise ModelLoadError(f"{what}: HTTP {response.status_code}")


def _manifest(registry: _Registry) -> dict[str, Any]:
    reference = registry.reference
    for _ in range(2):  # an index, then the manifest it lists
        try:
            with contextlib.closing(
                registry.get(f"manifests/{reference}", {"accept": ACCEPT})
            ) as response:
                _check(response, f"{registry.uri}: no manifest {reference}")
                body = _read(response, _MAX_MANIFEST, "the manifest")
        except httpx.TransportError as exc:
            raise Retryable(str(exc)) from exc
        if reference.startswith("sha256:") and hashlib.sha256(body).hexdigest() != reference[7:]:
            raise ModelLoadError(f"{registry.uri}: the manifest does not match its digest")
        document: dict[str, Any] = json.loads(body)
        if document.get("mediaType") != INDEX:
            return document
        manifests = document.get("manifests") or []
        if not manifests:
            raise ModelLoadError(f"{registry.uri}: an empty index")
        reference = manifests[0]["digest"]
    raise ModelLoadError(f"{registry.uri}: an index of indexes")


def _blob(
    registry: _Registry, layer: dict[str, Any], target: Path, budget: list[int], limits: Limits
) -> None:
    digest = str(layer.get("digest", ""))
    if not digest.startswith("sha256:"):
        raise ModelLoadError(f"{registry.uri}: layer digest {digest!r} is not sha256")
    sink = Sink(target, uri=registry.uri, budget=budget, limit=limits.max_bytes)
    hasher = hashlib.sha256()
    with sink.filling():
        sink.declared(int(layer.get("size", 0)))
        with contextlib.closing(registry.get(f"blobs/{digest}", {})) as response:
            _check(response, f"{registry.uri}: blob {digest}")
            for chunk in response.iter_bytes(CHUNK):
                hasher.update(chunk)
                sink.write(chunk)
    if hasher.hexdigest() != digest[7:] or sink.size != int(layer.get("size", -1)):
        sink.abort()
        raise ModelLoadError(f"{registry.uri}: {target.name} does not match its digest {digest}")
    sink.done()

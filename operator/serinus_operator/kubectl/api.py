"""The plugin's calls to the API server, each failure turned into one line that says what
failed: which kubeconfig, which server, which verb on which resource in which namespace.

Credentials come from :func:`~serinus_operator.platforms.kubernetes.load_credentials` (the
only user of the ``kubernetes`` client); requests, watches included, go over httpx.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from serinus_operator import __version__
from serinus_operator.api import GROUP, PLURAL, VERSION
from serinus_operator.kubectl.errors import CliError, one_line
from serinus_operator.platforms.kube_http import tls_context
from serinus_operator.platforms.kubernetes import Credentials, load_credentials

USER_AGENT: Final = f"kubectl-serinus/{__version__}"
#: How long one watch request stays open before the server ends it (then it is resumed).
WATCH_SECONDS: Final = 300


@dataclass(frozen=True)
class Resource:
    """A resource as RBAC names it (``modeldeployments.serinus.dev``) and where it lives."""

    prefix: str  # /apis/<group>/<version>, or /api/v1
    plural: str
    group: str = ""
    kind: str = ""

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{self.prefix}{scope}/{self.plural}" + (f"/{name}" if name else "")


MODELDEPLOYMENTS: Final = Resource(f"/apis/{GROUP}/{VERSION}", PLURAL, GROUP, "ModelDeployment")
EVENTS: Final = Resource("/api/v1", "events", "", "Event")


class Gone(CliError):
    """410: the watch's resourceVersion is too old; list again and watch from there."""


class Forbidden(CliError):
    """403: RBAC (or an admission webhook) refused the call."""


class Unreachable(CliError):
    """No answer from the API server (refused, reset, timed out): a watch may retry."""


def _kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    paths = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [Path(p).expanduser() for p in paths.split(os.pathsep) if p]


def load(kubeconfig: str | None, context: str | None) -> Credentials:
    """The kubeconfig's (or the pod's service account's) credentials, or a CliError."""
    in_cluster = (
        kubeconfig is None
        and os.environ.get("KUBERNETES_SERVICE_HOST")
        and not os.environ.get("KUBECONFIG")
    )
    files = _kubeconfig_files(kubeconfig)
    if not in_cluster and not any(f.is_file() for f in files):
        shown = os.pathsep.join(str(f) for f in files)
        raise CliError(
            f"no kubeconfig: {shown} does not exist (set KUBECONFIG or pass --kubeconfig)"
        )
    try:
        return load_credentials(kubeconfig=kubeconfig, context=context)
    except Exception as exc:  # the kubernetes client's ConfigException, YAML errors, ...
        where = "the in-cluster service account" if in_cluster else os.pathsep.join(map(str, files))
        raise CliError(f"invalid kubeconfig {where}: {one_line(exc)}") from None


def http_error(
    status: int,
    body: Mapping[str, Any],
    *,
    verb: str,
    resource: Resource,
    namespace: str | None,
    name: str | None = None,
    server: str = "the API server",
) -> CliError:
    """An API answer other than success, as the one line the user reads."""
    message = one_line(body.get("message") or body.get("reason") or f"HTTP {status}")
    where = f"in namespace {namespace}" if namespace else "in any namespace"
    if status == 401:
        return CliError(
            f"unauthorized: {server} did not accept the kubeconfig's credentials "
            "(expired or revoked token, or a kubeconfig for another cluster?)"
        )
    if status == 403:
        user = re.search(r'User "([^"]+)"', message)
        who = f" (as {user.group(1)})" if user else ""
        if re.search(r"cannot \S+ resource", message):
            return Forbidden(f"forbidden: cannot {verb} {resource.name} {where}{who}")
        return Forbidden(f"forbidden: {verb} {resource.name} {where}: {message}")
    if status == 404:
        details = body.get("details") or {}
        if name and details.get("name") == name:
            return CliError(f"no {resource.kind or resource.name} {name} {where}")
        return CliError(
            f"{server} does not serve {resource.name} (is the Serinus CRD installed?): {message}"
        )
    target = f"{resource.name} {name}" if name else resource.name
    return CliError(f"cannot {verb} {target} {where}: HTTP {status}: {message}")


def transport_error(exc: httpx.HTTPError, server: str, timeout: float) -> Unreachable:
    """The API server could not be reached or did not answer."""
    if isinstance(exc, httpx.TimeoutException):
        return Unreachable(f"the API server at {server} did not answer within {timeout:g}s")
    return Unreachable(f"cannot reach the API server at {server}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The socket's own error under httpx's wrappers ("All connection attempts failed")."""
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.strerror:
            return one_line(cause.strerror).lower()
        cause = cause.__cause__ or cause.__context__
    return one_line(exc) or type(exc).__name__


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"message": response.text[:300]}
    return data if isinstance(data, dict) else {"message": str(data)}


class Api:
    """One API server, as the plugin talks to it."""

    def __init__(self, credentials: Credentials, *, timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.server = credentials.server
        self.timeout = timeout
        try:
            verify = tls_context(credentials)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise CliError(
                f"invalid kubeconfig: cannot load its TLS files: {one_line(exc)}"
            ) from None
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        try:
            token = self.credentials.bearer()
        except Exception as exc:  # an exec plugin or a token file that fails
            raise CliError(f"cannot get a token from the kubeconfig: {one_line(exc)}") from None
        if token:
            headers["authorization"] = f"Bearer {token}"
        if content_type:
            headers["content-type"] = content_type
        return headers

    async def _call(
        self,
        method: str,
        verb: str,
        resource: Resource,
        namespace: str | None,
        name: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        patch: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        content_type = "application/merge-patch+json" if patch is not None else None
        try:
            response = await self._http.request(
                method,
                resource.path(namespace, name),
                params=params,
                content=None if patch is None else json.dumps(patch).encode(),
                headers=self._headers(content_type),
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.server, self.timeout) from None
        if not response.is_success:
            raise http_error(
                response.status_code,
                _body(response),
                verb=verb,
                resource=resource,
                namespace=namespace,
                name=name,
                server=f"the API server at {self.server}",
            )
        return _body(response)

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", "get", resource, namespace, name)

    async def list(
        self, resource: Resource, namespace: str | None, *, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """The items and the list's resourceVersion (where a watch starts)."""
        params = {"fieldSelector": field_selector} if field_selector else None
        found = await self._call("GET", "list", resource, namespace, params=params)
        version = str((found.get("metadata") or {}).get("resourceVersion") or "")
        return list(found.get("items") or []), version

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._call("PATCH", "patch", resource, namespace, name, patch=patch)

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        field_selector: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events (``{"type", "object"}``) of one watch request, bookmarks
        included, until the server ends it; raises :class:`Gone` on 410."""
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = httpx.Timeout(self.timeout, read=WATCH_SECONDS + 30)
        try:
            async with self._http.stream(
                "GET",
                resource.path(namespace),
                params=params,
                headers=self._headers(),
                timeout=timeout,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    self._refused(response.status_code, _body(response), resource, namespace)
                async for line in response.aiter_lines():
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            self._refused(
                                int(status.get("code") or 500), status, resource, namespace
                            )
                        yield event
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.server, self.timeout) from None

    def _refused(
        self, status: int, body: Mapping[str, Any], resource: Resource, namespace: str | None
    ) -> None:
        if status == 410:
            raise Gone(one_line(body.get("message") or "resourceVersion too old"))
        raise http_error(
            status,
            body,
            verb="watch",
            resource=resource,
            namespace=namespace,
            server=f"the API server at {self.server}",
        )

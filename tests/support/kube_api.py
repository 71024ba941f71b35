"""A Kubernetes API on 127.0.0.1 faithful enough to run the real kopf operator against.

kmock's ``KubernetesEmulator`` (by kopf's author) stores objects, serves GET/LIST/WATCH,
POST, PATCH (a recursive merge; ``None`` deletes a key) and DELETE with finalizers. It
lacks what an operator relies on; :class:`FaithfulEmulator` adds it on the write path:

- ``metadata.uid``, ``creationTimestamp`` and ``generation`` (1 on create, +1 when ``spec``
  changes), and a ``resourceVersion`` bumped on every write;
- a ``metadata.resourceVersion`` in a PATCH body is a precondition: a stale one is a 409
  Conflict, as on a real API server;
- the status subresource: a PATCH to ``…/status`` changes only ``status``, a PATCH or POST
  of the main resource never does (for resources registered with ``subresources={'status'}``);
- the garbage collector: deleting an object deletes its dependents (``ownerReferences``
  naming its uid), as the real GC does in the background;
- discovery of the CRD and the built-in resources the operator uses.

Still missing (the operator does not use them): labelSelector/fieldSelector filtering
(the operator filters what it lists itself), server-side apply, PUT, 410 Gone, bookmarks,
``GET /api/v1/namespaces`` (the operator runs namespaced in tests).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import threading
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import httpx
import kmock
from kmock._internal import k8s as kmock_k8s  # the emulator's error types

from support.rfc7386 import merge_patch

T = TypeVar("T")

STATUS_SUBRESOURCE = {"serinus.dev/v1alpha1/modeldeployments"}

RESOURCES: dict[str, dict[str, Any]] = {
    "serinus.dev/v1alpha1/modeldeployments": {
        "kind": "ModelDeployment",
        "namespaced": True,
        "subresources": {"status"},
        "shortnames": {"md"},
    },
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True, "subresources": {"status"}},
    "v1/services": {"kind": "Service", "namespaced": True},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "v1/serviceaccounts": {"kind": "ServiceAccount", "namespaced": True},
    "v1/events": {"kind": "Event", "namespaced": True},
    "rbac.authorization.k8s.io/v1/roles": {"kind": "Role", "namespaced": True},
    "rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding", "namespaced": True},
    "gateway.networking.k8s.io/v1/httproutes": {"kind": "HTTPRoute", "namespaced": True},
    # kopf waits for these "backbone" resources in discovery before it watches anything.
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
    },
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    # kopf's peering between operator replicas (HA).
    "kopf.dev/v1/kopfpeerings": {"kind": "KopfPeering", "namespaced": True},
    "kopf.dev/v1/clusterkopfpeerings": {"kind": "ClusterKopfPeering", "namespaced": False},
}
_VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


def _key(resource: Any) -> str:
    group = resource.group or ""
    return f"{group}/{resource.version}/{resource.plural}".lstrip("/")


class FaithfulEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator plus uid, generation, resourceVersion, 409s, status and GC."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        #: (apiGroup, resource[/subresource], verb) asked of this API by clients whose
        #: User-Agent starts with one of ``recorded_agents``, for RBAC tests.
        self.calls: set[tuple[str, str, str]] = set()
        self.recorded_agents: tuple[str, ...] = ("kopf/", "serinus-operator/")
        self._rv = itertools.count(1)
        self._writes = asyncio.Lock()
        for key, info in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(verbs=_VERBS, **info)

    def _current(self, request: Any) -> Any:
        key = (request.resource, request.namespace, request.name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key]
        return None

    def _prepare(self, request: Any) -> tuple[Any, str | None] | None:
        """Rewrite a write request in place; return the key and uid of a deleted object."""
        has_status = _key(request.resource) in STATUS_SUBRESOURCE
        data = request.data if isinstance(request.data, dict) else None
        if request.action == kmock.action.CREATE and data is not None:
            meta = data.setdefault("metadata", {})
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(next(self._rv))
            meta["generation"] = 1
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            if has_status:
                data.pop("status", None)
        elif request.action == kmock.action.UPDATE and data is not None:
            current = self._current(request)
            if current is None:
                return None  # kmock answers 404
            stored = current.raw
            meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else None
            wanted = None if meta is None else meta.get("resourceVersion")
            found = stored.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != found:
                raise kmock_k8s.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f"the object has been modified (resourceVersion {wanted} != {found})",
                )
            if request.subresource == "status":
                status = data.get("status")
                data.clear()
                data["status"] = status
            else:
                if has_status:
                    data.pop("status", None)
                if "spec" in data:
                    merged = merge_patch(stored.get("spec"), data["spec"])
                    if merged != stored.get("spec"):
                        generation = stored.get("metadata", {}).get("generation", 1) + 1
                        data.setdefault("metadata", {})["generation"] = generation
            data.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "name", "namespace"):
                data["metadata"].pop(immutable, None)
            data["metadata"]["resourceVersion"] = str(next(self._rv))
        elif request.action == kmock.action.DELETE:
            current = self._current(request)
            if current is not None:
                return (request.resource, request.namespace, request.name), current.raw.get(
                    "metadata", {}
                ).get("uid")
        if request.action == kmock.action.UPDATE:
            current = self._current(request)
            if current is not None:
                return (request.resource, request.namespace, request.name), current.raw.get(
                    "metadata", {}
                ).get("uid")
        return None

    def _record(self, request: Any) -> None:
        verbs = {
            kmock.action.LIST: "list",
            kmock.action.WATCH: "watch",
            kmock.action.FETCH: "get",
            kmock.action.CREATE: "create",
            kmock.action.DELETE: "delete",
        }
        verb = verbs.get(request.action)
        if request.action == kmock.action.UPDATE:
            verb = "update" if str(request.method).upper().endswith("PUT") else "patch"
        agent = str(request.headers.get("User-Agent") or request.headers.get("user-agent") or "")
        if verb is None or request.resource.plural is None:
            return
        if not agent.startswith(self.recorded_agents):
            return
        resource = request.resource.plural
        if request.subresource:
            resource = f"{resource}/{request.subresource}"
        self.calls.add((request.resource.group or "", resource, verb))

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None:
            self._record(request)
        writes = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        if request.resource is None or request.action not in writes:
            return await super()._handle(request)
        async with self._writes:
            try:
                watched = self._prepare(request)
            except kmock_k8s.KubernetesError as exc:
                return await self._render_error(exc)
            response = await super()._handle(request)
            if watched is not None:
                key, uid = watched
                if uid and (key not in self.objects or self.objects[key].deleted):
                    await self._collect(uid)
            return response

    async def _collect(self, owner_uid: str) -> None:
        """Delete the dependents of a deleted owner, recursively, as the real GC does."""
        for key, obj in list(self.objects.items()):
            if obj.deleted:
                continue
            raw = obj.raw
            refs = raw.get("metadata", {}).get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                obj.delete()
                await self._buses[key[0]].put({"type": "DELETED", "object": raw})
                uid = raw.get("metadata", {}).get("uid")
                if uid:
                    await self._collect(uid)


class KubeApi:
    """The faithful emulator on a loopback port, run in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.emulator = FaithfulEmulator()
        self._server = kmock.Server(self.emulator)
        self._run(self.emulator.__aenter__())
        self._run(self._server.__aenter__())
        self.url = f"http://127.0.0.1:{self._server.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        """Stop serving. kmock's server cannot shut down while a watch it serves is open
        (its handler waits on its event bus forever), so a server with watches left is
        abandoned to its daemon thread rather than torn down under them."""
        self.client.close()
        try:
            self._run(self._server.__aexit__(None, None, None), timeout=3)
            self._run(self.emulator.__aexit__(None, None, None), timeout=3)
        except TimeoutError:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "kmock"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "kmock",
        }

    # --------------------------------------------------------------- REST helpers
    @staticmethod
    def path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        out = f"{base}/namespaces/{namespace}/{plural}"
        return out if name is None else f"{out}/{name}"

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> Any:
        response = self.client.get(self.path(api_version, plural, namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def list(self, api_version: str, plural: str, namespace: str) -> list[Any]:
        response = self.client.get(self.path(api_version, plural, namespace))
        if response.status_code == 404:
            return []
        response.raise_for_status()
        items: list[Any] = response.json().get("items", [])
        return items

    def create(self, obj: Mapping[str, Any], plural: str) -> Any:
        meta = obj["metadata"]
        response = self.client.post(
            self.path(obj["apiVersion"], plural, meta["namespace"]), json=dict(obj)
        )
        response.raise_for_status()
        return response.json()

    def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Any:
        path = self.path(api_version, plural, namespace, name)
        if subresource:
            path += f"/{subresource}"
        response = self.client.patch(
            path, json=dict(body), headers={"content-type": "application/merge-patch+json"}
        )
        response.raise_for_status()
        return response.json()

    def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        response = self.client.delete(self.path(api_version, plural, namespace, name))
        if response.status_code != 404:
            response.raise_for_status()

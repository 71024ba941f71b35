"""The Kubernetes platform: actions become API calls. The only module that imports the
``kubernetes`` client, and only to resolve credentials (kubeconfig, exec plugins,
in-cluster service account); requests go over :class:`~.kube_http.KubeClient` (aiohttp),
and passes read through the watch caches (:mod:`.watch_cache`).

Children are written with server-side apply under one field manager, ``serinus-operator``,
with ``force``: the API server records which fields the operator owns, so a field the
builders stop rendering is removed, and a field someone else changed is taken back. A
child is applied only when what the builders render changed (a hash in the
``serinus.dev/applied`` annotation) or when the object changed since the operator last
wrote or read it, so a reconcile pass that changes nothing sends no writes. A child found
deleted, or changed in a field the operator owns, is put back and reported
(:meth:`KubernetesPlatform.report_restored` posts one Event per pass). Nothing here
decides anything about rollouts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from serinus_operator.api import GROUP, KIND, VERSION, ModelDeployment
from serinus_operator.platforms.base import Conflict, ObjectRef
from serinus_operator.platforms.kube_http import (
    FIELD_MANAGER,
    ApiError,
    ApiUnreachable,
    Credentials,
    KubeClient,
)
from serinus_operator.platforms.pinning import PinError
from serinus_operator.platforms.watch_cache import Kind, KindCache, ObjectCache
from serinus_operator.resources.autoscaling import autoscaler, revision_disruption_budget
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.deployments import revision_deployment
from serinus_operator.resources.meta import (
    COMPONENT_SERVER,
    MANAGED_BY,
    MODEL_LABEL,
    REVISION_LABEL,
    REVISION_PORT,
    revision_name,
    revision_selector,
)
from serinus_operator.resources.services import (
    CANDIDATE_ROLE,
    STABLE_ROLE,
    revision_service,
    role_service,
    role_service_name,
)
from serinus_operator.rollout.actions import EnsureRevision, Notify
from serinus_operator.rollout.observed import RevisionObservation
from serinus_operator.traffic import make_provider
from serinus_operator.traffic.base import Routes

log = logging.getLogger("serinus.kubernetes")

APPLIED_ANNOTATION: Final = f"{GROUP}/applied"
#: The Event reason for children put back after someone deleted or changed them.
RESTORED_REASON: Final = "ChildRestored"
PLURAL: Final = "modeldeployments"
#: A pass that starts before the watch caches have listed waits this long for them, then
#: reads from the API server instead.
CACHE_SYNC_WAIT: Final = 10.0
#: Event names remembered as posted, so that a pass does not re-post its predecessor's.
POSTED_MEMORY: Final = 10_000
_IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

#: kind -> (apiVersion path prefix, plural) for every kind the builders render.
_PATHS: Final[Mapping[tuple[str, str], str]] = {
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
    ("rbac.authorization.k8s.io/v1", "Role"): (
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
    ),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"
    ),
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    ),
    (f"{GROUP}/{VERSION}", KIND): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
}
#: Read on demand, never cached or watched: a model's Secret (to pin an alias or a tag) and
#: the pods of a revision that is not ready (to say why).
_UNCACHED_PATHS: Final[Mapping[tuple[str, str], str]] = {
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
}


#: What every child carries (resources/meta.py), as a label selector: the API server sends
#: the operator its own children only, never every ConfigMap of the cluster.
CHILD_SELECTOR: Final = f"app.kubernetes.io/managed-by={MANAGED_BY},{MODEL_LABEL}"


def cached_kinds() -> tuple[Kind, ...]:
    """Every kind a pass reads: the ModelDeployments, and each kind of child (selected on
    the API server by the labels every child carries)."""
    kinds = []
    for (api_version, kind), path in _PATHS.items():
        if kind == "Event":
            continue  # written, never read
        if kind == KIND:
            kinds.append(Kind(api_version, kind, path))
        else:
            kinds.append(
                Kind(
                    api_version, kind, path, label_selector=CHILD_SELECTOR, model_label=MODEL_LABEL
                )
            )
    return tuple(kinds)


def slim(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj`` as the cache holds it: without ``managedFields`` (most of a child's bytes,
    read only to take over fields owned before server-side apply, so kept for the few
    objects that still have such fields)."""
    meta = obj.get("metadata") or {}
    managed = meta.get("managedFields")
    if not managed or upgraded_managed_fields(list(managed)) is not None:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


class NotOwned(RuntimeError):
    """An object of the name a child would have is controlled by another owner (another
    ModelDeployment's child, or the child of a ModelDeployment of the same name that was
    deleted and is still being collected): it is never taken over."""


# --- credentials -----------------------------------------------------------------------------


def load_credentials(*, kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """In-cluster when running in a pod (and no kubeconfig is named), else kubeconfig."""
    from kubernetes import client, config  # the only import of the kubernetes client

    cfg = client.Configuration()
    namespace = None
    if (
        kubeconfig is None
        and os.environ.get("KUBERNETES_SERVICE_HOST")
        and not os.environ.get("KUBECONFIG")
    ):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        ns_file = _IN_CLUSTER_TOKEN.parent / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else None
        token_file: Path | None = _IN_CLUSTER_TOKEN
    else:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)  # type: ignore[no-untyped-call]
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        chosen = active
        if context is not None:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c["name"] == context), active)
        namespace = (chosen or {}).get("context", {}).get("namespace")
        token_file = None

    def token_of(c: Any) -> str | None:
        raw = c.api_key.get("authorization") or c.api_key.get("BearerToken")
        if not raw:
            return None
        text = str(raw)
        return text.split(" ", 1)[1] if text.lower().startswith("bearer ") else text

    def refresh() -> str | None:
        hook = cfg.refresh_api_key_hook
        if hook is not None:
            hook(cfg)
        return token_of(cfg)

    return Credentials(
        server=cfg.host.rstrip("/"),
        token=token_of(cfg),
        ca_path=cfg.ssl_ca_cert,
        cert_path=cfg.cert_file,
        key_path=cfg.key_file,
        insecure=not cfg.verify_ssl,
        default_namespace=namespace,
        token_file=token_file,
        _refresh=refresh if cfg.refresh_api_key_hook is not None else None,
    )


class TrafficNotLanded(RuntimeError):
    """The traffic objects, as the API server stored them, do not route as asked (an
    admission webhook or another controller rewrote them)."""


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    try:
        path = _PATHS.get((api_version, kind)) or _UNCACHED_PATHS[(api_version, kind)]
        return path.format(ns=namespace)
    except KeyError:
        raise ValueError(f"no API path known for {api_version} {kind}") from None


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{name}"


def md_path(namespace: str, name: str, *, subresource: str | None = None) -> str:
    path = object_path(f"{GROUP}/{VERSION}", KIND, namespace, name)
    return path if subresource is None else f"{path}/{subresource}"


def applied_hash(obj: Mapping[str, Any]) -> str:
    """What the builders rendered, as a short hash (the annotation itself excluded)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(obj))
    digest = applied_hash(obj)
    out.setdefault("metadata", {}).setdefault("annotations", {})[APPLIED_ANNOTATION] = digest
    return out


#: Metadata that changes without anyone changing the object's content.
_VOLATILE_METADATA: Final = frozenset({"resourceVersion", "managedFields", "generation"})


def content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without ``status`` and the metadata that every write changes: what a person
    or a controller can edit."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata") or {}
    out["metadata"] = {k: v for k, v in meta.items() if k not in _VOLATILE_METADATA}
    return out


def changed_paths(
    before: Any, after: Any, *, depth: int = 3, _path: tuple[str, ...] = ()
) -> list[str]:
    """Where ``before`` and ``after`` differ, as dotted paths at most ``depth`` deep
    (``spec.selector``, ``data.routes.json``)."""
    if before == after:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping) and len(_path) < depth:
        out: list[str] = []
        for key in sorted({*before, *after}, key=str):
            out += changed_paths(
                before.get(key), after.get(key), depth=depth, _path=(*_path, str(key))
            )
        return out
    return [".".join(_path) or "the object"]


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return str(ref.get("uid") or "")
    return None


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two ``FieldsV1`` sets as one (nested dicts whose keys name fields)."""
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(mine, Mapping) and isinstance(value, Mapping):
            out[key] = _union(mine, value)
        else:
            out[key] = value
    return out


def upgraded_managed_fields(managed: list[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """``managedFields`` with the operator's own ``Update`` entries folded into its ``Apply``
    entry, or None when there are none.

    Operators before server-side apply created children with POST and merge patches, which
    the API server records as ``Update`` operations of the manager named by the user agent,
    ``serinus-operator``. Fields owned that way would outlive server-side apply's removal of
    what the operator stops applying (a stale ``serinus.dev/candidate`` annotation after a
    promotion), so the first apply of such an object makes them the applier's, as kubectl
    and client-go's ``csaupgrade`` do when moving from client-side apply.
    """
    legacy = [
        m
        for m in managed
        if m.get("manager") == FIELD_MANAGER
        and m.get("operation") == "Update"
        and not m.get("subresource")
    ]
    if not legacy:
        return None
    rest = [dict(m) for m in managed if m not in legacy]
    applier = next(
        (
            m
            for m in rest
            if m.get("manager") == FIELD_MANAGER
            and m.get("operation") == "Apply"
            and not m.get("subresource")
        ),
        None,
    )
    fields: dict[str, Any] = dict((applier or {}).get("fieldsV1") or {})
    for entry in legacy:
        fields = _union(fields, entry.get("fieldsV1") or {})
    merged = dict(applier or legacy[0])
    merged.update(operation="Apply", fieldsType="FieldsV1", fieldsV1=fields)
    if applier is None:
        return [*rest, merged]
    return [merged if m is applier else m for m in rest]


@dataclass(frozen=True)
class Restored:
    """A child the operator put back: deleted, or changed in fields it owns."""

    kind: str
    name: str
    deleted: bool
    fields: tuple[str, ...] = ()
    resource_version: str = ""

    def describe(self) -> str:
        if self.deleted:
            return f"{self.kind} {self.name} was deleted: created it again"
        what = ", ".join(self.fields[:4]) + (", ..." if len(self.fields) > 4 else "")
        return f"{self.kind} {self.name} was changed ({what}): put it back"


#: A child as the platform remembers it: (namespace, model, owner uid, apiVersion, kind, name).
_Key = tuple[str, str, str, str, str, str]


def _key(obj: Mapping[str, Any]) -> _Key:
    meta = obj.get("metadata") or {}
    owner = next((r for r in meta.get("ownerReferences") or [] if isinstance(r, Mapping)), {})
    model = str(owner.get("name") or (meta.get("labels") or {}).get(MODEL_LABEL) or "")
    return (
        str(meta.get("namespace") or ""),
        model,
        str(owner.get("uid") or ""),
        str(obj.get("apiVersion") or ""),
        str(obj.get("kind") or ""),
        str(meta.get("name") or ""),
    )


def _digest(obj: Mapping[str, Any]) -> str:
    return applied_hash(content(obj))


def _check_owner(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Raise :class:`NotOwned` when ``found`` is controlled by another owner than the one
    ``wanted`` names (an object with no controller is adopted, as Deployments adopt)."""
    mine, theirs = _controller_uid(wanted), _controller_uid(found)
    if mine is None or theirs is None or mine == theirs:
        return
    meta = found.get("metadata") or {}
    raise NotOwned(
        f"{found.get('kind')} {meta.get('namespace')}/{meta.get('name')} is controlled by "
        f"another owner (uid {theirs}): not taking it over"
    )


def observation(deployment: Mapping[str, Any]) -> RevisionObservation:
    """A revision's Deployment as the engine sees it (docs/rollouts.md, the platform
    contract): replicas, available replicas of the current generation, the Available and
    ProgressDeadlineExceeded conditions with the latter's time."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    available_cond = conditions.get("Available") or {}
    progressing = conditions.get("Progressing") or {}
    fresh = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    available_replicas = int(status.get("availableReplicas") or 0)
    if not fresh:
        available_replicas = min(available_replicas, int(status.get("updatedReplicas") or 0))
    exceeded = (
        progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    )
    exceeded_at = None
    if exceeded and progressing.get("lastTransitionTime"):
        try:
            exceeded_at = datetime.fromisoformat(
                str(progressing["lastTransitionTime"]).replace("Z", "+00:00")
            )
        except ValueError:
            exceeded_at = None
    return RevisionObservation(
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=available_replicas,
        available=available_cond.get("status") == "True",
        progress_deadline_exceeded=exceeded,
        deadline_exceeded_at=exceeded_at,
    )


#: A container waiting for one of these will not start on its own soon.
_STUCK: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
#: What of a pod's own words is quoted in a status message.
PROBLEM_CHARS: Final = 400


def _container_problem(cs: Mapping[str, Any]) -> str | None:
    """What keeps one container from running, from its status: a non-zero exit (its
    termination message: ``serinus fetch`` writes the store's answer there), a crash loop
    (the last exit's message), or a wait that will not end by itself."""
    state = cs.get("state") or {}
    waiting, ended = state.get("waiting") or {}, state.get("terminated") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    if ended and ended.get("exitCode", 0) != 0:
        said = (
            ended.get("message") or f"exited with {ended.get('exitCode')} ({ended.get('reason')})"
        )
    elif waiting.get("reason") == "CrashLoopBackOff" and last:
        said = last.get("message") or f"exited with {last.get('exitCode')} ({last.get('reason')})"
    elif waiting.get("reason") in _STUCK:
        said = f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    else:
        return None
    said = " ".join(str(said).split())  # one line: a log tail has many
    if len(said) > PROBLEM_CHARS:
        said = said[: PROBLEM_CHARS - 1] + "…"
    restarts = int(cs.get("restartCount") or 0)
    return f"{said} (restarts: {restarts})" if restarts else said


def pod_problem(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a revision's pods are not ready, in their own words: the first init container,
    then container, that cannot run, else a pod the scheduler cannot place; None when
    nothing says (they may just be starting)."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in sorted(live, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        status = pod.get("status") or {}
        for kind, key in (
            ("init container", "initContainerStatuses"),
            ("container", "containerStatuses"),
        ):
            for cs in status.get(key) or []:
                problem = _container_problem(cs)
                if problem is not None:
                    return f"{kind} {cs.get('name')}: {problem}"
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                return f"unschedulable: {condition.get('message') or 'no node fits'}"
    return None


# --- the platform ----------------------------------------------------------------------------


class KubernetesPlatform:
    """Applies the engine's actions to a cluster (see :class:`~.base.Platform`)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        config: BuildConfig | None = None,
        instance: str | None = None,
        cache: ObjectCache | None = None,
    ) -> None:
        self.client = client
        self.config = config or BuildConfig()
        #: Where passes read (watch-backed); without one, every read is a request.
        self.cache = cache
        self.instance = instance or socket.gethostname()
        self._posted: OrderedDict[str, None] = OrderedDict()  # Event names, newest last
        #: Children this process applied or found, with the digest of their content as it
        #: last wrote or read it (None: found, never applied).
        self._known: dict[_Key, str | None] = {}
        #: Children put back since the last report, by (namespace, ModelDeployment).
        self._restored: dict[tuple[str, str], list[Restored]] = {}

    # ------------------------------------------------------------------ reading
    async def _cached(self, api_version: str, kind: str, namespace: str) -> KindCache | None:
        if self.cache is None:
            return None
        return await self.cache.synced(api_version, kind, namespace, wait=CACHE_SYNC_WAIT)

    async def read(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """The object from the watch cache once it has listed, else from the API server."""
        cache = await self._cached(api_version, kind, namespace)
        if cache is not None:
            return cache.get(namespace, name)
        found: Mapping[str, Any] | None = await self.client.get(
            object_path(api_version, kind, namespace, name)
        )
        return found

    def _hold(self, stored: Mapping[str, Any] | None) -> None:
        """What the API server answered to a write, so the next read is not older."""
        if self.cache is None or not stored or not stored.get("kind"):
            return
        meta = stored.get("metadata") or {}
        cache = self.cache.cache(
            str(stored.get("apiVersion")), str(stored["kind"]), str(meta.get("namespace") or "")
        )
        if cache is not None:
            cache.put(stored)

    def _drop(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        cache = None if self.cache is None else self.cache.cache(api_version, kind, namespace)
        if cache is not None:
            cache.discard(namespace, name)

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ModelDeployment; one the cache has not seen yet is read from the API server
        (kopf's watch, which starts its loop, may see a new object before the cache's does:
        taken for gone, its loop would end)."""
        found = await self.read(f"{GROUP}/{VERSION}", KIND, namespace, name)
        if found is None and self.cache is not None:
            found = await self.client.get(md_path(namespace, name))
            self._hold(found)
        return found

    async def _deployments_of(self, ref: ObjectRef) -> list[Mapping[str, Any]]:
        cache = await self._cached("apps/v1", "Deployment", ref.namespace)
        if cache is not None:
            return cache.of_model(ref.namespace, ref.name)
        path = collection_path("apps/v1", "Deployment", ref.namespace)
        selector = f"{MODEL_LABEL}={ref.name},app.kubernetes.io/component={COMPONENT_SERVER}"
        return await self.client.list(path, label_selector=selector)

    async def observe(
        self, ref: ObjectRef, md: ModelDeployment | None
    ) -> Mapping[str, RevisionObservation]:
        out: dict[str, RevisionObservation] = {}
        for item in await self._deployments_of(ref):
            labels = (item.get("metadata") or {}).get("labels") or {}
            revision = labels.get(REVISION_LABEL)
            if (
                labels.get(MODEL_LABEL) != ref.name
                or labels.get("app.kubernetes.io/component") != COMPONENT_SERVER
                or not revision
                or (item.get("metadata") or {}).get("deletionTimestamp")
            ):
                continue  # the router's Deployment, or one being deleted
            out[str(revision)] = observation(item)
        for revision, seen in out.items():
            if seen.replicas > 0 and not seen.complete(seen.replicas):
                out[revision] = replace(seen, problem=await self._problem(ref, revision))
        return out

    async def _problem(self, ref: ObjectRef, revision: str) -> str | None:
        """What the pods of a revision that is not ready say (a list of its pods: only
        while it is not ready, so a settled ModelDeployment costs none)."""
        selector = ",".join(f"{k}={v}" for k, v in revision_selector(ref.name, revision).items())
        try:
            found = await self.client.list(
                collection_path("v1", "Pod", ref.namespace), label_selector=selector
            )
        except ApiError as exc:  # e.g. no RBAC for pods: the status just says less
            log.debug("%s/%s: cannot list pods of %s: %s", ref.namespace, ref.name, revision, exc)
            return None
        return pod_problem(found)

    # ------------------------------------------------------------------ writing
    async def apply(self, obj: Mapping[str, Any], *, force: bool = False) -> Mapping[str, Any]:
        """Server-side apply ``obj`` when what was rendered changed, when the object changed
        since this process last wrote or read it, or with ``force``; returns the object as
        the API server stores it. A child found deleted, or changed in a field the operator
        owns, is put back and remembered for :meth:`report_restored`."""
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        api_version, kind = obj["apiVersion"], obj["kind"]
        path = object_path(api_version, kind, namespace, name)
        wanted = _with_hash(obj)
        rendered = wanted["metadata"]["annotations"][APPLIED_ANNOTATION]
        key = _key(obj)
        found = await self.read(api_version, kind, namespace, name)
        if found is None and key in self._known and self.cache is not None:
            # Gone from the cache: make sure before calling it a deletion to put back.
            found = await self.client.get(path)
        was = None
        if found is not None:
            _check_owner(found, obj)
            was = ((found.get("metadata") or {}).get("annotations") or {}).get(APPLIED_ANNOTATION)
            if not force and was == rendered and self._known.get(key) == _digest(found):
                return found
            upgraded = await self._upgrade_managed_fields(path, found)
            if upgraded is not None:
                found, was = upgraded, None  # what the apply removes now is no drift
        stored: Mapping[str, Any] | None = await self.client.server_side_apply(path, wanted)
        if stored is None:
            raise ApiError(
                404,
                f"cannot apply {kind} {namespace}/{name}: the API server does not serve "
                f"{api_version} {kind} in namespace {namespace} (are its CRDs installed?)",
            )
        self._hold(stored)
        self._report(key, found, stored, rendered=rendered, was=was)
        self._known[key] = _digest(stored)
        return stored

    def _report(
        self,
        key: _Key,
        found: Mapping[str, Any] | None,
        stored: Mapping[str, Any],
        *,
        rendered: str,
        was: str | None,
    ) -> None:
        """Log what an apply did; a child deleted or changed by someone else is remembered
        for :meth:`report_restored`."""
        namespace, kind, name = key[0], key[4], key[5]
        version = str((stored.get("metadata") or {}).get("resourceVersion") or "")
        if found is None:
            if key in self._known:
                log.warning(
                    "%s %s/%s was deleted by someone else: created it again", kind, namespace, name
                )
                self._restore(key, Restored(kind, name, deleted=True, resource_version=version))
            else:
                log.info("created %s %s/%s", kind, namespace, name)
        else:
            changed = changed_paths(content(found), content(stored))
            if changed and was == rendered:
                log.warning(
                    "%s %s/%s was changed by someone else (%s): put it back",
                    kind,
                    namespace,
                    name,
                    ", ".join(changed),
                )
                self._restore(
                    key,
                    Restored(
                        kind, name, deleted=False, fields=tuple(changed), resource_version=version
                    ),
                )
            elif changed:
                log.info("updated %s %s/%s", kind, namespace, name)

    async def _upgrade_managed_fields(
        self, path: str, found: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """``found`` with the fields the operator owned before server-side apply made its
        own (:func:`upgraded_managed_fields`), by a JSON patch conditioned on its
        resourceVersion; None when there was nothing to take over."""
        meta = found.get("metadata") or {}
        upgraded = upgraded_managed_fields(list(meta.get("managedFields") or []))
        if upgraded is None:
            return None
        patched: Mapping[str, Any] | None = await self.client.json_patch(
            path,
            [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": meta.get("resourceVersion"),
                },
                {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
            ],
        )
        log.info(
            "took over the fields of %s %s from before server-side apply",
            found.get("kind"),
            meta.get("name"),
        )
        return found if patched is None else patched

    def _restore(self, key: _Key, restored: Restored) -> None:
        self._restored.setdefault((key[0], key[1]), []).append(restored)

    def _seen(self, key: _Key) -> None:
        """``key`` exists: should it vanish, creating it again is a restoration."""
        self._known.setdefault(key, None)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is remembered of a deleted ModelDeployment's children."""
        for key in [k for k in self._known if k[:2] == (namespace, name)]:
            del self._known[key]
        self._restored.pop((namespace, name), None)

    async def ensure_revision(
        self, ref: ObjectRef, md: ModelDeployment, action: EnsureRevision
    ) -> None:
        uid = ref.uid or None
        name = revision_name(ref.name, action.ref.revision)
        path = object_path("apps/v1", "Deployment", ref.namespace, name)
        found = await self.read("apps/v1", "Deployment", ref.namespace, name)
        if found is None:
            await self.apply(
                revision_deployment(
                    md, action.ref, replicas=action.replicas, config=self.config, owner_uid=uid
                )
            )
        else:
            self._seen(_key(found))
            if (found.get("spec") or {}).get("replicas") != action.replicas:
                # A revision's pods never change once created (an operator upgrade with a
                # new default image must not restart every model): only its size does.
                self._hold(
                    await self.client.merge_patch(
                        path, {"spec": {"replicas": action.replicas}}, field_manager=FIELD_MANAGER
                    )
                )
                log.info("scaled %s/%s to %d", ref.namespace, name, action.replicas)
        await self.apply(
            revision_service(
                md.name, md.namespace, action.ref.revision, port=REVISION_PORT, owner_uid=uid
            )
        )
        await self.apply(
            revision_disruption_budget(md.name, md.namespace, action.ref.revision, owner_uid=uid)
        )

    async def scale_down(self, ref: ObjectRef, revision: str) -> None:
        name = revision_name(ref.name, revision)
        path = object_path("apps/v1", "Deployment", ref.namespace, name)
        found = await self.read("apps/v1", "Deployment", ref.namespace, name)
        if found is None or (found.get("spec") or {}).get("replicas") == 0:
            return
        self._hold(
            await self.client.merge_patch(
                path, {"spec": {"replicas": 0}}, field_manager=FIELD_MANAGER
            )
        )
        log.info("scaled down %s/%s", ref.namespace, revision_name(ref.name, revision))

    async def remove_revision(self, ref: ObjectRef, revision: str) -> None:
        name = revision_name(ref.name, revision)
        for api_version, kind in (
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
            ("policy/v1", "PodDisruptionBudget"),
        ):
            await self._delete(ref, api_version, kind, name)

    async def _delete(self, ref: ObjectRef, api_version: str, kind: str, name: str) -> None:
        """Delete a child the operator no longer wants (never one another owner controls)."""
        self._known.pop((ref.namespace, ref.name, ref.uid, api_version, kind, name), None)
        path = object_path(api_version, kind, ref.namespace, name)
        found = await self.read(api_version, kind, ref.namespace, name)
        if found is None or (found.get("metadata") or {}).get("deletionTimestamp"):
            return
        if _controller_uid(found) != (ref.uid or None):
            return  # not this ModelDeployment's (a person's, or another owner's)
        if await self.client.delete(path):
            log.info("deleted %s %s/%s", kind, ref.namespace, name)
        self._drop(api_version, kind, ref.namespace, name)

    async def model_env(self, md: ModelDeployment) -> Mapping[str, str]:
        """``spec.serving.env`` over the keys of the model's Secret, as the pods' ``env``
        over their ``envFrom``. The Secret is read (``get`` only) when an alias or a tag is
        to be pinned, never cached or logged."""
        credentials = md.spec.model.credentials
        secret_ref = credentials.secret_ref if credentials else None
        env: dict[str, str] = {}
        if secret_ref is not None:
            path = object_path("v1", "Secret", md.namespace, secret_ref.name)
            try:
                secret = await self.client.get(path)
            except ApiError as exc:
                raise PinError(f"Secret {secret_ref.name}: HTTP {exc.status}") from exc
            if secret is None:
                raise PinError(f"Secret {secret_ref.name} not found in {md.namespace}")
            for key, value in (secret.get("data") or {}).items():
                env[key] = base64.b64decode(value).decode("utf-8", errors="replace")
        return {**env, **md.spec.serving.env}

    async def autoscale(self, ref: ObjectRef, md: ModelDeployment) -> None:
        """The HorizontalPodAutoscaler of ``spec.autoscaling`` (``<name>``, scaling the
        ModelDeployment), applied; deleted when the spec has none."""
        if md.spec.autoscaling is None:
            await self._delete(ref, "autoscaling/v2", "HorizontalPodAutoscaler", md.name)
            return
        await self.apply(
            autoscaler(md.name, md.namespace, md.spec.autoscaling, owner_uid=ref.uid or None)
        )

    async def set_traffic(self, ref: ObjectRef, md: ModelDeployment, routes: Routes) -> None:
        """Write the provider's objects, then read the routes back from what the API server
        stored (as Flagger's ``GetRoutes`` and Argo Rollouts' ``VerifyWeight`` do): routes
        that do not read back are written again, and if they still do not, this raises, so
        the status never records traffic that did not land. Then the provider's runtime
        (the router), and the role Services ``<name>-stable`` and ``<name>-candidate``."""
        provider = make_provider(md.spec.traffic.provider)
        uid = ref.uid or None
        objects = list(provider.desired(md, routes, owner_uid=uid))
        stored = [await self.apply(obj) for obj in objects]
        if provider.read(stored) != routes:
            log.warning(
                "%s/%s: traffic objects changed by someone else; rewriting them",
                ref.namespace,
                ref.name,
            )
            stored = [await self.apply(obj, force=True) for obj in objects]
            landed = provider.read(stored)
            if landed != routes:
                raise TrafficNotLanded(f"asked for {routes}, the objects as stored route {landed}")
        for obj in provider.runtime(md, config=self.config, owner_uid=uid):
            await self.apply(obj)
        await self._set_roles(ref, md, routes)

    async def _set_roles(self, ref: ObjectRef, md: ModelDeployment, routes: Routes) -> None:
        """``<name>-stable`` selects the stable revision; ``<name>-candidate`` the candidate
        while there is one, and is deleted when there is none. A name taken by another
        owner's Service is left alone (logged): it must not hold the rollout up."""
        uid = ref.uid or None
        wanted = {STABLE_ROLE: routes.stable, CANDIDATE_ROLE: routes.candidate}
        for role, revision in wanted.items():
            if revision is None:
                await self._delete(ref, "v1", "Service", role_service_name(md.name, role))
                continue
            service = role_service(
                md.name, md.namespace, role, revision, port=REVISION_PORT, owner_uid=uid
            )
            try:
                await self.apply(service)
            except NotOwned as exc:
                log.warning("%s/%s: %s", ref.namespace, ref.name, exc)

    async def report_restored(self, ref: ObjectRef) -> bool:
        """Post one Event on the ModelDeployment naming the children put back since the last
        report (none: nothing to do). Its name is fixed by what was restored, so a repeat
        never posts it twice; when it cannot be posted it is kept for the next report."""
        restored = self._restored.pop((ref.namespace, ref.name), [])
        if not restored:
            return True
        message = "Put back what was changed outside the operator: " + "; ".join(
            r.describe() for r in restored
        )
        key = "\0".join([ref.uid, *(f"{r.kind}/{r.name}@{r.resource_version}" for r in restored)])
        name = f"{ref.name[:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if await self._post_event(
            ref, name=name, reason=RESTORED_REASON, message=message, type="Warning"
        ):
            return True
        self._restored.setdefault((ref.namespace, ref.name), [])[:0] = restored
        return False

    async def notify(self, ref: ObjectRef, notify: Notify, *, name: str) -> bool:
        return await self._post_event(
            ref,
            name=name,
            reason=notify.reason.value,
            message=notify.message,
            type=notify.type.value,
        )

    async def _post_event(
        self, ref: ObjectRef, *, name: str, reason: str, message: str, type: str
    ) -> bool:
        if name in self._posted:
            return True  # posted by this process; a restarted one learns it from the 409
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": ref.namespace,
                "labels": {MODEL_LABEL: ref.name},
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "source": {"component": "serinus-operator"},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self.instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.create(collection_path("v1", "Event", ref.namespace), event)
        except Conflict:
            pass  # AlreadyExists: an earlier pass posted it before it could say so
        except (ApiError, ApiUnreachable) as exc:
            log.warning(
                "could not record event %s on %s/%s (kept pending): %s",
                reason,
                ref.namespace,
                ref.name,
                exc,
            )
            return False
        self._posted[name] = None
        while len(self._posted) > POSTED_MEMORY:
            self._posted.popitem(last=False)
        return True

    async def write_status(
        self, ref: ObjectRef, patch: Mapping[str, Any], *, resource_version: str | None
    ) -> Mapping[str, Any]:
        body: dict[str, Any] = {"status": dict(patch)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        stored = await self.client.merge_patch(
            md_path(ref.namespace, ref.name, subresource="status"), body
        )
        if stored is None:
            raise Conflict(f"{ref.namespace}/{ref.name} is gone")
        self._hold(stored)
        result: Mapping[str, Any] = stored
        return result

    async def request_action(self, namespace: str, name: str, value: str) -> Mapping[str, Any]:
        """Write a manual action to the ``serinus.dev/action`` annotation (never ``spec``)."""
        from serinus_operator.api import ACTION_ANNOTATION

        stored = await self.client.merge_patch(
            md_path(namespace, name), {"metadata": {"annotations": {ACTION_ANNOTATION: value}}}
        )
        if stored is None:
            raise ApiError(404, f"modeldeployment {namespace}/{name} not found")
        result: Mapping[str, Any] = stored
        return result


__all__ = [
    "CHILD_SELECTOR",
    "FIELD_MANAGER",
    "ApiError",
    "ApiUnreachable",
    "Credentials",
    "KubeClient",
    "KubernetesPlatform",
    "NotOwned",
    "Restored",
    "load_credentials",
    "observation",
]

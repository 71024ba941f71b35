"""The Deployment of one revision: ``serinus serve`` for one model file, hardened.

A model kept in a store is fetched by an init container (``serinus fetch``) into an
``emptyDir`` (the root file system is read-only) and verified — against ``sha256`` when
the spec gives one, against the registry's digests for a pinned ``oci://…@sha256:`` — so a
fetch that fails keeps the pod in ``Init`` with the store's answer as the init container's
termination message (``kubectl describe pod``). The server then loads that copy (checked
against the digest the fetch recorded) and warms it up; only then does
``/v2/health/ready`` answer 200, so a pod never takes traffic before its model does. The
pod template is a function of the revision alone (model, serving, operator settings),
never of its role: promotion relabels nothing and restarts no pod.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from typing import Any, Final, Protocol

from serinus_operator.api import GROUP, ModelDeployment, ModelSpec, ServingSpec
from serinus_operator.api.model import pvc_claim
from serinus_operator.resources import pods
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import (
    COMPONENT_SERVER,
    labels,
    object_meta,
    revision_name,
    revision_selector,
)

SERVER_CONTAINER: Final = "server"
FETCH_CONTAINER: Final = "fetch"
MODEL_VOLUME: Final = "model"
MODEL_DIR: Final = "/models"
#: Where ``pvc://CLAIM/…`` claims are mounted: ``serinus serve``'s default SERINUS_PVC_ROOT.
PVC_ROOT: Final = "/mnt/models"
VERSION_ANNOTATION: Final = f"{GROUP}/version"
#: On SIGTERM ``serinus serve`` reports unready but keeps serving this long, so endpoints,
#: kube-proxy and the router's connection pools stop sending before it stops listening...
DRAIN_SECONDS: Final = 10
#: ...then lets in-flight requests finish for at most this long.
SHUTDOWN_SECONDS: Final = 20
#: The kubelet's SIGKILL comes only after both, with a margin for the process to exit.
SERVER_GRACE_SECONDS: Final = DRAIN_SECONDS + SHUTDOWN_SECONDS + 10
#: The startup probe waits for the model (download, verification, load, warm-up) for as long
#: as the rollout does (``spec.progressDeadline``) but never less than this: a pod whose
#: model never loads is restarted, which retries the download.
MIN_STARTUP_SECONDS: Final = 120
STARTUP_PERIOD: Final = 5
#: ``HOME`` on the writable emptyDir: libraries that cache under ``~`` must not fail on the
#: read-only root file system, and the fixed uid has no home directory in the image.
BASE_ENV: Final = {"HOME": pods.TMP_PATH}


class RevisionTemplate(Protocol):
    """What a revision runs (``rollout.status.RevisionRef`` is one), so a revision's pods
    can be rebuilt from the status alone, whatever ``spec`` now says."""

    @property
    def revision(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def model(self) -> ModelSpec: ...
    @property
    def serving(self) -> ServingSpec: ...


def _number(value: float) -> str:
    return format(value, "g")


def serve_args(md_name: str, ref: RevisionTemplate, *, config: BuildConfig) -> list[str]:
    """The ``serinus serve`` arguments for one revision's container.

    Every setting is explicit, so a change of the CLI's defaults never changes what a
    running revision does without a new revision.
    """
    model, batching = ref.model, ref.serving.batching
    args = ["serve", "--model", model.uri, "--name", md_name]
    args += ["--version", ref.version, "--revision", ref.revision]
    if model.sha256 is not None:
        args += ["--sha256", model.sha256]
    if model.profile is not None:
        args += ["--profile", model.profile]
    args += ["--host", config.listen_host, "--port", str(pods.CONTAINER_PORT)]
    args += ["--model-dir", MODEL_DIR]
    if fetched_first(model):
        args.append("--prefetched")
    args += ["--max-batch-size", str(batching.max_batch_size)]
    args += ["--max-batch-latency-ms", _number(batching.max_latency_ms)]
    args += ["--drain-seconds", str(DRAIN_SECONDS), "--shutdown-timeout", str(SHUTDOWN_SECONDS)]
    return args


def fetched_first(model: ModelSpec) -> bool:
    """Whether the model comes from a store (fetched by the init container) rather than
    from a path or a mounted claim (read in place)."""
    return not model.uri.startswith(("/", "file://", "pvc://"))


def fetch_args(model: ModelSpec) -> list[str]:
    """The init container's ``serinus fetch``: the same URI, digest and directory the server
    is given, so the server finds the copy."""
    args = ["fetch", "--model", model.uri, "--model-dir", MODEL_DIR]
    if model.sha256 is not None:
        args += ["--sha256", model.sha256]
    return args


def _seconds(value: timedelta) -> int:
    return max(1, math.ceil(value.total_seconds()))


def server_probes(progress_deadline: timedelta) -> dict[str, dict[str, Any]]:
    """Startup waits for the model; readiness takes a pod out of the endpoints within ~10 s
    of it becoming unready (draining, or a failed reload); liveness restarts a hung
    process. Liveness and readiness start only after startup succeeded."""
    budget = max(_seconds(progress_deadline), MIN_STARTUP_SECONDS)
    return {
        "startupProbe": pods.http_probe(
            "/v2/health/ready", period=STARTUP_PERIOD, failures=math.ceil(budget / STARTUP_PERIOD)
        ),
        "readinessProbe": pods.http_probe("/v2/health/ready", period=5, failures=2),
        "livenessProbe": pods.http_probe("/v2/health/live", period=10, failures=3, timeout=5),
    }


def model_volumes(
    ref: RevisionTemplate, *, config: BuildConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(mounts, volumes)`` for the model: the emptyDir fetched models are kept in and,
    for ``pvc://CLAIM/…`` models and profiles, each claim read-only at ``/mnt/models/CLAIM``
    (where ``serinus serve`` looks for it)."""
    mounts: list[dict[str, Any]] = [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}]
    volumes = [pods.empty_dir(MODEL_VOLUME, size_limit=config.model_volume_limit)]
    claims = {pvc_claim(uri) for uri in (ref.model.uri, ref.model.profile or "")} - {None}
    for claim in sorted(c for c in claims if c is not None):
        volume = "claim-" + hashlib.sha256(claim.encode()).hexdigest()[:12]
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
        claim_source = {"claimName": claim, "readOnly": True}
        volumes.append({"name": volume, "persistentVolumeClaim": claim_source})
    return mounts, volumes


def _fetch_containers(
    ref: RevisionTemplate,
    *,
    mounts: list[dict[str, Any]],
    config: BuildConfig,
    env_from: str | None,
) -> list[dict[str, Any]]:
    """The init container that fetches a model kept in a store (none for a path or a
    claim): the server's image, environment, resources and hardening, no port."""
    if not fetched_first(ref.model):
        return []
    fetch = pods.container(
        FETCH_CONTAINER,
        image=ref.serving.image or config.serving_image,
        args=fetch_args(ref.model),
        config=config,
        env=pods.env_list(BASE_ENV, ref.serving.env),
        resources=ref.serving.resources,
        probes={},
        mounts=[*mounts, pods.tmp_mount()],
        env_from_secret=env_from,
    )
    del fetch["ports"]  # it serves nothing
    return [fetch]


def revision_deployment(
    md: ModelDeployment,
    ref: RevisionTemplate,
    *,
    replicas: int,
    config: BuildConfig,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """Deployment ``<name>-<revision>``: ``replicas`` pods serving ``ref``'s model.

    Its image is ``ref.serving.image`` or the operator's ``config.serving_image``; resources
    and env come from ``ref.serving``; ``progressDeadlineSeconds`` from
    ``spec.progressDeadline``, so the Deployment's own ``ProgressDeadlineExceeded`` agrees
    with the rollout's deadline.
    """
    name, revision = md.name, ref.revision
    pod_labels = labels(name, component=COMPONENT_SERVER, revision=revision)
    serving, credentials = ref.serving, ref.model.credentials
    mounts, volumes = model_volumes(ref, config=config)
    env_from = credentials.secret_ref.name if credentials and credentials.secret_ref else None
    init = _fetch_containers(ref, mounts=mounts, config=config, env_from=env_from)
    server = pods.container(
        SERVER_CONTAINER,
        image=serving.image or config.serving_image,
        args=serve_args(name, ref, config=config),
        config=config,
        env=pods.env_list(BASE_ENV, serving.env),
        resources=serving.resources,
        probes=server_probes(md.spec.progress_deadline),
        mounts=[*mounts, pods.tmp_mount()],
        env_from_secret=env_from,
    )
    pod = pods.pod_spec(
        [server],
        config=config,
        volumes=[*volumes, pods.tmp_volume()],
        grace_seconds=SERVER_GRACE_SECONDS,
        # Serving pods never call the Kubernetes API; a ServiceAccount named for workload
        # identity gets its token, which the cloud's identity webhook may need.
        automount_token=serving.service_account_name is not None,
        service_account=serving.service_account_name,
        spread=revision_selector(name, revision),
        init_containers=init,
    )
    meta = object_meta(
        revision_name(name, revision),
        md.namespace,
        labels=pod_labels,
        annotations={VERSION_ANNOTATION: ref.version},
        owner=None if owner_uid is None else (name, owner_uid),
    )
    return pods.deployment(
        meta,
        replicas=replicas,
        selector=revision_selector(name, revision),
        pod_labels=pod_labels,
        pod_annotations=pods.scrape_annotations(),
        pod=pod,
        progress_deadline_seconds=_seconds(md.spec.progress_deadline),
    )

"""The pod pieces shared by serving and router pods: the hardened security context, probes,
scratch volumes, scrape annotations and the Deployment around a pod template.

Every pod meets the Pod Security Standards' ``restricted`` profile, so the operator works
in namespaces that enforce it: a fixed non-root user, no privilege escalation, all
capabilities dropped, seccomp ``RuntimeDefault`` and a read-only root file system (anything
written goes to an ``emptyDir``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from serinus_operator.api import ResourcesSpec
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import HTTP_PORT_NAME

#: The container port of serving and router pods (Services target it by name, ``http``).
CONTAINER_PORT: Final = 8080
METRICS_PATH: Final = "/metrics"
TMP_VOLUME: Final = "tmp"
TMP_PATH: Final = "/tmp"  # noqa: S108 - an emptyDir of the pod's own, not a shared /tmp
#: /tmp only holds what libraries put there; a bound keeps a runaway writer from filling
#: the node's disk (the kubelet evicts the pod instead).
TMP_SIZE_LIMIT: Final = "256Mi"
#: Old ReplicaSets kept for ``kubectl rollout undo``; a revision's template rarely changes.
REVISION_HISTORY_LIMIT: Final = 2


def pod_security_context(config: BuildConfig) -> dict[str, Any]:
    """Pod-wide: a fixed non-root uid/gid, ``fsGroup`` so the emptyDirs are writable, and
    the runtime's default seccomp filter."""
    return {
        "runAsNonRoot": True,
        "runAsUser": config.run_as_user,
        "runAsGroup": config.run_as_group,
        "fsGroup": config.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Per container: nothing the server needs is privileged, so nothing is allowed."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def http_probe(
    path: str, *, period: int, failures: int, timeout: int = 2, initial_delay: int = 0
) -> dict[str, Any]:
    """An HTTP GET probe on the ``http`` container port."""
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": HTTP_PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def scrape_annotations() -> dict[str, str]:
    """The ``prometheus.io/*`` annotations that annotation-driven scrape configs read."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(CONTAINER_PORT),
        "prometheus.io/path": METRICS_PATH,
    }


def empty_dir(name: str, *, size_limit: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {}
    if size_limit is not None:
        source["sizeLimit"] = size_limit
    return {"name": name, "emptyDir": source}


def tmp_volume() -> dict[str, Any]:
    return empty_dir(TMP_VOLUME, size_limit=TMP_SIZE_LIMIT)


def tmp_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": TMP_PATH}


def env_list(*layers: Mapping[str, str]) -> list[dict[str, str]]:
    """``env`` from ``layers`` merged left to right (a later layer wins), sorted by name so
    that the pod template, and so the pods, do not change when a spec reorders its list."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return [{"name": name, "value": merged[name]} for name in sorted(merged)]


def resource_requirements(resources: ResourcesSpec) -> dict[str, Any]:
    return resources.to_dict()


def spread_by_node(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """Prefer spreading the selected pods over nodes, so one node going away does not take
    every replica with it; ``ScheduleAnyway`` never leaves a pod pending for it."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(selector)},
        }
    ]


def http_port() -> dict[str, Any]:
    return {"name": HTTP_PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}


def container(
    name: str,
    *,
    image: str,
    args: Sequence[str],
    config: BuildConfig,
    env: Sequence[Mapping[str, str]],
    resources: ResourcesSpec,
    probes: Mapping[str, Mapping[str, Any]],
    mounts: Sequence[Mapping[str, Any]],
    lifecycle: Mapping[str, Any] | None = None,
    env_from_secret: str | None = None,
) -> dict[str, Any]:
    """A hardened container running ``serinus`` with ``args``; ``env_from_secret``: a
    Secret whose keys become environment variables (credentials, by reference only).

    ``command`` is explicit so the pod does not depend on the image's entrypoint.
    """
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["serinus"],
        "args": list(args),
        "ports": [http_port()],
    }
    if config.image_pull_policy is not None:
        out["imagePullPolicy"] = config.image_pull_policy
    if env:
        out["env"] = [dict(e) for e in env]
    if env_from_secret is not None:
        out["envFrom"] = [{"secretRef": {"name": env_from_secret}}]
    requirements = resource_requirements(resources)
    if requirements:
        out["resources"] = requirements
    out.update({kind: dict(probe) for kind, probe in probes.items()})
    if lifecycle is not None:
        out["lifecycle"] = dict(lifecycle)
    out["securityContext"] = container_security_context()
    out["volumeMounts"] = [dict(m) for m in mounts]
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return out


def pod_spec(
    containers: Sequence[Mapping[str, Any]],
    *,
    config: BuildConfig,
    volumes: Sequence[Mapping[str, Any]],
    grace_seconds: int,
    automount_token: bool,
    spread: Mapping[str, str],
    service_account: str | None = None,
    init_containers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The pod around ``containers``. Service links are off: the servers read no
    ``<SERVICE>_PORT`` variables, and a Service named like one of their settings could
    otherwise inject a value into them."""
    spec: dict[str, Any] = {}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    spec["automountServiceAccountToken"] = automount_token
    spec["enableServiceLinks"] = False
    spec["securityContext"] = pod_security_context(config)
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    spec["terminationGracePeriodSeconds"] = grace_seconds
    spec["topologySpreadConstraints"] = spread_by_node(spread)
    if init_containers:
        spec["initContainers"] = [dict(c) for c in init_containers]
    spec["containers"] = [dict(c) for c in containers]
    spec["volumes"] = [dict(v) for v in volumes]
    return spec


def deployment(
    meta: Mapping[str, Any],
    *,
    replicas: int,
    selector: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    pod: Mapping[str, Any],
    progress_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """An ``apps/v1`` Deployment that never goes below ``replicas`` ready pods while its
    template changes (``maxUnavailable: 0``: a new pod must be ready before an old one
    goes)."""
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(selector)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    spec["template"] = {
        "metadata": {"labels": dict(pod_labels), "annotations": dict(pod_annotations)},
        "spec": dict(pod),
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta), "spec": spec}

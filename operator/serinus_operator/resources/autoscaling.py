"""The HorizontalPodAutoscaler of ``spec.autoscaling`` and the serving revisions'
PodDisruptionBudgets: the objects that decide how many pods a model runs, and how many a
node drain may take away at once."""

from __future__ import annotations

from typing import Any

from serinus_operator.api import GROUP, KIND, VERSION, AutoscalingSpec
from serinus_operator.resources.meta import (
    COMPONENT_SERVER,
    labels,
    object_meta,
    revision_name,
    revision_selector,
)

#: The serving pods' in-flight gauge, as a custom metrics adapter serves it per pod.
INFLIGHT_METRIC = "serinus_inflight_requests"


def autoscaler(
    md_name: str, namespace: str, spec: AutoscalingSpec, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """HPA ``<name>`` (autoscaling/v2) scaling the ModelDeployment, not a Deployment: the
    operator sizes the revisions from ``spec.replicas``, so an HPA aimed at a revision's
    Deployment would be undone by the next pass."""
    metrics: list[dict[str, Any]] = []
    if spec.target_cpu_utilization is not None:
        target = {"type": "Utilization", "averageUtilization": spec.target_cpu_utilization}
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": target}})
    if spec.target_inflight_requests is not None:
        target = {"type": "AverageValue", "averageValue": str(spec.target_inflight_requests)}
        metrics.append(
            {"type": "Pods", "pods": {"metric": {"name": INFLIGHT_METRIC}, "target": target}}
        )
    owner = None if owner_uid is None else (md_name, owner_uid)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(
            md_name,
            namespace,
            labels=labels(md_name, component=COMPONENT_SERVER, instance=md_name),
            owner=owner,
        ),
        "spec": {
            "scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": md_name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": metrics,
        },
    }


def revision_disruption_budget(
    md_name: str, namespace: str, revision: str, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """PodDisruptionBudget ``<name>-<revision>``: a node drain evicts one serving pod of a
    revision at a time. ``maxUnavailable: 1`` rather than ``minAvailable``: a one-pod
    revision (a right-sized canary) can still be drained instead of blocking the node."""
    owner = None if owner_uid is None else (md_name, owner_uid)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(
            revision_name(md_name, revision),
            namespace,
            labels=labels(md_name, component=COMPONENT_SERVER, revision=revision),
            owner=owner,
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": revision_selector(md_name, revision)},
        },
    }

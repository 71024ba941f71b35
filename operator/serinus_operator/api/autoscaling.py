"""``spec.autoscaling``: the HorizontalPodAutoscaler the operator creates for a model.

The HPA targets the ModelDeployment itself through its ``scale`` subresource, as one can
target an Argo Rollout: it sets ``spec.replicas``, which sizes the stable revision (and a
candidate, see ``strategy.candidateScale``). Its pod metrics come from the stable
revision's pods (``status.selector``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serinus_operator.api.errors import SpecError
from serinus_operator.api.wire import refines, wire

_TARGET = "set targetCPUUtilization and/or targetInflightRequests"


@dataclass(frozen=True)
class AutoscalingSpec:
    max_replicas: int = field(
        metadata=wire(minimum=1, maximum=1000, required="required: the most pods, e.g. 10")
    )
    min_replicas: int = field(default=1, metadata=wire(minimum=1, maximum=1000))
    #: Average CPU use as a percentage of the pods' CPU requests (serving.resources).
    target_cpu_utilization: int | None = field(
        default=None, metadata=wire(key="targetCPUUtilization", minimum=1, maximum=1000)
    )
    #: Average ``serinus_inflight_requests`` per pod (a Pods metric: needs a custom metrics
    #: adapter such as prometheus-adapter serving it).
    target_inflight_requests: int | None = field(
        default=None, metadata=wire(minimum=1, maximum=100_000)
    )


@refines(AutoscalingSpec)
def _check_autoscaling(spec: AutoscalingSpec, _: Mapping[str, Any], path: str) -> AutoscalingSpec:
    if spec.min_replicas > spec.max_replicas:
        raise SpecError(
            f"{path}.minReplicas",
            f"{spec.min_replicas} is more than maxReplicas {spec.max_replicas}: swap them",
        )
    if spec.target_cpu_utilization is None and spec.target_inflight_requests is None:
        raise SpecError(path, _TARGET)
    return spec

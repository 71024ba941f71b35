"""Operator-level settings for the builders: images, the router's size, the pods' user.

One frozen object, read from the operator's configuration once and passed to every builder,
so that two reconciliations of the same ModelDeployment always render the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from serinus_operator import __version__
from serinus_operator.api import ResourcesSpec

#: One image carries both ``serinus serve`` and ``serinus router`` (one distribution); its tag
#: follows the operator's version so that an operator and its pods speak the same protocol.
DEFAULT_IMAGE: Final = f"ghcr.io/serinus-dev/serinus-serving:{__version__}"
#: A fixed non-root user and group: ``runAsNonRoot`` alone cannot check an image whose user
#: is a name, and a fixed gid lets ``fsGroup`` make the emptyDir volumes writable.
DEFAULT_UID: Final = 10001
#: Two router pods: the router is on the path of every request, so one pod being rescheduled
#: (node drain, eviction, a router upgrade) must not take the model offline.
DEFAULT_ROUTER_REPLICAS: Final = 2
#: The router is a small async proxy; these fit a few thousand requests per second.
DEFAULT_ROUTER_RESOURCES: Final = ResourcesSpec(
    requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "256Mi"}
)
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class BuildConfig:
    """What the operator decides for every ModelDeployment (``spec`` decides the rest).

    ``serving_image`` is used when ``spec.serving.image`` is unset. ``listen_host`` is
    where the servers bind inside the pod: ``0.0.0.0`` for IPv4 and dual-stack clusters,
    ``::`` for IPv6-only ones. ``model_volume_limit`` bounds the model emptyDir (a quantity
    such as ``"8Gi"``; None: bounded only by the node's ephemeral storage).
    """

    serving_image: str = DEFAULT_IMAGE
    router_image: str = DEFAULT_IMAGE
    router_replicas: int = DEFAULT_ROUTER_REPLICAS
    router_resources: ResourcesSpec = field(default_factory=lambda: DEFAULT_ROUTER_RESOURCES)
    run_as_user: int = DEFAULT_UID
    run_as_group: int = DEFAULT_UID
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    listen_host: str = "0.0.0.0"
    model_volume_limit: str | None = None
    #: The routers' prediction log (``serinus router --prediction-log``): a ``redis://`` URL
    #: shared by every replica, so a label reaching any router is joined; None keeps the
    #: router's default (in memory: one replica's labels only).
    router_prediction_log: str | None = None

    def __post_init__(self) -> None:
        if not self.serving_image or not self.router_image:
            raise ValueError("images must not be empty")
        if self.router_replicas < 0:
            raise ValueError(f"router_replicas must be >= 0, got {self.router_replicas}")
        if self.run_as_user <= 0 or self.run_as_group <= 0:
            raise ValueError("run_as_user and run_as_group must be non-root (> 0)")
        if self.image_pull_policy is not None and self.image_pull_policy not in PULL_POLICIES:
            raise ValueError(f"image_pull_policy must be one of {', '.join(PULL_POLICIES)}")

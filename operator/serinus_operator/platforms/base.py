"""The contract between the reconcile loop and a platform.

A platform observes the revisions that exist, applies resource and traffic actions
idempotently, records Events and writes status. It knows nothing of rollouts: every
decision was already made by the pure engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from serinus_operator.api import ModelDeployment
from serinus_operator.rollout.actions import EnsureRevision, Notify
from serinus_operator.rollout.observed import RevisionObservation
from serinus_operator.traffic.base import Routes


@dataclass(frozen=True)
class ObjectRef:
    """The ModelDeployment being reconciled, as its children's owner."""

    namespace: str
    name: str
    uid: str


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and decide again."""


class Platform(Protocol):
    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ModelDeployment as stored now (None when it is gone)."""
        ...

    async def observe(
        self, ref: ObjectRef, md: ModelDeployment | None
    ) -> Mapping[str, RevisionObservation]:
        """Every revision of this ModelDeployment that exists, ready or not."""
        ...

    async def ensure_revision(
        self, ref: ObjectRef, md: ModelDeployment, action: EnsureRevision
    ) -> None:
        """Run the revision at ``action.replicas`` (created, updated or scaled up)."""
        ...

    async def scale_down(self, ref: ObjectRef, revision: str) -> None: ...

    async def remove_revision(self, ref: ObjectRef, revision: str) -> None: ...

    async def set_traffic(self, ref: ObjectRef, md: ModelDeployment, routes: Routes) -> None:
        """Put ``routes`` into effect with the ModelDeployment's traffic provider."""
        ...

    async def model_env(self, md: ModelDeployment) -> Mapping[str, str]:
        """The environment the revision's pods would fetch the model with: the keys of
        ``spec.model.credentials.secretRef`` and ``spec.serving.env`` (read only to pin an
        alias or a tag; never logged, never stored)."""
        ...

    async def autoscale(self, ref: ObjectRef, md: ModelDeployment) -> None:
        """Keep the autoscaler of ``spec.autoscaling`` (none without it)."""
        ...

    async def notify(self, ref: ObjectRef, notify: Notify, *, name: str) -> bool:
        """Record an Event named ``name`` on the ModelDeployment, once: True when it is
        recorded or already was; False when it could not be (never raises)."""
        ...

    async def write_status(
        self, ref: ObjectRef, patch: Mapping[str, Any], *, resource_version: str | None
    ) -> Mapping[str, Any]:
        """Merge-patch ``status`` (raising :class:`Conflict` when ``resource_version`` is
        stale) and return the object as stored."""
        ...

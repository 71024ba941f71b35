"""What every traffic provider does, and the routes they put into effect.

A provider is pure: ``desired`` turns routes into the Kubernetes objects that realise them,
``read`` turns objects as found on the cluster back into routes (``None`` when they do not
describe a complete, consistent set of routes), so the operator can tell whether a change
has landed by comparing ``read(found)`` with what it asked for. Applying the objects is
the platform executor's job.

Roles (which revision is stable, which is the candidate) cannot always be told from the
traffic itself - at weight 0 or 100 the two look alike - so every provider also writes them
as the ``serinus.dev/stable`` and ``serinus.dev/candidate`` annotations; weights, mirroring
and backends are always read from the fields that actually steer traffic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from serinus_operator.api import AnalysisSpec, ModelDeployment, StrategySpec, StrategyType
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import CANDIDATE_ANNOTATION, STABLE_ANNOTATION

if TYPE_CHECKING:
    from serinus_operator.rollout.actions import SetTraffic

_REVISION = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class UnsupportedRoutes(ValueError):
    """The provider cannot put these routes into effect (e.g. a 10% canary on Service)."""


@dataclass(frozen=True)
class Routes:
    """Where live traffic goes: ``100 - candidate_weight`` % to ``stable``, the rest to
    ``candidate``, and ``mirror_percent`` % of requests copied to ``candidate``.

    The same four facts as the engine's ``SetTraffic``; the revisions' Service port is a
    property of the platform, given to the provider, not of the routes.
    """

    stable: str
    candidate: str | None = None
    candidate_weight: int = 0
    mirror_percent: int = 0

    def __post_init__(self) -> None:
        for role, revision in (("stable", self.stable), ("candidate", self.candidate)):
            if revision is not None and (len(revision) > 63 or not _REVISION.match(revision)):
                raise ValueError(f"{role} revision {revision!r} is not a DNS label")
        for name, value in (
            ("candidate_weight", self.candidate_weight),
            ("mirror_percent", self.mirror_percent),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(f"{name} must be an integer from 0 to 100, got {value!r}")
        if self.candidate is None and (self.candidate_weight or self.mirror_percent):
            raise ValueError("candidate_weight and mirror_percent need a candidate")
        if self.candidate == self.stable:
            raise ValueError(f"candidate and stable are the same revision {self.stable!r}")

    @classmethod
    def of(cls, action: SetTraffic) -> Routes:
        """The routes a ``SetTraffic`` action asks for."""
        return cls(
            stable=action.stable,
            candidate=action.candidate,
            candidate_weight=action.candidate_weight,
            mirror_percent=action.mirror_percent,
        )

    @property
    def stable_weight(self) -> int:
        return 100 - self.candidate_weight

    @property
    def weights(self) -> dict[str, int]:
        """Revision -> percent of live traffic, stable first."""
        out = {self.stable: self.stable_weight}
        if self.candidate is not None:
            out[self.candidate] = self.candidate_weight
        return out

    @property
    def mirror(self) -> str | None:
        """The revision receiving copies, if any."""
        return self.candidate if self.mirror_percent else None

    @property
    def role_annotations(self) -> dict[str, str]:
        out = {STABLE_ANNOTATION: self.stable}
        if self.candidate is not None:
            out[CANDIDATE_ANNOTATION] = self.candidate
        return out


class TrafficProvider(Protocol):
    """One way of putting routes into effect: Router, GatewayAPI or Service."""

    def check(self, strategy: StrategySpec | StrategyType) -> str | None:
        """Why this provider cannot run ``strategy`` (a message for a condition and an
        Event), or ``None`` when it can."""
        ...

    def check_analysis(self, analysis: AnalysisSpec | None) -> str | None:
        """Why this provider cannot feed one of the analysis metrics, or ``None``."""
        ...

    def desired(
        self, md: ModelDeployment, routes: Routes, *, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects that realise ``routes`` (with owner references given the
        ModelDeployment's ``owner_uid``); raises :class:`UnsupportedRoutes` when the
        provider cannot."""
        ...

    def runtime(
        self, md: ModelDeployment, *, config: BuildConfig, owner_uid: str | None = None
    ) -> list[dict[str, Any]]:
        """What the provider runs besides the routes (the serinus router's Deployment and
        its permissions), applied after them so that the routes exist when it starts."""
        ...

    def read(self, objects: Iterable[Mapping[str, Any]]) -> Routes | None:
        """The routes that ``objects`` (as found on the cluster) put into effect, or ``None``
        when they are missing, incomplete or inconsistent."""
        ...


# --- helpers for providers -------------------------------------------------------------------


def strategy_type(strategy: StrategySpec | StrategyType) -> StrategyType:
    return strategy.type if isinstance(strategy, StrategySpec) else StrategyType(strategy)


def find(
    objects: Iterable[Mapping[str, Any]], *, api_version: str, kind: str
) -> list[Mapping[str, Any]]:
    return [
        o
        for o in objects
        if isinstance(o, Mapping) and o.get("apiVersion") == api_version and o.get("kind") == kind
    ]


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (objects as found may be anything)."""
    return value if isinstance(value, Mapping) else {}


def roles(obj: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(stable, candidate) from an object's role annotations."""
    annotations = mapping(mapping(obj.get("metadata")).get("annotations"))
    stable, candidate = annotations.get(STABLE_ANNOTATION), annotations.get(CANDIDATE_ANNOTATION)
    if not isinstance(stable, str) or not (candidate is None or isinstance(candidate, str)):
        return None
    return stable, candidate


def routes_or_none(
    stable: str, candidate: str | None, candidate_weight: int, mirror_percent: int
) -> Routes | None:
    try:
        return Routes(stable, candidate, candidate_weight, mirror_percent)
    except ValueError:
        return None

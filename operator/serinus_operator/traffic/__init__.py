"""Traffic providers: put the engine's routes into effect (Router, GatewayAPI, Service).

Each provider is a pure module behind the :class:`TrafficProvider` protocol; the platform
executor applies the objects ``desired`` returns and feeds what it finds back to ``read``.
"""

from __future__ import annotations

from serinus_operator.api import ModelDeploymentSpec, SpecError
from serinus_operator.api import TrafficProvider as ProviderKind
from serinus_operator.resources.meta import PUBLIC_PORT, REVISION_PORT
from serinus_operator.traffic.base import Routes, TrafficProvider, UnsupportedRoutes
from serinus_operator.traffic.gateway_api import GatewayAPIProvider
from serinus_operator.traffic.router import RouterProvider
from serinus_operator.traffic.service import ServiceProvider


def make_provider(
    kind: ProviderKind | str, *, port: int = REVISION_PORT, public_port: int = PUBLIC_PORT
) -> TrafficProvider:
    """The provider for ``spec.traffic.provider``; ``port`` is the revisions' Service port
    and ``public_port`` the public Service's."""
    try:
        kind = ProviderKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in ProviderKind)
        raise ValueError(f"unknown traffic provider {kind!r}: use one of {known}") from None
    if kind == ProviderKind.ROUTER:
        return RouterProvider(port=port, public_port=public_port)
    if kind == ProviderKind.GATEWAY_API:
        return GatewayAPIProvider(port=port)
    return ServiceProvider(public_port=public_port)


def check_spec(spec: ModelDeploymentSpec) -> None:
    """Refuse a spec its traffic provider cannot carry out (the strategy, or an analysis
    metric it cannot feed) with a :class:`SpecError` that names the fix: the rollout then
    waits in Degraded with a condition and an Event rather than starting and failing."""
    provider = make_provider(spec.traffic.provider)
    for problem in (provider.check(spec.strategy), provider.check_analysis(spec.analysis)):
        if problem is not None:
            raise SpecError("spec.traffic.provider", problem)


__all__ = [
    "GatewayAPIProvider",
    "RouterProvider",
    "Routes",
    "ServiceProvider",
    "TrafficProvider",
    "UnsupportedRoutes",
    "check_spec",
    "make_provider",
]

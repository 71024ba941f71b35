"""Typed, validated views of a spec's sections, read by the one mapper (``api.wire``).

Each type's own rules run as it is read (its ``@refines`` function, next to the type), so
these are the same checks whether a section is read alone or as part of ``parse_spec``.
"""

from __future__ import annotations

from serinus_operator.api.analysis import AnalysisSpec
from serinus_operator.api.errors import SpecError
from serinus_operator.api.model import ModelSpec, ServingSpec
from serinus_operator.api.spec import ModelDeploymentSpec, TrafficSpec, WebhookSpec, unique_webhooks
from serinus_operator.api.strategy import StrategySpec
from serinus_operator.api.wire import decode


def parse_model(data: object, path: str = "spec.model") -> ModelSpec:
    return decode(ModelSpec, data, path, strict=True)


def parse_serving(data: object, path: str = "spec.serving") -> ServingSpec:
    return decode(ServingSpec, {} if data is None else data, path, strict=True)


def parse_strategy(data: object, path: str = "spec.strategy") -> StrategySpec:
    return decode(StrategySpec, {} if data is None else data, path, strict=True)


def parse_analysis(data: object, path: str = "spec.analysis") -> AnalysisSpec | None:
    return None if data is None else decode(AnalysisSpec, data, path, strict=True)


def parse_traffic(data: object, path: str = "spec.traffic") -> TrafficSpec:
    return decode(TrafficSpec, {} if data is None else data, path, strict=True)


def parse_webhooks(data: object, path: str = "spec.webhooks") -> tuple[WebhookSpec, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SpecError(path, "must be a list of webhooks")
    hooks = tuple(
        decode(WebhookSpec, item, f"{path}[{i}]", strict=True) for i, item in enumerate(data)
    )
    unique_webhooks(hooks, path)
    return hooks


def parse_spec(data: object, path: str = "spec") -> ModelDeploymentSpec:
    return decode(ModelDeploymentSpec, data, path, strict=True)

"""The whole ModelDeployment spec, its traffic and webhooks, and the rules across sections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from serinus_operator.api.analysis import DNS_LABEL, AnalysisSpec
from serinus_operator.api.autoscaling import AutoscalingSpec
from serinus_operator.api.durations import format_duration
from serinus_operator.api.enums import PROVIDER_STRATEGIES, TrafficProvider, WebhookType
from serinus_operator.api.errors import SpecError
from serinus_operator.api.model import ModelSpec, ServingSpec, revision_of
from serinus_operator.api.names import MAX_WEBHOOK_TIMEOUT
from serinus_operator.api.strategy import StrategySpec
from serinus_operator.api.wire import refines, wire


@dataclass(frozen=True)
class GatewayRef:
    name: str
    namespace: str | None = None
    section_name: str | None = None


@dataclass(frozen=True)
class TrafficSpec:
    provider: TrafficProvider = TrafficProvider.ROUTER
    gateway_ref: GatewayRef | None = None
    hostnames: tuple[str, ...] = ()


@refines(TrafficSpec)
def _check_traffic(traffic: TrafficSpec, _: Mapping[str, Any], path: str) -> TrafficSpec:
    if traffic.provider == TrafficProvider.GATEWAY_API and traffic.gateway_ref is None:
        raise SpecError(f"{path}.gatewayRef", "required with provider GatewayAPI: name the Gateway")
    return traffic


@dataclass(frozen=True)
class WebhookSpec:
    name: str
    type: WebhookType = field(
        metadata=wire(required=f"required: one of {', '.join(t.value for t in WebhookType)}")
    )
    url: str
    timeout: timedelta = field(
        default=timedelta(seconds=10),
        metadata=wire(minimum=timedelta(0), exclusive_minimum=True, maximum=MAX_WEBHOOK_TIMEOUT),
    )
    metadata: Mapping[str, str] = field(default_factory=dict)


@refines(WebhookSpec)
def _check_webhook(hook: WebhookSpec, _: Mapping[str, Any], path: str) -> WebhookSpec:
    if not DNS_LABEL.match(hook.name) or len(hook.name) > 63:
        raise SpecError(f"{path}.name", "use lowercase letters, digits and '-', e.g. 'load-test'")
    if not hook.url.startswith(("http://", "https://")):
        raise SpecError(f"{path}.url", f"must be an http:// or https:// URL, got {hook.url!r}")
    return hook


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelSpec = field(metadata=wire(required="required: set model.uri and model.version"))
    serving: ServingSpec = field(default_factory=ServingSpec)
    replicas: int = field(default=1, metadata=wire(minimum=1, maximum=1000))
    strategy: StrategySpec = field(
        default_factory=StrategySpec,
        metadata=wire(required="required: set strategy.type and its fields, e.g. canary.steps"),
    )
    analysis: AnalysisSpec | None = None
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    progress_deadline: timedelta = field(
        default=timedelta(minutes=10),
        metadata=wire(minimum=timedelta(0), exclusive_minimum=True, hint="e.g. '10m'"),
    )
    webhooks: tuple[WebhookSpec, ...] = ()
    autoscaling: AutoscalingSpec | None = None

    @property
    def revision(self) -> str:
        return revision_of(self.model, self.serving)

    def hooks(self, kind: WebhookType) -> tuple[WebhookSpec, ...]:
        return tuple(h for h in self.webhooks if h.type == kind)


def unique_webhooks(hooks: tuple[WebhookSpec, ...], path: str) -> None:
    seen: set[str] = set()
    for i, hook in enumerate(hooks):
        if hook.name in seen:
            raise SpecError(f"{path}[{i}].name", f"{hook.name!r} is used twice; names are keys")
        seen.add(hook.name)


@refines(ModelDeploymentSpec)
def _check_spec(spec: ModelDeploymentSpec, _: Mapping[str, Any], path: str) -> ModelDeploymentSpec:
    unique_webhooks(spec.webhooks, f"{path}.webhooks")
    _check_consistency(spec)
    return spec


def _check_consistency(spec: ModelDeploymentSpec) -> None:
    """Rules that span sections and need parsed durations, which CEL cannot compare."""
    kind, provider = spec.strategy.type, spec.traffic.provider
    runs = PROVIDER_STRATEGIES.get(provider)
    if runs is not None and kind not in runs:
        allowed = " or ".join(sorted(runs))
        raise SpecError(
            "spec.traffic.provider",
            f"{provider} switches a selector and cannot split or mirror traffic for {kind}: "
            f"use Router or GatewayAPI, or strategy.type {allowed}",
        )
    if spec.analysis is None:
        return
    interval = spec.analysis.interval
    windows: list[tuple[str, timedelta]] = []
    if spec.strategy.shadow is not None:
        windows.append(("spec.strategy.shadow.duration", spec.strategy.shadow.duration))
    if spec.strategy.blue_green is not None:
        bg = spec.strategy.blue_green
        windows.append(("spec.strategy.blueGreen.previewDuration", bg.preview_duration))
        windows.append(
            ("spec.strategy.blueGreen.postPromotionDuration", bg.post_promotion_duration)
        )
    for where, window in windows:
        if timedelta(0) < window < interval:
            raise SpecError(
                where,
                f"{format_duration(window)} is shorter than analysis.interval "
                f"({format_duration(interval)}), so no measurement would complete: "
                "lengthen it or shorten the interval",
            )

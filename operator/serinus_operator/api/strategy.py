"""How a new revision is put in front of traffic: canary steps, a shadow, a blue-green switch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from serinus_operator.api.codecs import PRESENT
from serinus_operator.api.enums import CandidateScale, ShadowThen, StrategyType
from serinus_operator.api.errors import SpecError
from serinus_operator.api.wire import refines, wire

_ONE_STEP = "add at least one step, e.g. [{setWeight: 10}]"


@dataclass(frozen=True)
class CanaryScale:
    """``setCanaryScale``: at least this many candidate pods from this step on (with
    ``candidateScale: Traffic``), as ``replicas`` or as the share of ``spec.replicas`` a
    ``weight`` needs; ``matchTrafficWeight`` ends an earlier one. It only ever adds pods:
    a weight still gets at least the pods it needs."""

    replicas: int | None = field(default=None, metadata=wire(minimum=1, maximum=1000))
    weight: int | None = field(default=None, metadata=wire(minimum=0, maximum=100))
    match_traffic_weight: bool = False


@refines(CanaryScale)
def _check_scale(scale: CanaryScale, _: Mapping[str, Any], path: str) -> CanaryScale:
    given = [scale.replicas is not None, scale.weight is not None, scale.match_traffic_weight]
    if sum(given) != 1:
        raise SpecError(path, "set exactly one of replicas, weight or matchTrafficWeight: true")
    return scale


@dataclass(frozen=True)
class CanaryStep:
    """Exactly one of ``set_weight``, ``pause`` or ``set_canary_scale``; a pause with
    ``duration=None`` waits for a manual promote."""

    set_weight: int | None = field(default=None, metadata=wire(minimum=0, maximum=100))
    pause: bool = field(default=False, metadata=wire(codec=PRESENT))
    duration: timedelta | None = field(default=None, metadata=wire(key="pause.duration"))
    set_canary_scale: CanaryScale | None = None


@refines(CanaryStep)
def _check_step(step: CanaryStep, data: Mapping[str, Any], path: str) -> CanaryStep:
    pause = "pause" in data  # `pause:` with nothing after it is a pause too
    kinds = (step.set_weight is not None) + pause + (step.set_canary_scale is not None)
    if kinds != 1:
        raise SpecError(path, "a step sets exactly one of setWeight, pause or setCanaryScale")
    return replace(step, pause=pause)


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[CanaryStep, ...] = field(metadata=wire(required=_ONE_STEP))


@refines(CanarySpec)
def _check_canary(canary: CanarySpec, _: Mapping[str, Any], path: str) -> CanarySpec:
    if not canary.steps:
        raise SpecError(f"{path}.steps", _ONE_STEP)
    return canary


@dataclass(frozen=True)
class ShadowSpec:
    mirror_percent: int = field(default=100, metadata=wire(minimum=1, maximum=100))
    duration: timedelta = field(
        default=timedelta(minutes=10),
        metadata=wire(minimum=timedelta(0), exclusive_minimum=True),
    )
    then: ShadowThen = ShadowThen.PROMOTE


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promote: bool = True
    preview_duration: timedelta = timedelta(minutes=5)
    post_promotion_duration: timedelta = timedelta(minutes=5)
    scale_down_delay: timedelta | None = None


@dataclass(frozen=True)
class StrategySpec:
    type: StrategyType = StrategyType.CANARY
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None
    blue_green: BlueGreenSpec | None = None
    scale_down_delay_default: timedelta = field(
        default=timedelta(seconds=30), metadata=wire(key="scaleDownDelay")
    )
    candidate_scale: CandidateScale = CandidateScale.FULL

    @property
    def scale_down_delay(self) -> timedelta:
        """How long the old revision stays warm after a promotion."""
        if self.blue_green is not None and self.blue_green.scale_down_delay is not None:
            return self.blue_green.scale_down_delay
        return self.scale_down_delay_default


@refines(StrategySpec)
def _check_strategy(strategy: StrategySpec, data: Mapping[str, Any], path: str) -> StrategySpec:
    """The type's own section and only it; its defaults when it is left out."""
    kind = strategy.type
    for key, owner in (("shadow", StrategyType.SHADOW), ("blueGreen", StrategyType.BLUE_GREEN)):
        if key in data and kind != owner:
            raise SpecError(
                f"{path}.{key}", f"only used with type: {owner}; remove it or change type"
            )
    shadow = (strategy.shadow or ShadowSpec()) if kind == StrategyType.SHADOW else None
    wants_canary = kind == StrategyType.CANARY or (
        shadow is not None and shadow.then == ShadowThen.CANARY
    )
    if wants_canary and strategy.canary is None:
        raise SpecError(f"{path}.canary", "required: add canary.steps, e.g. [{setWeight: 10}]")
    if not wants_canary and "canary" in data:
        why = "shadow.then is Promote" if kind == StrategyType.SHADOW else f"type is {kind}"
        raise SpecError(f"{path}.canary", f"never runs because {why}; remove it")
    blue_green = (
        (strategy.blue_green or BlueGreenSpec()) if kind == StrategyType.BLUE_GREEN else None
    )
    return replace(strategy, shadow=shadow, blue_green=blue_green)

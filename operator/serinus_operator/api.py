"""The ModelDeployment API: typed, validated views of the custom resource's dict.

The CRD schema (``crds/modeldeployment.yaml``) rejects most mistakes at ``kubectl apply``;
this module catches the rest, and everything again when no API server is involved
(``serinus local``). Defaults here match the CRD's, so the parsed spec - and therefore the
revision hash - is the same whether or not an API server filled them in.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

GROUP: Final = "serinus.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
ACTION_ANNOTATION: Final = f"{GROUP}/action"
MAX_NAME_LENGTH: Final = 52  # "<name>-<revision>" must fit a 63-character label value
REVISION_LENGTH: Final = 10
#: The latency checks' quantiles, by the suffix of their name (``latency-p99``).
LATENCY_QUANTILES: Final = {
    "p50": 0.5,
    "p75": 0.75,
    "p90": 0.9,
    "p95": 0.95,
    "p99": 0.99,
    "p999": 0.999,
}
#: Every check a metric may name without a query: the one list. analysis/templates.py has a
#: query for each, and the CRD's CEL rule is tested against it on a real API server.
BUILTIN_CHECKS: Final = (
    "error-rate",
    "drift",
    "agreement",
    *(f"latency-{q}" for q in LATENCY_QUANTILES),
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Service names (RFC 1035 labels) must start with a letter.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_URI_PREFIXES: Final = ("http://", "https://", "file://", "/")


class SpecError(ValueError):
    """A ModelDeployment field is wrong; ``field`` is its path, ``message`` says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- durations -------------------------------------------------------------------------------


def parse_duration(value: object, field: str) -> timedelta:
    """Parse a Go-style duration ("500ms", "30s", "2m", "1h30m"); "0" means zero."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise SpecError(field, f"expected a duration string such as '30s', got {value!r}")
    text = value.strip()
    if text == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise SpecError(
            field,
            f"invalid duration {value!r}: write a number and a unit (ms, s, m, h), "
            "e.g. '30s', '2m' or '1h30m'",
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a duration the way users write them ("1h30m", "45s", "250ms")."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


# --- enums -----------------------------------------------------------------------------------


class StrategyType(StrEnum):
    CANARY = "Canary"
    SHADOW = "Shadow"
    BLUE_GREEN = "BlueGreen"


class ShadowThen(StrEnum):
    PROMOTE = "Promote"
    CANARY = "Canary"


class NoDataPolicy(StrEnum):
    INCONCLUSIVE = "Inconclusive"
    FAIL = "Fail"
    PASS = "Pass"  # noqa: S105 - a policy, not a password


class TrafficProvider(StrEnum):
    ROUTER = "Router"
    GATEWAY_API = "GatewayAPI"
    SERVICE = "Service"


class WebhookType(StrEnum):
    """When a webhook is called, in the Flagger sense."""

    PRE_ROLLOUT = "PreRollout"  # before the candidate gets any traffic; must answer 2xx
    CONFIRM_PROMOTION = "ConfirmPromotion"  # before traffic moves for good; 2xx lets it
    ROLLBACK = "Rollback"  # each interval while the candidate has traffic; 2xx rolls back
    POST_ROLLOUT = "PostRollout"  # once the rollout ended; informational


class ManualAction(StrEnum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


# --- spec types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    version: str
    sha256: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "version": self.version}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.profile is not None:
            out["profile"] = self.profile
        return out


@dataclass(frozen=True)
class BatchingSpec:
    max_batch_size: int = 0
    max_latency_ms: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        return {"maxBatchSize": self.max_batch_size, "maxLatencyMs": self.max_latency_ms}


@dataclass(frozen=True)
class ResourcesSpec:
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = dict(sorted(self.requests.items()))
        if self.limits:
            out["limits"] = dict(sorted(self.limits.items()))
        return out


@dataclass(frozen=True)
class ServingSpec:
    """How each revision's pods serve the model; part of the revision hash."""

    image: str | None = None
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    env: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batching": self.batching.to_dict()}
        if self.image is not None:
            out["image"] = self.image
        resources = self.resources.to_dict()
        if resources:
            out["resources"] = resources
        if self.env:
            out["env"] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        return out


@dataclass(frozen=True)
class CanaryStep:
    """Exactly one of ``set_weight`` or ``pause``; a pause with ``duration=None`` waits for
    a manual promote."""

    set_weight: int | None = None
    pause: bool = False
    duration: timedelta | None = None


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[CanaryStep, ...]


@dataclass(frozen=True)
class ShadowSpec:
    mirror_percent: int = 100
    duration: timedelta = timedelta(minutes=10)
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
    scale_down_delay_default: timedelta = timedelta(seconds=30)

    @property
    def scale_down_delay(self) -> timedelta:
        """How long the old revision stays warm after a promotion."""
        if self.blue_green is not None and self.blue_green.scale_down_delay is not None:
            return self.blue_green.scale_down_delay
        return self.scale_down_delay_default


@dataclass(frozen=True)
class MetricSpec:
    name: str
    query: str | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...]
    interval: timedelta = timedelta(seconds=30)
    failure_limit: int = 1
    inconclusive_limit: int = 3
    no_data: NoDataPolicy = NoDataPolicy.INCONCLUSIVE
    min_requests: int = 1
    resume_on_pass: bool = False  # an InconclusiveAnalysis pause ends on the next pass


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


@dataclass(frozen=True)
class WebhookSpec:
    name: str
    type: WebhookType
    url: str
    timeout: timedelta = timedelta(seconds=10)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelSpec
    serving: ServingSpec = field(default_factory=ServingSpec)
    replicas: int = 1
    strategy: StrategySpec = field(default_factory=StrategySpec)
    analysis: AnalysisSpec | None = None
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    progress_deadline: timedelta = timedelta(minutes=10)
    webhooks: tuple[WebhookSpec, ...] = ()

    @property
    def revision(self) -> str:
        return revision_of(self.model, self.serving)

    def hooks(self, kind: WebhookType) -> tuple[WebhookSpec, ...]:
        return tuple(h for h in self.webhooks if h.type == kind)


@dataclass(frozen=True)
class ActionRequest:
    """A manual action read from the ``serinus.dev/action`` annotation ("<action>:<nonce>")."""

    action: ManualAction
    nonce: str


@dataclass(frozen=True)
class InvalidRequest:
    """A ``serinus.dev/action`` annotation that does not parse: ignored with a warning.

    It never degrades the object: a typo in a request must not freeze a rollout.
    """

    value: str
    error: str


@dataclass(frozen=True)
class ModelDeployment:
    name: str
    namespace: str
    generation: int
    spec: ModelDeploymentSpec
    request: ActionRequest | None = None
    invalid_request: InvalidRequest | None = None


def revision_of(model: ModelSpec, serving: ServingSpec) -> str:
    """Short stable hash of what the pods run; a new one starts a rollout."""
    canonical = json.dumps(
        {"model": model.to_dict(), "serving": serving.to_dict()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]


# --- reading helpers -------------------------------------------------------------------------

_MISSING: Final[Any] = object()
_E = TypeVar("_E", bound=StrEnum)


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected an object, got {type(value).__name__}")
    return value


def _no_unknown(data: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {list(allowed)}"
            raise SpecError(f"{path}.{key}", f"unknown field{hint}")


def _str(data: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise SpecError(f"{path}.{key}", "required field is missing")
        return default
    if not isinstance(value, str) or not value:
        raise SpecError(f"{path}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, path: str, default: int, *, lo: int, hi: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}", f"expected an integer from {lo} to {hi}, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{path}.{key}", f"must be from {lo} to {hi}, got {value}")
    return value


def _number(data: Mapping[str, Any], key: str, path: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key}", f"expected a number, got {value!r}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key}", f"expected true or false, got {value!r}")
    return value


def _enum(data: Mapping[str, Any], key: str, path: str, enum: type[_E], default: _E) -> _E:
    value = data.get(key, default)
    try:
        return enum(value)
    except ValueError:
        choices = " | ".join(member.value for member in enum)
        raise SpecError(f"{path}.{key}", f"must be one of {choices}, got {value!r}") from None


def _duration(
    data: Mapping[str, Any], key: str, path: str, default: timedelta | None
) -> timedelta | None:
    value = data.get(key)
    if value is None:
        return default
    return parse_duration(value, f"{path}.{key}")


def _list(data: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple):
        raise SpecError(f"{path}.{key}", f"expected a list, got {type(value).__name__}")
    return value


# --- parsers ---------------------------------------------------------------------------------


def parse_model(data: object, path: str = "spec.model") -> ModelSpec:
    m = _mapping(data, path)
    _no_unknown(m, ("uri", "version", "sha256", "profile"), path)
    uri = _str(m, "uri", path)
    if not uri.startswith(_URI_PREFIXES):
        raise SpecError(
            f"{path}.uri",
            f"unsupported location {uri!r}: use https://, http://, file:// or an absolute path",
        )
    sha256 = _str(m, "sha256", path, None)
    if sha256 is not None and not _SHA256.match(sha256):
        raise SpecError(f"{path}.sha256", "expected 64 lowercase hex digits (sha256sum output)")
    profile = _str(m, "profile", path, None)
    if profile is not None and not profile.startswith(_URI_PREFIXES):
        raise SpecError(f"{path}.profile", "use https://, http://, file:// or an absolute path")
    return ModelSpec(uri=uri, version=_str(m, "version", path), sha256=sha256, profile=profile)


def _quantities(data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    raw = _mapping(data.get(key, {}), f"{path}.{key}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SpecError(
                f"{path}.{key}.{name}", f"expected a quantity like '500m', got {value!r}"
            )
        if isinstance(value, float):  # the CRD takes an integer or a string, as Kubernetes does
            raise SpecError(
                f"{path}.{key}.{name}",
                f"a fractional quantity must be a string: write '{value}' or '500m', not {value!r}",
            )
        out[str(name)] = str(value)
    return out


def parse_serving(data: object, path: str = "spec.serving") -> ServingSpec:
    m = _mapping(data if data is not None else {}, path)
    _no_unknown(m, ("image", "resources", "batching", "env"), path)
    res = _mapping(m.get("resources", {}), f"{path}.resources")
    _no_unknown(res, ("requests", "limits"), f"{path}.resources")
    batch = _mapping(m.get("batching", {}), f"{path}.batching")
    _no_unknown(batch, ("maxBatchSize", "maxLatencyMs"), f"{path}.batching")
    latency = _number(batch, "maxLatencyMs", f"{path}.batching")
    if latency is not None and not 0 <= latency <= 1000:
        raise SpecError(f"{path}.batching.maxLatencyMs", f"must be 0 to 1000, got {latency}")
    env: dict[str, str] = {}
    for i, item in enumerate(_list(m, "env", path)):
        at = f"{path}.env[{i}]"
        entry = _mapping(item, at)
        _no_unknown(entry, ("name", "value"), at)
        name = _str(entry, "name", at)
        if name in env:
            raise SpecError(f"{at}.name", f"{name!r} is set twice; keep one entry")
        value = entry.get("value", "")
        if not isinstance(value, str):
            raise SpecError(f"{at}.value", f"expected a string (quote numbers), got {value!r}")
        env[name] = value
    return ServingSpec(
        image=_str(m, "image", path, None),
        resources=ResourcesSpec(
            requests=_quantities(res, "requests", f"{path}.resources"),
            limits=_quantities(res, "limits", f"{path}.resources"),
        ),
        batching=BatchingSpec(
            max_batch_size=_int(batch, "maxBatchSize", f"{path}.batching", 0, lo=0, hi=4096),
            max_latency_ms=2.0 if latency is None else latency,
        ),
        env=env,
    )


def _parse_step(data: object, path: str) -> CanaryStep:
    m = _mapping(data, path)
    _no_unknown(m, ("setWeight", "pause"), path)
    if ("setWeight" in m) == ("pause" in m):
        raise SpecError(path, "a step sets exactly one of setWeight or pause")
    if "setWeight" in m:
        return CanaryStep(set_weight=_int(m, "setWeight", path, 0, lo=0, hi=100))
    pause = _mapping(m["pause"] if m["pause"] is not None else {}, f"{path}.pause")
    _no_unknown(pause, ("duration",), f"{path}.pause")
    return CanaryStep(pause=True, duration=_duration(pause, "duration", f"{path}.pause", None))


def _parse_canary(data: object, path: str) -> CanarySpec:
    m = _mapping(data, path)
    _no_unknown(m, ("steps",), path)
    steps = tuple(
        _parse_step(s, f"{path}.steps[{i}]") for i, s in enumerate(_list(m, "steps", path))
    )
    if not steps:
        raise SpecError(f"{path}.steps", "add at least one step, e.g. [{setWeight: 10}]")
    return CanarySpec(steps=steps)


def _parse_shadow(data: object, path: str) -> ShadowSpec:
    m = _mapping(data if data is not None else {}, path)
    _no_unknown(m, ("mirrorPercent", "duration", "then"), path)
    duration = _duration(m, "duration", path, timedelta(minutes=10))
    assert duration is not None
    if duration <= timedelta(0):
        raise SpecError(f"{path}.duration", "must be longer than 0s")
    return ShadowSpec(
        mirror_percent=_int(m, "mirrorPercent", path, 100, lo=1, hi=100),
        duration=duration,
        then=_enum(m, "then", path, ShadowThen, ShadowThen.PROMOTE),
    )


def _parse_blue_green(data: object, path: str) -> BlueGreenSpec:
    m = _mapping(data if data is not None else {}, path)
    _no_unknown(
        m, ("autoPromote", "previewDuration", "postPromotionDuration", "scaleDownDelay"), path
    )
    preview = _duration(m, "previewDuration", path, timedelta(minutes=5))
    post = _duration(m, "postPromotionDuration", path, timedelta(minutes=5))
    assert preview is not None
    assert post is not None
    return BlueGreenSpec(
        auto_promote=_bool(m, "autoPromote", path, True),
        preview_duration=preview,
        post_promotion_duration=post,
        scale_down_delay=_duration(m, "scaleDownDelay", path, None),
    )


def parse_strategy(data: object, path: str = "spec.strategy") -> StrategySpec:
    m = _mapping(data if data is not None else {}, path)
    _no_unknown(m, ("type", "canary", "shadow", "blueGreen", "scaleDownDelay"), path)
    kind = _enum(m, "type", path, StrategyType, StrategyType.CANARY)
    for key, owner in (("shadow", StrategyType.SHADOW), ("blueGreen", StrategyType.BLUE_GREEN)):
        if key in m and kind != owner:
            raise SpecError(
                f"{path}.{key}", f"only used with type: {owner}; remove it or change type"
            )
    shadow = _parse_shadow(m.get("shadow"), f"{path}.shadow") if kind == "Shadow" else None
    wants_canary = kind == StrategyType.CANARY or (
        shadow is not None and shadow.then == ShadowThen.CANARY
    )
    if wants_canary and "canary" not in m:
        raise SpecError(f"{path}.canary", "required: add canary.steps, e.g. [{setWeight: 10}]")
    if not wants_canary and "canary" in m:
        why = "shadow.then is Promote" if kind == StrategyType.SHADOW else f"type is {kind}"
        raise SpecError(f"{path}.canary", f"never runs because {why}; remove it")
    delay = _duration(m, "scaleDownDelay", path, timedelta(seconds=30))
    assert delay is not None
    return StrategySpec(
        type=kind,
        canary=_parse_canary(m["canary"], f"{path}.canary") if wants_canary else None,
        shadow=shadow,
        blue_green=(
            _parse_blue_green(m.get("blueGreen"), f"{path}.blueGreen")
            if kind == StrategyType.BLUE_GREEN
            else None
        ),
        scale_down_delay_default=delay,
    )


def _parse_metric(data: object, path: str) -> MetricSpec:
    m = _mapping(data, path)
    _no_unknown(m, ("name", "query", "min", "max"), path)
    name = _str(m, "name", path)
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise SpecError(f"{path}.name", "use lowercase letters, digits and '-', e.g. 'error-rate'")
    query = _str(m, "query", path, None)
    if query is None and name not in BUILTIN_CHECKS:
        raise SpecError(
            f"{path}.query",
            f"{name!r} is not a built-in metric ({', '.join(BUILTIN_CHECKS)}): "
            "add a PromQL query or use a built-in name",
        )
    lo, hi = _number(m, "min", path), _number(m, "max", path)
    if lo is None and hi is None:
        raise SpecError(path, "set min, max or both: the threshold that makes a verdict")
    if lo is not None and hi is not None and lo > hi:
        raise SpecError(f"{path}.min", f"min ({lo}) is greater than max ({hi}); swap them")
    return MetricSpec(name=name, query=query, min=lo, max=hi)


def parse_analysis(data: object, path: str = "spec.analysis") -> AnalysisSpec | None:
    if data is None:
        return None
    m = _mapping(data, path)
    _no_unknown(
        m,
        (
            "interval",
            "failureLimit",
            "inconclusiveLimit",
            "noData",
            "minRequests",
            "resumeOnPass",
            "metrics",
        ),
        path,
    )
    metrics = tuple(
        _parse_metric(x, f"{path}.metrics[{i}]") for i, x in enumerate(_list(m, "metrics", path))
    )
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        if metric.name in seen:
            raise SpecError(f"{path}.metrics[{i}].name", f"{metric.name!r} is listed twice")
        seen.add(metric.name)
    if not metrics:
        raise SpecError(f"{path}.metrics", "add at least one metric, or remove analysis")
    interval = _duration(m, "interval", path, timedelta(seconds=30))
    assert interval is not None
    if interval < timedelta(seconds=1):
        raise SpecError(f"{path}.interval", "must be at least 1s")
    return AnalysisSpec(
        metrics=metrics,
        interval=interval,
        failure_limit=_int(m, "failureLimit", path, 1, lo=0, hi=100),
        inconclusive_limit=_int(m, "inconclusiveLimit", path, 3, lo=0, hi=100),
        no_data=_enum(m, "noData", path, NoDataPolicy, NoDataPolicy.INCONCLUSIVE),
        min_requests=_int(m, "minRequests", path, 1, lo=0, hi=1_000_000_000),
        resume_on_pass=_bool(m, "resumeOnPass", path, False),
    )


def parse_traffic(data: object, path: str = "spec.traffic") -> TrafficSpec:
    m = _mapping(data if data is not None else {}, path)
    _no_unknown(m, ("provider", "gatewayRef", "hostnames"), path)
    provider = _enum(m, "provider", path, TrafficProvider, TrafficProvider.ROUTER)
    ref: GatewayRef | None = None
    if "gatewayRef" in m:
        at = f"{path}.gatewayRef"
        g = _mapping(m["gatewayRef"], at)
        _no_unknown(g, ("name", "namespace", "sectionName"), at)
        ref = GatewayRef(
            name=_str(g, "name", at),
            namespace=_str(g, "namespace", at, None),
            section_name=_str(g, "sectionName", at, None),
        )
    if provider == TrafficProvider.GATEWAY_API and ref is None:
        raise SpecError(f"{path}.gatewayRef", "required with provider GatewayAPI: name the Gateway")
    hostnames = tuple(str(h) for h in _list(m, "hostnames", path))
    return TrafficSpec(provider=provider, gateway_ref=ref, hostnames=hostnames)


#: A webhook answers within this, or it counts as not answering.
MAX_WEBHOOK_TIMEOUT: Final = timedelta(seconds=60)


def _parse_webhook(data: object, path: str) -> WebhookSpec:
    m = _mapping(data, path)
    _no_unknown(m, ("name", "type", "url", "timeout", "metadata"), path)
    name = _str(m, "name", path)
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise SpecError(f"{path}.name", "use lowercase letters, digits and '-', e.g. 'load-test'")
    if "type" not in m:
        known = ", ".join(t.value for t in WebhookType)
        raise SpecError(f"{path}.type", f"required: one of {known}")
    kind = _enum(m, "type", path, WebhookType, WebhookType.PRE_ROLLOUT)
    url = _str(m, "url", path)
    if not url.startswith(("http://", "https://")):
        raise SpecError(f"{path}.url", f"must be an http:// or https:// URL, got {url!r}")
    timeout = _duration(m, "timeout", path, timedelta(seconds=10))
    assert timeout is not None
    if not timedelta(0) < timeout <= MAX_WEBHOOK_TIMEOUT:
        raise SpecError(f"{path}.timeout", "must be longer than 0s and at most 60s")
    meta = _mapping(m.get("metadata") or {}, f"{path}.metadata")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise SpecError(f"{path}.metadata.{key}", "values must be strings")
    return WebhookSpec(name, kind, url, timeout, {str(k): v for k, v in meta.items()})


def parse_webhooks(data: object, path: str = "spec.webhooks") -> tuple[WebhookSpec, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SpecError(path, "must be a list of webhooks")
    hooks = tuple(_parse_webhook(item, f"{path}[{i}]") for i, item in enumerate(data))
    seen: set[str] = set()
    for i, hook in enumerate(hooks):
        if hook.name in seen:
            raise SpecError(f"{path}[{i}].name", f"{hook.name!r} is used twice; names are keys")
        seen.add(hook.name)
    return hooks


def _check_consistency(spec: ModelDeploymentSpec) -> None:
    """Rules that span sections and need parsed durations, which CEL cannot compare."""
    kind = spec.strategy.type
    if spec.traffic.provider == TrafficProvider.SERVICE and kind != StrategyType.BLUE_GREEN:
        raise SpecError(
            "spec.traffic.provider",
            f"Service switches a selector and cannot split or mirror traffic for {kind}: "
            "use Router or GatewayAPI, or strategy.type BlueGreen",
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


def parse_spec(data: object, path: str = "spec") -> ModelDeploymentSpec:
    m = _mapping(data, path)
    _no_unknown(
        m,
        (
            "model",
            "serving",
            "replicas",
            "strategy",
            "analysis",
            "traffic",
            "progressDeadline",
            "webhooks",
        ),
        path,
    )
    if "model" not in m:
        raise SpecError(f"{path}.model", "required: set model.uri and model.version")
    if m.get("strategy") is None:
        raise SpecError(
            f"{path}.strategy", "required: set strategy.type and its fields, e.g. canary.steps"
        )
    deadline = _duration(m, "progressDeadline", path, timedelta(minutes=10))
    assert deadline is not None
    if deadline <= timedelta(0):
        raise SpecError(f"{path}.progressDeadline", "must be longer than 0s, e.g. '10m'")
    spec = ModelDeploymentSpec(
        model=parse_model(m["model"], f"{path}.model"),
        serving=parse_serving(m.get("serving"), f"{path}.serving"),
        replicas=_int(m, "replicas", path, 1, lo=1, hi=1000),
        strategy=parse_strategy(m.get("strategy"), f"{path}.strategy"),
        analysis=parse_analysis(m.get("analysis"), f"{path}.analysis"),
        traffic=parse_traffic(m.get("traffic"), f"{path}.traffic"),
        progress_deadline=deadline,
        webhooks=parse_webhooks(m.get("webhooks"), f"{path}.webhooks"),
    )
    _check_consistency(spec)
    return spec


def parse_action(
    value: object, field: str = f"metadata.annotations[{ACTION_ANNOTATION}]"
) -> ActionRequest:
    """Parse "<action>:<nonce>"; the nonce makes each request apply exactly once."""
    if not isinstance(value, str) or ":" not in value:
        raise SpecError(
            field,
            f"expected '<action>:<nonce>' such as 'promote:1712345678', got {value!r}",
        )
    action, _, nonce = value.partition(":")
    try:
        kind = ManualAction(action.strip())
    except ValueError:
        choices = ", ".join(a.value for a in ManualAction)
        raise SpecError(field, f"unknown action {action!r}: use one of {choices}") from None
    if not nonce.strip():
        raise SpecError(field, "the nonce after ':' is empty; use e.g. the current Unix time")
    return ActionRequest(action=kind, nonce=nonce.strip())


def parse(obj: Mapping[str, Any]) -> ModelDeployment:
    """Parse a whole ModelDeployment object (as the API server or a YAML file gives it)."""
    meta = _mapping(obj.get("metadata", {}), "metadata")
    name = _str(meta, "name", "metadata")
    if len(name) > MAX_NAME_LENGTH or not _DNS_1035.match(name):
        raise SpecError(
            "metadata.name",
            f"use at most {MAX_NAME_LENGTH} lowercase letters, digits and '-', starting with "
            "a letter, so that '<name>-<revision>' stays a valid Service name",
        )
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise SpecError("metadata.generation", f"expected an integer, got {generation!r}")
    annotations = _mapping(meta.get("annotations") or {}, "metadata.annotations")
    raw_action = annotations.get(ACTION_ANNOTATION)
    request: ActionRequest | None = None
    bad: InvalidRequest | None = None
    if raw_action is not None:
        try:
            request = parse_action(raw_action)
        except SpecError as err:
            bad = InvalidRequest(str(raw_action), str(err))
    return ModelDeployment(
        name=name,
        namespace=_str(meta, "namespace", "metadata", "default"),
        generation=generation,
        spec=parse_spec(obj.get("spec"), "spec"),
        request=request,
        invalid_request=bad,
    )

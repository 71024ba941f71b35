"""The ModelDeployment API: typed, validated views of the custom resource's dict.

The CRD schema (``crds/modeldeployment.yaml``) rejects most mistakes at ``kubectl apply``;
this package catches the rest, and everything again when no API server is involved
(``serinus local``). Defaults here match the CRD's, so the parsed spec - and therefore the
revision hash - is the same whether or not an API server filled them in.

A field is written once: in its dataclass (``model``, ``strategy``, ``analysis``, ``spec``),
which the one mapper (``wire``) reads and writes, and in the CRD, which
``tests/unit/operator/test_schema.py`` holds to the dataclasses field by field.
"""

from serinus_operator.api.analysis import AnalysisSpec, CompareSpec, MetricSpec
from serinus_operator.api.autoscaling import AutoscalingSpec
from serinus_operator.api.durations import format_duration, parse_duration
from serinus_operator.api.enums import (
    PROVIDER_STRATEGIES,
    CandidateScale,
    ManualAction,
    NoDataPolicy,
    ShadowThen,
    StrategyType,
    TrafficProvider,
    WebhookType,
)
from serinus_operator.api.errors import SpecError
from serinus_operator.api.model import (
    BatchingSpec,
    ModelSpec,
    ResourcesSpec,
    ServingSpec,
    revision_of,
)
from serinus_operator.api.names import (
    ACTION_ANNOTATION,
    BUILTIN_CHECKS,
    GROUP,
    KIND,
    LATENCY_QUANTILES,
    MAX_NAME_LENGTH,
    MAX_WEBHOOK_TIMEOUT,
    PLURAL,
    REVISION_LENGTH,
    VERSION,
)
from serinus_operator.api.parse import (
    parse_analysis,
    parse_model,
    parse_serving,
    parse_spec,
    parse_strategy,
    parse_traffic,
    parse_webhooks,
)
from serinus_operator.api.resource import (
    ActionRequest,
    InvalidRequest,
    ModelDeployment,
    parse,
    parse_action,
)
from serinus_operator.api.spec import GatewayRef, ModelDeploymentSpec, TrafficSpec, WebhookSpec
from serinus_operator.api.strategy import (
    BlueGreenSpec,
    CanaryScale,
    CanarySpec,
    CanaryStep,
    ShadowSpec,
    StrategySpec,
)

__all__ = [
    "ACTION_ANNOTATION",
    "BUILTIN_CHECKS",
    "GROUP",
    "KIND",
    "LATENCY_QUANTILES",
    "MAX_NAME_LENGTH",
    "MAX_WEBHOOK_TIMEOUT",
    "PLURAL",
    "PROVIDER_STRATEGIES",
    "REVISION_LENGTH",
    "VERSION",
    "ActionRequest",
    "AnalysisSpec",
    "AutoscalingSpec",
    "BatchingSpec",
    "BlueGreenSpec",
    "CanaryScale",
    "CanarySpec",
    "CanaryStep",
    "CandidateScale",
    "CompareSpec",
    "GatewayRef",
    "InvalidRequest",
    "ManualAction",
    "MetricSpec",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelSpec",
    "NoDataPolicy",
    "ResourcesSpec",
    "ServingSpec",
    "ShadowSpec",
    "ShadowThen",
    "SpecError",
    "StrategySpec",
    "StrategyType",
    "TrafficProvider",
    "TrafficSpec",
    "WebhookSpec",
    "WebhookType",
    "format_duration",
    "parse",
    "parse_action",
    "parse_analysis",
    "parse_duration",
    "parse_model",
    "parse_serving",
    "parse_spec",
    "parse_strategy",
    "parse_traffic",
    "parse_webhooks",
    "revision_of",
]

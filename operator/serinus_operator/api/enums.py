"""The closed sets of values in a ModelDeployment's spec and annotation."""

from __future__ import annotations

from enum import StrEnum


class StrategyType(StrEnum):
    CANARY = "Canary"
    SHADOW = "Shadow"
    BLUE_GREEN = "BlueGreen"


class CandidateScale(StrEnum):
    """How many pods a candidate runs before its promotion (docs/rollouts.md, "Capacity")."""

    FULL = "Full"  # spec.replicas from the start, as Flagger does
    TRAFFIC = "Traffic"  # enough for its traffic, scaled up before each increase (Argo's)


class ShadowThen(StrEnum):
    PROMOTE = "Promote"
    CANARY = "Canary"


class Baseline(StrEnum):
    """What a compare-to-baseline check judges the candidate against."""

    STABLE = "stable"


class NoDataPolicy(StrEnum):
    INCONCLUSIVE = "Inconclusive"
    FAIL = "Fail"
    PASS = "Pass"  # noqa: S105 - a policy, not a password


class TrafficProvider(StrEnum):
    ROUTER = "Router"
    GATEWAY_API = "GatewayAPI"
    SERVICE = "Service"


#: The strategies a traffic provider can run, where it cannot run them all: a Service
#: selector switch never splits or mirrors live traffic, so it runs only BlueGreen. The one
#: statement of this fact: ``api`` validation and ``traffic/service.py`` read it, and a test
#: checks the CRD's CEL rule (which lets ``kubectl apply`` refuse the spec) against it.
PROVIDER_STRATEGIES: dict[TrafficProvider, frozenset[StrategyType]] = {
    TrafficProvider.SERVICE: frozenset({StrategyType.BLUE_GREEN}),
}


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

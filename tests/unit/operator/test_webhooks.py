"""Webhook gates in the engine: PreRollout, ConfirmPromotion, Rollback, PostRollout.

Every decision goes through the Sim's invariant checks (restart from status alone,
idempotency with the same answers fed twice, status valid against the CRD).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from serinus_operator import api
from serinus_operator.api import SpecError, WebhookType
from serinus_operator.rollout import CallWebhooks, Decision, Reason, WebhookResult
from unit.operator.kit import ANALYSIS, S, Sim, spec_dict

pytestmark = pytest.mark.unit

CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 30}]}}
HOLD = {"type": "Canary", "canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}


def hooks(*kinds: str) -> list[dict[str, Any]]:
    return [
        {"name": k.lower(), "type": k, "url": f"http://hooks.example.com/{k.lower()}"}
        for k in kinds
    ]


MS = timedelta(milliseconds=1)


def answer(sim: Sim, d: Decision, ok: Callable[[str], bool]) -> list[WebhookResult]:
    """What the platform would bring back for the decision's calls, a moment later."""
    out = []
    for call in d.of(CallWebhooks):
        revision = (call.payload.get("candidate") or {}).get("revision", "")
        for h in call.hooks:
            at = sim.now + MS
            out.append(WebhookResult(call.kind, h.name, revision, ok(h.name), at, "HTTP"))
    return out


def step(sim: Sim, ok: Callable[[str], bool], after: int = 1) -> list[Reason]:
    """One pass as the platform runs it: decide, call the hooks, decide with the answers;
    the Events of both decisions."""
    d = sim.step(after * S)
    reasons = sim.events()
    answers = answer(sim, d, ok)
    if answers:
        sim.step(MS, hooks=answers)
        reasons += sim.events()
    return reasons


def started(
    webhooks: list[dict[str, Any]], strategy: dict[str, Any] = CANARY, **kwargs: Any
) -> Sim:
    sim = Sim.started(spec_dict(strategy=strategy, webhooks=webhooks, **kwargs))
    sim.new_version("v2")
    return sim


def test_no_traffic_before_pre_rollout_passes() -> None:
    sim = started(hooks("PreRollout"), HOLD)
    sim.step()  # the candidate starts
    d = sim.step(S)  # ready: the hooks are called, no traffic yet
    (call,) = d.of(CallWebhooks)
    assert call.kind == WebhookType.PRE_ROLLOUT
    assert call.payload["candidate"]["version"] == "v2"
    assert sim.status.traffic.candidate == 0
    d = sim.step(MS, hooks=answer(sim, d, lambda _: True))
    assert Reason.WEBHOOK_PASSED in sim.events()
    assert sim.status.traffic.candidate == 30


def test_pre_rollout_failure_without_analysis_rolls_back() -> None:
    sim = started(hooks("PreRollout"))
    sim.step()
    step(sim, lambda _: False)
    assert sim.status.rolled_back is not None
    assert sim.status.rolled_back.reason == "PreRolloutFailed"
    assert sim.status.traffic.candidate == 0


def test_pre_rollout_failure_under_the_limit_is_retried_at_the_pace() -> None:
    sim = started(hooks("PreRollout"), HOLD, analysis=ANALYSIS)  # failureLimit 1, 30s
    sim.step()
    step(sim, lambda _: False)
    assert sim.status.candidate is not None and sim.status.traffic.candidate == 0
    assert sim.status.analysis is not None and sim.status.analysis.failures == 1
    assert not sim.step(10 * S).of(CallWebhooks)  # not yet: one pace after the last call
    d = sim.step(25 * S)
    assert d.of(CallWebhooks)
    sim.step(MS, hooks=answer(sim, d, lambda _: True))
    assert sim.status.traffic.candidate == 30


def test_lost_answers_are_asked_again() -> None:
    """A restart between the call and its answer: the call is repeated at the pace."""
    sim = started(hooks("PreRollout"))
    sim.step()
    assert sim.step(S).of(CallWebhooks)
    assert not sim.step(5 * S).of(CallWebhooks)
    assert sim.step(5 * S).of(CallWebhooks)  # DEFAULT_PACE 10 s without analysis


def test_confirm_promotion_holds_until_it_answers_2xx() -> None:
    sim = started(hooks("ConfirmPromotion"))
    sim.step()
    approved = False
    step(sim, lambda _: approved)
    assert sim.status.traffic.candidate == 30
    assert sim.status.candidate is not None, "promoted without confirmation"
    for _ in range(3):
        step(sim, lambda _: approved, after=10)
        assert sim.status.candidate is not None
    approved = True
    reasons = step(sim, lambda _: approved, after=10)
    assert sim.status.candidate is None
    assert sim.status.stable is not None and sim.status.stable.ref.version == "v2"
    assert Reason.PROMOTED in reasons


def test_awaiting_confirmation_is_said_once() -> None:
    sim = started(hooks("ConfirmPromotion"))
    sim.step()
    reasons: list[Reason] = []
    for _ in range(4):
        reasons += step(sim, lambda _: False, after=10)
    assert reasons.count(Reason.AWAITING_CONFIRMATION) == 1


def test_a_rollback_hook_answering_2xx_rolls_back() -> None:
    steps = {"type": "Canary", "canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}
    sim = Sim.started(spec_dict(strategy=steps, webhooks=hooks("Rollback")))
    sim.new_version("v2")
    sim.step()
    sim.step(S)  # ready, 30%
    step(sim, lambda _: False, after=10)
    assert sim.status.candidate is not None
    step(sim, lambda _: True, after=10)
    assert sim.status.rolled_back is not None
    assert sim.status.rolled_back.reason == "RollbackWebhook"
    assert sim.status.traffic.candidate == 0


def test_post_rollout_is_told_the_outcome_once() -> None:
    sim = started(hooks("PostRollout"))
    sim.step()
    d = sim.step(S)
    assert sim.status.stable is not None and sim.status.stable.ref.version == "v2"
    (call,) = [c for c in d.of(CallWebhooks) if c.kind == WebhookType.POST_ROLLOUT]
    assert call.payload["outcome"]["result"] == "Promoted"
    assert call.payload["candidate"]["version"] == "v2"
    assert not sim.step(S).of(CallWebhooks)


@pytest.mark.parametrize(
    ("hook", "field"),
    [
        ({"name": "x", "type": "Sometimes", "url": "http://a"}, "spec.webhooks[0].type"),
        ({"name": "x", "type": "PreRollout", "url": "ftp://a"}, "spec.webhooks[0].url"),
        ({"name": "X", "type": "PreRollout", "url": "http://a"}, "spec.webhooks[0].name"),
        (
            {"name": "x", "type": "PreRollout", "url": "http://a", "timeout": "2m"},
            "spec.webhooks[0].timeout",
        ),
        ({"name": "x", "url": "http://a"}, "spec.webhooks[0].type"),
    ],
)
def test_invalid_webhooks_name_the_field(hook: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        api.parse_spec(spec_dict(webhooks=[hook]))
    assert str(info.value).startswith(field), info.value


def test_webhook_names_are_keys() -> None:
    twice = hooks("PreRollout") + hooks("PreRollout")
    with pytest.raises(SpecError, match=r"spec.webhooks\[1\].name"):
        api.parse_spec(spec_dict(webhooks=twice))

"""One reconcile pass: parse -> decide -> execute -> measure -> decide -> write status.

Shared by every platform (the kopf operator and ``serinus local``). All rollout state is in
the object's status, so a pass can start from any stored object: killed half-way, the next
pass decides the same resource actions again (they are idempotent) and writes the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

from serinus_operator import api, outbox
from serinus_operator.analysis.providers import webhook
from serinus_operator.analysis.providers.base import MetricProvider
from serinus_operator.analysis.run import measure, resolve, variables_for
from serinus_operator.analysis.templates import TemplateError, higher_is_better
from serinus_operator.analysis.verdict import Measurement, MetricResult, Verdict
from serinus_operator.api import WebhookType
from serinus_operator.platforms.base import Conflict, ObjectRef, Platform
from serinus_operator.platforms.pinning import ModelPins, PinError
from serinus_operator.resources.meta import revision_selector
from serinus_operator.rollout import (
    Action,
    Decision,
    EnsureRevision,
    EventType,
    Notify,
    Observed,
    Reason,
    RemoveRevision,
    RolloutStatus,
    RunAnalysis,
    ScaleDown,
    SetTraffic,
    Stage,
    decide,
    invalid,
)
from serinus_operator.rollout.actions import CallWebhooks
from serinus_operator.rollout.observed import WebhookResult
from serinus_operator.rollout.patch import merge_diff
from serinus_operator.telemetry import Telemetry
from serinus_operator.traffic import check_spec as check_traffic
from serinus_operator.traffic.base import Routes

log = logging.getLogger("serinus.reconcile")

#: Measure/call-and-decide rounds in one pass: a PreRollout pass can open the way to a
#: ConfirmPromotion call in the same pass; more than that waits for the next pass.
MAX_ROUNDS = 3


@dataclass(frozen=True)
class Result:
    """What a pass did: the decision it wrote and the stored object after the write."""

    decision: Decision
    stored: Mapping[str, Any]


def ref_of(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
    )


def _traffic_only(obj: Mapping[str, Any], ref: ObjectRef) -> api.ModelDeployment | None:
    """Enough of an invalid object to keep its traffic where it is (its provider), if that
    part of the spec still parses."""
    spec = obj.get("spec")
    try:
        traffic = api.parse_traffic((spec or {}).get("traffic") if isinstance(spec, dict) else None)
    except api.SpecError:
        return None
    placeholder = api.ModelSpec(uri="", version="")
    return api.ModelDeployment(
        name=ref.name,
        namespace=ref.namespace,
        generation=0,
        spec=api.ModelDeploymentSpec(model=placeholder, traffic=traffic),
    )


async def execute(
    platform: Platform, ref: ObjectRef, md: api.ModelDeployment | None, decision: Decision
) -> None:
    """Apply a decision's resource actions: revisions first, then traffic, then what traffic
    no longer needs. ``md`` is None only for an object whose traffic spec is unreadable.
    Its Events are not posted here but through the outbox, after the status write."""
    if md is not None:
        for ensure in decision.of(EnsureRevision):
            await platform.ensure_revision(ref, md, ensure)
        for route in decision.of(SetTraffic):
            await platform.set_traffic(ref, md, Routes.of(route))
    for down in decision.of(ScaleDown):
        await platform.scale_down(ref, down.revision)
    for remove in decision.of(RemoveRevision):
        await platform.remove_revision(ref, remove.revision)


async def post(platform: Platform, ref: ObjectRef, events: list[outbox.Outgoing]) -> bool:
    """Post ``events`` in order; False if any could not be (they stay pending)."""
    posted = True
    for event in events:
        posted = await platform.notify(ref, event.notify, name=event.name) and posted
    return posted


async def _measure(
    run: RunAnalysis,
    md: api.ModelDeployment,
    provider: MetricProvider | None,
    *,
    at: datetime,
    telemetry: Telemetry | None,
) -> Measurement:
    analysis = md.spec.analysis or api.AnalysisSpec(metrics=run.metrics)
    analysis = replace(analysis, metrics=run.metrics, interval=run.interval)
    variables = variables_for(
        namespace=md.namespace,
        name=md.name,
        stable=run.baseline,
        candidate=run.candidate,
        analysis=analysis,
        since=None if run.since is None else at - run.since,
        started_at=run.since,
    )
    if provider is None:
        message = "no metric provider is configured (serinus operator --prometheus-url)"
        results = tuple(
            MetricResult(m.name, Verdict.INCONCLUSIVE, message=message) for m in run.metrics
        )
        return Measurement(at=at, revision=run.candidate, results=results)
    try:
        shadow = run.stage == Stage.SHADOW  # labels of the same requests: a paired test
        measurement = await measure(
            analysis,
            provider,
            variables=variables,
            at=at,
            paired=shadow,
            thresholds=dict(run.thresholds),
        )
    except TemplateError as exc:  # the CRD and the api package keep these out; never crash on one
        results = tuple(
            MetricResult(m.name, Verdict.INCONCLUSIVE, message=str(exc)) for m in run.metrics
        )
        return Measurement(at=at, revision=run.candidate, results=results)
    if telemetry is not None:
        telemetry.provider_up.labels("prometheus").set(1 if await provider.is_online() else 0)
        bounds = _bounds(run, variables, measurement)
        telemetry.observe_measurement(md.namespace, md.name, measurement, bounds=bounds)
    return measurement


def _bounds(
    run: RunAnalysis, variables: Mapping[str, str], measurement: Measurement
) -> list[tuple[str, float | None, float | None]]:
    """Each check's bounds, for the dashboards; a compare check's is the baseline's value
    less (or plus) maxDegradation as just measured: it moves with the baseline."""
    bounds: list[tuple[str, float | None, float | None]] = []
    measured = {r.name: r.threshold for r in measurement.results}
    for metric in run.metrics:
        if metric.compare is not None:
            moving = measured.get(metric.name)
            higher = higher_is_better(metric.name)
            bounds.append((metric.name, moving if higher else None, None if higher else moving))
            continue
        try:
            check = resolve(metric, variables)
        except TemplateError:
            continue
        bounds.append((check.name, check.min, check.max))
    return bounds


def _with_selector(ref: ObjectRef, status: RolloutStatus) -> RolloutStatus:
    """The scale subresource's selector: the stable revision's serving pods."""
    if status.stable is None:
        return status
    labels = revision_selector(ref.name, status.stable.ref.revision)
    return replace(status, selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())))


def _read_status(ref: ObjectRef, stored: Mapping[str, Any]) -> RolloutStatus:
    try:
        return RolloutStatus.from_dict(stored)
    except (ValueError, TypeError) as exc:
        # A status edited by hand into something unreadable: start over from the spec
        # rather than crash-looping; the revisions found are reused (nothing is lost).
        log.warning(
            "%s/%s: unreadable status, starting from the spec: %s", ref.namespace, ref.name, exc
        )
        return RolloutStatus()


@dataclass
class _Pass:
    """What one pass needs besides the object: where actions land, how it measures and calls
    webhooks, its clock, and the Events it decided so far."""

    ref: ObjectRef
    platform: Platform
    metrics: MetricProvider | None
    http: httpx.AsyncClient
    clock: Callable[[], datetime]
    telemetry: Telemetry | None
    notifies: list[Notify] = field(default_factory=list)
    done: list[Action] = field(default_factory=list)  # resource actions carried out

    async def run(self, md: api.ModelDeployment, decision: Decision) -> None:
        """Execute what ``decision`` asks that this pass has not done yet, and tell
        PostRollout hooks; keep its Events."""
        await execute(self.platform, self.ref, md, _not_yet_done(decision, self.done))
        self.done += [a for a in decision.actions if isinstance(a, _RESOURCE_ACTIONS)]
        self.notifies += decision.of(Notify)
        self.notifies += await _tell_post_rollout(self.ref, decision, self.http, clock=self.clock)


async def _decide(
    p: _Pass, md: api.ModelDeployment, status: RolloutStatus, generation: int
) -> Decision:
    """Decide, then measure and call webhooks for as long as the decision asks (a bounded
    number of rounds), deciding again on each answer."""
    # Once per pass, and only for a valid spec: an invalid one must not remove the HPA.
    await p.platform.autoscale(p.ref, md)
    revisions = await p.platform.observe(p.ref, md)
    observed = Observed(
        generation=generation,
        revisions=revisions,
        request=md.request,
        invalid_request=md.invalid_request,
    )
    decision = decide(md.spec, status, observed, (), p.clock())
    await p.run(md, decision)
    for _ in range(MAX_ROUNDS):
        runs = decision.of(RunAnalysis)
        calls = [c for c in decision.of(CallWebhooks) if c.kind != WebhookType.POST_ROLLOUT]
        if not runs and not calls:
            break
        measured = [
            await _measure(run, md, p.metrics, at=p.clock(), telemetry=p.telemetry) for run in runs
        ]
        answers = [r for call in calls for r in await _call(p.ref, call, p.http, clock=p.clock)]
        decision = decide(md.spec, decision.status, observed, measured, p.clock(), answers)
        await p.run(md, decision)
    return decision


async def reconcile(
    obj: Mapping[str, Any],
    *,
    platform: Platform,
    metrics: MetricProvider | None,
    clock: Callable[[], datetime],
    telemetry: Telemetry | None = None,
    http: httpx.AsyncClient | None = None,
    pins: ModelPins | None = None,
) -> Result:
    """One pass over the stored object ``obj``; raises only for platform trouble
    (:class:`~serinus_operator.platforms.base.Conflict`, API errors), which the caller
    retries with back-off. ``http`` calls the webhooks (a client of the pass's own if None);
    ``pins`` pins model aliases and tags (None: URIs are taken as they are written)."""
    if http is None:
        async with httpx.AsyncClient() as own:
            return await reconcile(
                obj,
                platform=platform,
                metrics=metrics,
                clock=clock,
                telemetry=telemetry,
                http=own,
                pins=pins,
            )
    ref = ref_of(obj)
    meta = obj.get("metadata") or {}
    stored_status = obj.get("status") or {}
    generation = int(meta.get("generation") or 0)
    # Events a previous pass wrote but may not have posted (it died, or the post failed).
    leftover = outbox.pending(stored_status)
    if leftover and await post(platform, ref, leftover):
        leftover = []
    status = _read_status(ref, stored_status)
    p = _Pass(ref, platform, metrics, http, clock, telemetry)
    try:
        md = api.parse(obj)
        check_traffic(md.spec)  # what the provider cannot carry out is invalid too
        md = await _pinned(md, platform, pins)
    except api.SpecError as error:
        decision = invalid(status, error, generation, clock())
        await execute(platform, ref, _traffic_only(obj, ref), decision)
        p.notifies += decision.of(Notify)
    else:
        decision = await _decide(p, md, status, generation)
    version = str(meta.get("resourceVersion") or "")
    fresh = outbox.named(
        ref.name, uid=ref.uid, resource_version=version, at=clock(), notifies=p.notifies
    )
    new_status = outbox.with_pending(
        _with_selector(ref, decision.status).to_dict(), [*leftover, *fresh]
    )
    patch = merge_diff(stored_status, new_status)
    stored: Mapping[str, Any] = obj
    if patch:
        stored = await _write_status(platform, ref, obj, patch)
    await post(platform, ref, fresh)  # what is not posted now is posted by the next pass
    if telemetry is not None:
        telemetry.observe_status(ref.namespace, ref.name, status, decision.status)
    return Result(decision=decision, stored=stored)


async def _pinned(
    md: api.ModelDeployment, platform: Platform, pins: ModelPins | None
) -> api.ModelDeployment:
    """``md`` deciding on what its model's alias or tag names now. One that was never
    resolved is a spec that cannot be carried out (Degraded, with the store's answer),
    like any other, until the store answers."""
    if pins is None:
        return md
    try:
        return await pins.pinned(md, lambda: platform.model_env(md))
    except PinError as exc:
        raise api.SpecError("spec.model.uri", f"cannot resolve {md.spec.model.uri}: {exc}") from exc


#: Conditional status writes retried when only what the decision did not read changed.
WRITE_ATTEMPTS = 5


def _same_inputs(read: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether ``now`` would be decided exactly as ``read`` was: same object, spec, status
    and manual request. Labels and other annotations (a GitOps tool's, say) do not count."""
    a, b = read.get("metadata") or {}, now.get("metadata") or {}
    request = api.ACTION_ANNOTATION
    return (
        a.get("uid") == b.get("uid")
        and a.get("generation") == b.get("generation")
        and a.get("deletionTimestamp") == b.get("deletionTimestamp")
        and (a.get("annotations") or {}).get(request) == (b.get("annotations") or {}).get(request)
        and read.get("spec") == now.get("spec")
        and (read.get("status") or {}) == (now.get("status") or {})
    )


async def _write_status(
    platform: Platform, ref: ObjectRef, obj: Mapping[str, Any], patch: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Write ``patch`` on condition that nothing the decision read has changed.

    The write names the resourceVersion that was read, so a concurrent change is a 409.
    When the change touched nothing the decision read (another client's labels), the same
    patch is still right: it is written again on the new resourceVersion rather than the
    whole pass redone, so an object that others write to often cannot starve the rollout.
    Anything else raises :class:`Conflict` and the caller decides again from the store.
    """
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
    for _ in range(WRITE_ATTEMPTS):
        try:
            return await platform.write_status(ref, patch, resource_version=version)
        except Conflict:
            now = await platform.get(ref.namespace, ref.name)
            if now is None or not _same_inputs(obj, now):
                raise
            version = str((now.get("metadata") or {}).get("resourceVersion") or "") or None
            log.info(
                "%s/%s changed meanwhile, but not in anything this pass read: status written "
                "again at resourceVersion %s",
                ref.namespace,
                ref.name,
                version,
            )
    raise Conflict(f"{ref.namespace}/{ref.name} kept changing under {WRITE_ATTEMPTS} writes")


async def _call(
    ref: ObjectRef, call: CallWebhooks, http: httpx.AsyncClient, *, clock: Callable[[], datetime]
) -> list[WebhookResult]:
    payload = {**call.payload, "name": ref.name, "namespace": ref.namespace}
    candidate = call.payload.get("candidate") or {}
    return await webhook.call_all(
        http,
        call.kind,
        call.hooks,
        payload,
        revision=str(candidate.get("revision") or ""),
        clock=clock,
    )


async def _tell_post_rollout(
    ref: ObjectRef, decision: Decision, http: httpx.AsyncClient, *, clock: Callable[[], datetime]
) -> list[Notify]:
    """PostRollout hooks are told the outcome; a failure is reported, never retried."""
    failed: list[Notify] = []
    for call in decision.of(CallWebhooks):
        if call.kind != WebhookType.POST_ROLLOUT:
            continue
        for result in await _call(ref, call, http, clock=clock):
            if not result.ok:
                failed.append(
                    Notify(
                        Reason.WEBHOOK_FAILED,
                        f"PostRollout {result.name}: {result.message}",
                        EventType.WARNING,
                    )
                )
    return failed


_RESOURCE_ACTIONS = (EnsureRevision, SetTraffic, ScaleDown, RemoveRevision)


def _not_yet_done(decision: Decision, done: list[Action]) -> Decision:
    """A later decision of a pass repeats most of the earlier ones' resource actions (the
    desired world, stated in full every time): keep only those this pass has not carried
    out yet — a step that advanced on a measurement scales or routes anew — and every
    Event and call."""
    fresh = tuple(
        a for a in decision.actions if not isinstance(a, _RESOURCE_ACTIONS) or a not in done
    )
    return replace(decision, actions=fresh)

"""The kopf handlers: thin adapters that wake one reconcile loop per ModelDeployment.

Each ModelDeployment gets a kopf daemon running :func:`rollout_loop`: read the object,
:func:`~serinus_operator.reconcile.reconcile` it, sleep until the engine's ``wake_at`` (a
pause or analysis interval ending) or until something changes. Changes to the
ModelDeployment or to any of its children arrive through the platform's watch caches
(platforms/watch_cache.py), which the pass reads from, and only *wake* the loop, so there
is exactly one pass at a time per object, and every pass starts from the object as stored:
killed at any point, the operator resumes from the status alone. A child deleted or edited
by hand therefore wakes its ModelDeployment's loop, whose pass puts it back; the pass's
restorations are posted as one ``ChildRestored`` Event. An idle ModelDeployment costs no
request: without news its loop sleeps until ``--resync-seconds`` (a safety net, read from
the caches too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

from serinus_operator.analysis.providers.base import MetricProvider
from serinus_operator.api import GROUP, PLURAL, VERSION
from serinus_operator.passes import MAX_CONCURRENT_PASSES, PassGate
from serinus_operator.platforms.base import Conflict
from serinus_operator.platforms.health import ApiHealth
from serinus_operator.platforms.kubernetes import Credentials, KubernetesPlatform
from serinus_operator.platforms.pinning import ModelPins
from serinus_operator.reconcile import reconcile, ref_of
from serinus_operator.scheduling import RESYNC_SECONDS, Urgency, resync_delay
from serinus_operator.telemetry import Telemetry

log = logging.getLogger("serinus.operator")

registry = kopf.OperatorRegistry()

#: Never loop faster than this, whatever ``wake_at`` says.
MIN_DELAY_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 60.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    """What the handlers share, handed to kopf as its ``memo``."""

    credentials: Credentials
    platform: KubernetesPlatform
    metrics: MetricProvider | None
    telemetry: Telemetry
    clock: Callable[[], datetime] = _utcnow
    resync_seconds: float = RESYNC_SECONDS
    peering_lifetime: float = 60.0
    max_concurrent_passes: int = MAX_CONCURRENT_PASSES
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    healthy: bool = False
    #: Calls every ModelDeployment's webhooks, reusing connections across passes.
    webhooks: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)
    #: Pins model aliases and tags to what they name now (None: URIs as written).
    pins: ModelPins | None = None
    #: Every pass waits for one of its slots (bounded, due before idle).
    passes: PassGate = field(init=False)

    def __post_init__(self) -> None:
        self.passes = PassGate(self.max_concurrent_passes, self.telemetry)

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            self.waker(namespace, name).set()
            self.passes.promote((namespace, name))


def _ctx(memo: Any) -> Context:
    ctx: Context = memo["serinus"]
    return ctx


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's own bookkeeping stays in annotations under our group; status is all ours.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # The loop posts Events with distinct reasons itself; kopf's would say "Logging".
    settings.posting.enabled = False
    # How long a silent peer keeps its claim: the standby's take-over time after a crash.
    settings.peering.lifetime = int(_ctx(memo).peering_lifetime)
    # The CRD is installed before the operator (chart, kustomize); not watching CRDs keeps
    # the RBAC smaller (no cluster-wide read of CustomResourceDefinitions).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    _ctx(memo).healthy = True


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    ctx.healthy = False
    if ctx.metrics is not None:
        await ctx.metrics.aclose()
    await ctx.webhooks.aclose()


@kopf.on.login(registry=registry)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Kopf reaches the API with the same credentials as the platform."""
    c = _ctx(memo).credentials
    return kopf.ConnectionInfo(
        server=c.server,
        token=c.bearer(),
        ca_path=c.ca_path,
        certificate_path=c.cert_path,
        private_key_path=c.key_path,
        insecure=c.insecure,
        default_namespace=c.default_namespace,
    )


@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
def modeldeployment_changed(
    type: str | None, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    ctx = _ctx(memo)
    ctx.wake(namespace, name)
    if type == "DELETED" and namespace and name:
        ctx.telemetry.forget(namespace, name)
        ctx.platform.forget(namespace, name)
        if ctx.pins is not None:
            ctx.pins.forget(namespace, name)


@kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=2.0)
async def rollout(
    *, namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any
) -> None:
    await rollout_loop(_ctx(memo), namespace or "default", name, stopped=lambda: bool(stopped))


async def rollout_loop(
    ctx: Context, namespace: str, name: str, *, stopped: Callable[[], bool]
) -> None:
    """Reconcile ``namespace/name`` until the object is gone or the operator stops.

    Each pass waits for a slot of ``ctx.passes`` (at most ``--max-concurrent-passes`` at
    once); a pass something asked for goes before idle resyncs (scheduling.py)."""
    key = (namespace, name)
    waker = ctx.waker(namespace, name)
    ctx.telemetry.reconcile_errors.labels(namespace, name)  # born at 0: rate() sees the first
    backoff = 1.0
    urgency = Urgency.DUE  # the first pass: a new object, or the operator (re)starting
    while not stopped():
        async with ctx.passes.slot(key, urgency):
            waker.clear()  # a wake from here on owes one more pass; one before is this one
            after = await _pass(ctx, namespace, name, backoff)
        if after.gone:
            return
        resync = resync_delay(key, ctx.resync_seconds, time.monotonic(), minimum=MIN_DELAY_SECONDS)
        if after.failed:
            delay, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
        else:
            backoff = 1.0
            delay = resync if after.wake_in is None else min(resync, after.wake_in)
        idle = not after.failed and delay == resync
        health = ctx.platform.client.health
        recoveries = health.recoveries
        await _sleep(waker, health, delay)
        if health.recoveries != recoveries:
            backoff = 1.0  # the API is back: what failed because of it runs now
        woken = waker.is_set() or health.recoveries != recoveries
        urgency = Urgency.RESYNC if idle and not woken else Urgency.DUE


@dataclass(frozen=True)
class _After:
    """How a pass ended."""

    gone: bool = False  # deleted or being deleted: the loop ends
    failed: bool = False  # retried with back-off
    wake_in: float | None = None  # seconds until the engine's ``wake_at``, or a retry


async def _pass(ctx: Context, namespace: str, name: str, backoff: float) -> _After:
    try:
        obj = await ctx.platform.get(namespace, name)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return _After(gone=True)  # children go with their owner (ownerReferences)
        try:
            result = await reconcile(
                obj,
                platform=ctx.platform,
                metrics=ctx.metrics,
                clock=ctx.clock,
                telemetry=ctx.telemetry,
                http=ctx.webhooks,
                pins=ctx.pins,
            )
        finally:
            # The children this pass put back, as one Event (kept if it cannot be posted).
            await ctx.platform.report_restored(ref_of(obj))
        # An alias or a tag is asked about again in time even when nothing else is due.
        wake_in = None if ctx.pins is None else ctx.pins.recheck_in(obj)
        if result.decision.wake_at is not None:
            until = max(MIN_DELAY_SECONDS, (result.decision.wake_at - ctx.clock()).total_seconds())
            wake_in = until if wake_in is None else min(wake_in, until)
        return _After(wake_in=wake_in)
    except Conflict as exc:
        log.info("%s/%s changed while reconciling (%s); again", namespace, name, exc)
        return _After(wake_in=MIN_DELAY_SECONDS)
    except asyncio.CancelledError:
        raise
    except Exception:
        # An API outage or a bug must never crash-loop the operator or retry hot.
        log.exception("%s/%s: reconcile failed; retrying in %.0f s", namespace, name, backoff)
        ctx.telemetry.reconcile_errors.labels(namespace, name).inc()
        return _After(failed=True)


async def _sleep(waker: asyncio.Event, health: ApiHealth, delay: float) -> None:
    """Until ``delay`` passes, something changes, or a down API answers again."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(waker.wait())]
    if not health.up:
        waits.append(asyncio.ensure_future(health.wait_up()))
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()

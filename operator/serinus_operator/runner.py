"""``serinus operator``: kopf with the Serinus handlers, plus a metrics/health port."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serinus_operator.analysis.providers.base import MetricProvider
from serinus_operator.analysis.providers.prometheus import PrometheusConfig, PrometheusProvider
from serinus_operator.handlers import Context, registry
from serinus_operator.platforms.kubernetes import (
    KubeClient,
    KubernetesPlatform,
    cached_kinds,
    load_credentials,
    slim,
)
from serinus_operator.platforms.pinning import REFRESH_SECONDS, ModelPins, Pin
from serinus_operator.platforms.ratelimit import TokenBucket
from serinus_operator.platforms.watch_cache import ObjectCache
from serinus_operator.resources.config import DEFAULT_IMAGE, BuildConfig
from serinus_operator.scheduling import RESYNC_SECONDS
from serinus_operator.telemetry import Telemetry


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: Sequence[str] = ()
    all_namespaces: bool = False
    standalone: bool = True
    peering: str | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8000
    prometheus_url: str | None = None
    prometheus_token_file: Path | None = None
    prometheus_ca_file: Path | None = None
    serving_image: str = DEFAULT_IMAGE
    router_image: str = DEFAULT_IMAGE
    kubeconfig: str | None = None
    context: str | None = None
    resync_seconds: float = RESYNC_SECONDS
    max_concurrent_passes: int = 16
    kube_api_qps: float = 50.0
    kube_api_burst: int = 100
    peering_lifetime: float = 60.0
    priority: int | None = None
    #: Pins model aliases and tags (``platforms.pinning``); None takes URIs as written.
    pin: Pin | None = None
    #: Every router's ``--prediction-log`` (a shared ``redis://``); None: the default.
    router_prediction_log: str | None = None
    model_refresh_seconds: float = REFRESH_SECONDS


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("k8s_ref", "namespace", "name"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per API request is noise at info; kopf and the loop log what matters.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


async def _metrics_server(ctx: Context, host: str, port: int) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(ctx.telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if ctx.healthy:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _build_config(options: OperatorOptions) -> BuildConfig:
    return BuildConfig(
        serving_image=options.serving_image,
        router_image=options.router_image,
        router_prediction_log=options.router_prediction_log,
    )


def _pins(options: OperatorOptions) -> ModelPins | None:
    if options.pin is None:
        return None
    return ModelPins(options.pin, refresh=options.model_refresh_seconds)


async def run_operator(options: OperatorOptions) -> None:
    credentials = load_credentials(kubeconfig=options.kubeconfig, context=options.context)
    limiter = TokenBucket(options.kube_api_qps, options.kube_api_burst)
    client = KubeClient(credentials, limiter=limiter, pool_size=2 * options.max_concurrent_passes)
    made: list[Context] = []  # the context, once made: changes wake its loops

    def wake(namespace: str, name: str) -> None:
        for ctx in made:
            ctx.wake(namespace, name)

    cache = ObjectCache(
        cached_kinds(),
        source=client,
        namespaces=() if options.all_namespaces else tuple(options.namespaces),
        on_change=wake,
        transform=slim,
    )
    platform = KubernetesPlatform(client, config=_build_config(options), cache=cache)
    metrics: MetricProvider | None = None
    if options.prometheus_url:
        metrics = PrometheusProvider(
            PrometheusConfig(
                url=options.prometheus_url,
                bearer_token_file=options.prometheus_token_file,
                ca_file=options.prometheus_ca_file,
            )
        )
    ctx = Context(
        credentials=credentials,
        platform=platform,
        metrics=metrics,
        telemetry=Telemetry(),
        resync_seconds=options.resync_seconds,
        max_concurrent_passes=options.max_concurrent_passes,
        peering_lifetime=options.peering_lifetime,
        pins=_pins(options),
    )
    made.append(ctx)
    ctx.telemetry.watch_caches(cache.all)
    runner = await _metrics_server(ctx, options.metrics_host, options.metrics_port)
    cache.start()
    try:
        await kopf.operator(
            registry=registry,
            standalone=options.standalone,
            peering_name=options.peering,
            priority=_priority(options),
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
            memo=kopf.Memo(serinus=ctx),
        )
    finally:
        await cache.aclose()
        await runner.cleanup()
        await client.aclose()


def _priority(options: OperatorOptions) -> int:
    """Kopf peering is not an election: replicas of equal priority all pause. Each replica
    therefore gets its own (random unless given); the highest live one acts, and when it
    goes silent for the peering lifetime the next one resumes."""
    if options.priority is not None:
        return options.priority
    return secrets.randbelow(2**31) if options.peering else 0


def main(options: OperatorOptions) -> int:
    if not options.all_namespaces and not options.namespaces:
        print(
            "serinus operator: give --namespace NS (repeatable) or --all-namespaces",
            file=sys.stderr,
        )
        return 2
    asyncio.run(run_operator(options))
    return 0

"""``serinus local up``: the operator's reconcile loop over the local platform.

One pass at a time, as the kopf daemon does (:func:`serinus_operator.reconcile.reconcile`):
read the stored object, decide, execute, measure, write status; then sleep until the
engine's ``wake_at``, a process changing state, or an edit of the file (polled every half
second; a changed ``spec`` bumps ``metadata.generation`` and starts a rollout when the model
changed). The loop serves its own metrics (the operator's ``serinus_rollout_*`` and
``serinus_analysis_*``) on a loopback port that the local Prometheus scrapes. Ctrl-C (or
SIGTERM, SIGHUP) stops every process; a second Ctrl-C kills them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serinus_operator.analysis.providers.prometheus import PrometheusConfig, PrometheusProvider
from serinus_operator.local.manifest import (
    ManifestError,
    ManifestWatcher,
    identity,
)
from serinus_operator.local.view import View, make_view, summary_line
from serinus_operator.platforms.base import Conflict
from serinus_operator.platforms.local import LocalOptions, LocalPlatform
from serinus_operator.platforms.local_prometheus import PrometheusMissing, find_binary
from serinus_operator.platforms.local_state import DEFAULT_BASE, AlreadyRunning, StateDir
from serinus_operator.platforms.local_store import ObjectStore
from serinus_operator.platforms.pinning import ModelPins, Pin
from serinus_operator.platforms.processes import reap_leftovers
from serinus_operator.reconcile import reconcile
from serinus_operator.telemetry import Telemetry

log = logging.getLogger("serinus.local")

#: Without news, reconcile at least this often (locally there is no watch to miss).
RESYNC_SECONDS = 5.0
#: How often the file is checked for edits.
POLL_SECONDS = 0.5
MIN_DELAY_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class UpOptions:
    file: Path
    port: int = 8000
    state_dir: Path = DEFAULT_BASE
    prometheus_port: int | None = None
    prometheus_bin: str | None = None
    fresh: bool = False
    plain: bool = False
    scrape_interval: float = 1.0
    #: Pins model aliases and tags (``platforms.pinning``); None takes URIs as written.
    pin: Pin | None = None
    model_refresh_seconds: float = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def up(options: UpOptions) -> int:
    """Run until stopped; the exit code is 0 after a clean stop, else why it could not
    start (2: the file, 1: anything else)."""
    watcher = ManifestWatcher(options.file)
    try:
        manifest = watcher.load()
    except ManifestError as exc:
        print(f"serinus local: {options.file}: {exc}", file=sys.stderr)
        return 2
    try:
        binary = find_binary(options.prometheus_bin)
    except PrometheusMissing as exc:
        print(f"serinus local: {exc}", file=sys.stderr)
        return 1
    namespace, name = identity(manifest)
    state = StateDir.of(options.state_dir.resolve(), namespace, name)
    try:
        with state.lock():
            return asyncio.run(_run(options, watcher, manifest, state=state, binary=binary))
    except AlreadyRunning as exc:
        print(f"serinus local: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"serinus local: {exc}", file=sys.stderr)
        return 1


class _ViewHandler(logging.Handler):
    """Warnings and errors of the loop and the platform, shown in the view."""

    def __init__(self, view: View) -> None:
        super().__init__(logging.WARNING)
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        self.view.note(self.format(record), error=record.levelno >= logging.ERROR)


def _configure_logging(state: StateDir, view: View) -> None:
    state.logs_dir.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(state.logs_dir / "serinus-local.log")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [to_file, _ViewHandler(view)]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve_metrics(telemetry: Telemetry) -> tuple[web.AppRunner, int]:
    """The loop's own metrics on a free loopback port."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return runner, port


def _prepare(state: StateDir, *, fresh: bool) -> dict[str, Any] | None:
    """Kill what an earlier run killed with SIGKILL left behind; the stored object to
    resume from (None with ``fresh``)."""
    killed = reap_leftovers(state.recorded_pids(), marker=f"{state.path}/")
    if killed:
        log.warning("stopped %d process(es) left behind by an earlier run", len(killed))
    if fresh:
        for path in (state.object_file, state.events_file, state.routes_file):
            path.unlink(missing_ok=True)
        return None
    state.trim_events()
    return state.load_object()


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signals:
    """SIGINT, SIGTERM and SIGHUP: the first stops every process, the next kills them now."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.stop = asyncio.Event()
        self.count = 0
        #: Killed on a second signal, once there is one.
        self.platform: LocalPlatform | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def forced(self) -> bool:
        """Whether a second signal asked for the processes to be killed."""
        return self.count > 1

    def install(self) -> None:
        for sig in _SIGNALS:
            self._loop.add_signal_handler(sig, self.on_signal)

    def remove(self) -> None:
        for sig in _SIGNALS:
            self._loop.remove_signal_handler(sig)

    def on_signal(self) -> None:
        self.count += 1
        if self.count == 1:
            self.stop.set()
            log.info("stopping every process")
            with contextlib.suppress(Exception):  # a closed terminal must not stop the stop
                self.view.note("stopping every process (Ctrl-C again to kill them now)")
        elif self.platform is not None:
            self.platform.kill_now()


def _make_platform(
    options: UpOptions,
    state: StateDir,
    store: ObjectStore,
    *,
    binary: str,
    telemetry_port: int,
    view: View,
) -> LocalPlatform:
    return LocalPlatform(
        state,
        store,
        LocalOptions(
            public_port=options.port,
            prometheus_bin=binary,
            prometheus_port=options.prometheus_port,
            telemetry_port=telemetry_port,
            scrape_interval=options.scrape_interval,
        ),
        on_event=view.event,
    )


async def _run(
    options: UpOptions,
    watcher: ManifestWatcher,
    manifest: dict[str, Any],
    *,
    state: StateDir,
    binary: str,
) -> int:
    namespace, name = identity(manifest)
    view = make_view(plain=options.plain)
    _configure_logging(state, view)
    stored = _prepare(state, fresh=options.fresh)
    store = ObjectStore(state, stored)
    store.apply(manifest)
    telemetry = Telemetry()
    # The series exists at 0 from the start, so its rate reads 0 rather than "no data".
    telemetry.reconcile_errors.labels(namespace, name)
    metrics_runner, telemetry_port = await serve_metrics(telemetry)
    provider: PrometheusProvider | None = None
    signals = _Signals(view)
    started = False
    signals.install()
    try:
        platform = signals.platform = _make_platform(
            options, state, store, binary=binary, telemetry_port=telemetry_port, view=view
        )
        if not await _until_stopped(platform.start(namespace, name), signals.stop):
            return 0
        started = True
        provider = PrometheusProvider(PrometheusConfig(url=platform.prometheus_url))
        view.note(
            f"{namespace}/{name} from {options.file}: model at {platform.router_url}, "
            f"Prometheus at {platform.prometheus_url}, state in {state.path}"
        )
        await _loop(
            store=store,
            platform=platform,
            provider=provider,
            telemetry=telemetry,
            watcher=watcher,
            view=view,
            stop=signals.stop,
            pins=None
            if options.pin is None
            else ModelPins(options.pin, refresh=options.model_refresh_seconds),
        )
    finally:
        if signals.platform is not None:
            await signals.platform.close(force=signals.forced)
        if provider is not None:
            await provider.aclose()
        await metrics_runner.cleanup()
        signals.remove()
        log.info("stopped")
        with contextlib.suppress(Exception):
            if started:
                view.note(f"stopped; last state: {summary_line(store.object)}")
        with contextlib.suppress(Exception):
            view.close()
    return 0


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless a stop comes first; whether it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its exception, if any
    return True


async def _loop(
    *,
    store: ObjectStore,
    platform: LocalPlatform,
    provider: PrometheusProvider,
    telemetry: Telemetry,
    watcher: ManifestWatcher,
    view: View,
    stop: asyncio.Event,
    pins: ModelPins | None,
) -> None:
    loop = asyncio.get_running_loop()
    namespace, name = watcher.identity
    next_pass = 0.0
    backoff = 1.0
    while not stop.is_set():
        change = watcher.poll()
        if change is not None:
            if change.error is not None:
                view.note(change.error, error=True)
            elif change.manifest is not None and store.apply(change.manifest):
                generation = store.object["metadata"]["generation"]
                view.note(f"{watcher.path} changed: applied (generation {generation})")
                next_pass = 0.0
        if platform.changed.is_set():
            platform.changed.clear()
            next_pass = 0.0
        if loop.time() >= next_pass:
            delay = RESYNC_SECONDS
            try:
                result = await reconcile(
                    store.snapshot(),
                    platform=platform,
                    metrics=provider,
                    clock=_utcnow,
                    telemetry=telemetry,
                    pins=pins,
                )
                backoff = 1.0
                if result.decision.wake_at is not None:
                    until = (result.decision.wake_at - _utcnow()).total_seconds()
                    delay = min(delay, max(MIN_DELAY_SECONDS, until))
            except Conflict:
                delay = MIN_DELAY_SECONDS
            except Exception:
                log.exception("reconcile failed; retrying in %.0f s", backoff)
                telemetry.reconcile_errors.labels(namespace, name).inc()
                delay, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
            next_pass = loop.time() + delay
        view.update(store.object, platform.info())
        timeout = max(0.0, min(POLL_SECONDS, next_pass - loop.time()))
        waiters = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(platform.changed.wait()),
        ]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

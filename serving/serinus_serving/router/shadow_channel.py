"""The router's side of its shadow worker (see ``shadow_worker`` for why there is one).

The channel starts the worker, hands it copies with a single socket write each, keeps the
totals it reports and restarts it, with back-off, if it dies. A copy is refused (the
router counts it as dropped) while no worker is ready, or when the copies waiting in the
router (those the socket could not take: the worker is behind) exceed ``max_pending_bytes``:
memory stays bounded and the primary never waits for the shadow.

A worker is ready when it makes progress, not merely while its process exists: it sends
something at least every ``HEARTBEAT_SECONDS``; a watchdog (one timer per worker, nothing
per copy) takes one that has sent nothing for ``STALL_SECONDS`` (stopped with SIGSTOP,
wedged, starved of CPU) out of service, and puts it back the moment it speaks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import cast

from serinus_serving.router.shadow_protocol import (
    ANSWERS,
    HELLO,
    KEPT_TARGETS,
    QUIT,
    SNAPSHOT,
    STALL_SECONDS,
    FrameError,
    FrameReader,
    ShadowTotals,
    Target,
    decode_answers,
    frame,
)

log = logging.getLogger(__name__)

#: Back-off between restarts of a worker that keeps dying; reset once one lives this long.
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 30.0
READY_TIMEOUT = 15.0
#: How long the router's startup waits for its first worker; copies are dropped (and
#: counted) until it is ready, but primary traffic does not wait for it.
FIRST_WAIT = 3.0
#: How often the watchdog looks whether the worker has said anything since it last looked.
WATCH_SECONDS = 0.25


class _Link(asyncio.Protocol):
    """One worker's socket, as seen from the router."""

    def __init__(self, channel: ShadowChannel) -> None:
        self.channel = channel
        self.reader = FrameReader(max_frame=16 << 20)
        self.transport: asyncio.Transport | None = None
        self.totals = ShadowTotals()
        #: Copies handed over, by (primary, shadow): what a crash loses is counted dropped.
        self.offered: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.hello = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        #: Whether the worker sent anything since the watchdog last looked.
        self.heard = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        try:
            for kind, payload in self.reader.feed(data):
                if kind == SNAPSHOT:
                    self.totals = ShadowTotals.decode(payload)
                elif kind == ANSWERS:
                    self.channel.on_answers(decode_answers(payload))
                elif kind == HELLO and not self.hello.done():
                    self.hello.set_result(None)
        except FrameError as exc:
            log.error("shadow worker sent something unreadable (%s); restarting it", exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(ConnectionError("it exited before it was ready"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.channel.lost(self)


class ShadowChannel:
    def __init__(self, *, max_pending_bytes: int = 4 << 20, log_level: str = "warning") -> None:
        self.max_pending_bytes = max_pending_bytes
        self.log_level = log_level
        self.link: _Link | None = None
        #: Whether copies go to the worker: it said hello and has not gone silent since.
        self.ready = False
        #: The worker is connected but has sent nothing for ``STALL_SECONDS``.
        self.stalled = False
        self.stopping = False
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        #: Totals of workers that have exited, so the router's counters never go back.
        self.retired = ShadowTotals()
        self._sent: OrderedDict[int, None] = OrderedDict()
        self._failures = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._first_ready = asyncio.Event()
        #: Where the worker's shadow answers go (the prediction log's recorder).
        self.on_answers: Callable[[list[tuple[str, str, bytes]]], None] = lambda answers: None

    # ------------------------------------------------------------------ copies
    def offer(self, target: Target, copy: bytes, *, primary: str) -> bool:
        """Hand a copy (an encoded ``C`` frame) to the worker; False when it is refused."""
        link = self.link
        if not self.ready or link is None or link.transport is None:
            return False
        transport = link.transport
        if transport.is_closing() or transport.get_write_buffer_size() > self.max_pending_bytes:
            return False
        if target.generation not in self._sent:
            transport.write(target.encode())
            # The worker keeps the same last KEPT_TARGETS (same order, same eviction), so a
            # target it has forgotten is sent again.
            self._sent[target.generation] = None
            while len(self._sent) > KEPT_TARGETS:
                self._sent.popitem(last=False)
        transport.write(copy)
        link.offered[primary, target.revision] += 1
        return True

    def totals(self) -> ShadowTotals:
        """Everything every worker has reported, the current one included."""
        merged = ShadowTotals()
        merged.add(self.retired)
        if self.link is not None:
            merged.add(self.link.totals)
            merged.inflight = self.link.totals.inflight
        return merged

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the worker and wait a moment for it (a failure is logged, and retried)."""
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_ready.wait(), FIRST_WAIT)

    async def _supervise(self) -> None:
        while not self.stopping:
            lived = 0.0
            try:
                lived = await self._run_once()
            except Exception:  # anything: the router must keep restarting its worker
                log.exception("shadow worker failed")
            if self.stopping:
                return
            if lived > STABLE_SECONDS:
                self._failures = 0
            delay = RESTART_DELAYS[min(self._failures, len(RESTART_DELAYS) - 1)]
            self._failures += 1
            self.restarts += 1
            log.warning("shadow worker stopped; copies are dropped until it is back in %gs", delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> float:
        """Run one worker until it exits; how long it was ready (0 if never)."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "serinus_serving.router.shadow_worker",
                "--fd", str(theirs.fileno()), "--log-level", self.log_level,
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
            _, link = await loop.connect_accepted_socket(lambda: _Link(self), ours)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.link = link
        ready_at = None
        try:
            await asyncio.wait_for(asyncio.shield(link.hello), READY_TIMEOUT)
        except TimeoutError:
            log.error("shadow worker not ready within %gs; restarting it", READY_TIMEOUT)
            self.process.kill()
        except ConnectionError as exc:
            log.error("shadow worker failed to start: %s", exc)
        else:
            self._sent.clear()
            self.ready, self.stalled = True, False
            ready_at = time.monotonic()
            self._first_ready.set()
            log.info("shadow worker %d ready", self.process.pid)
            await self._watch(link, self.process.pid)
        await link.closed
        await self._reap()
        return 0.0 if ready_at is None else time.monotonic() - ready_at

    async def _watch(self, link: _Link, pid: int) -> None:
        """Until the worker's socket closes, count it down while it is silent and up
        again when it speaks. Silence is counted in the watchdog's own ticks, so a router
        that was itself held up (its timer late) does not blame the worker for it."""
        silent, limit = 0, max(1, round(STALL_SECONDS / WATCH_SECONDS))
        while not link.closed.done():
            await asyncio.wait([link.closed], timeout=WATCH_SECONDS)
            if link.closed.done() or link is not self.link:
                return
            if link.heard:
                link.heard, silent = False, 0
                if self.stalled:
                    self.ready, self.stalled = True, False
                    log.info("shadow worker %d is making progress again; copies resume", pid)
                continue
            silent += 1
            if silent >= limit and not self.stalled:
                self.ready, self.stalled = False, True
                log.warning(
                    "shadow worker %d sent nothing for %gs (stopped or stuck); copies are "
                    "dropped until it does",
                    pid,
                    STALL_SECONDS,
                )

    def lost(self, link: _Link) -> None:
        """A worker's socket closed: fold in its last totals, counting the copies it took
        but never reported as dropped, so every copy is counted once; the supervisor
        restarts it."""
        if link is self.link:
            self.ready = self.stalled = False
            for key, offered in link.offered.items():
                reported = sum(v for k, v in link.totals.counts.items() if k[:2] == key)
                if offered > reported:  # in flight or unreported when it died
                    link.totals.counts[(*key, "dropped")] += offered - reported
            self.retired.add(link.totals)
            link.totals = ShadowTotals()
            self.link = None

    async def _reap(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            process.kill()
            await process.wait()
        if process.returncode not in (0, None) and not self.stopping:
            log.warning("shadow worker %d exited with %s", process.pid, process.returncode)

    def kill(self) -> None:
        """Stop the worker now (a second signal): what it had in flight counts dropped."""
        self.stopping = True
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self, *, grace: float) -> None:
        """Let the worker finish the copies in flight within ``grace``, keep its last totals."""
        self.stopping = True
        link = self.link
        if link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(frame(QUIT, str(max(grace, 0.0)).encode()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(link.closed), grace + 2.0)
            if link.transport is not None:
                link.transport.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5.0)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

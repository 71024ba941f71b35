"""The shadow worker: a child process of ``serinus router`` that sends the shadow copies
and compares the answers, at idle CPU priority.

Why a process: a copy costs more than the primary request it mirrors (a second upstream
exchange, two JSON decodes and a comparison). On the router's event loop that work sits in
front of any primary request arriving meanwhile, and the primary's tail latency pays for it.
Here the router only writes each copy to a socket; this process does the rest under
``SCHED_IDLE``, so the kernel runs it only when the router has nothing to do and takes the
CPU back the moment a primary request arrives.

Bounded: at most a target's ``maxConcurrency`` copies are in flight; up to ``BACKLOG`` more
wait here, after which the worker stops reading and copies wait in the socket and in the
router's bounded buffer, past which the router drops and counts them. Totals go back to
the router as snapshots (``shadow_protocol``); when there is nothing new, a heartbeat
every ``HEARTBEAT_SECONDS`` tells the router that this process is still running.
When the router goes away (its end of the socket closes) the worker exits at once.

Run by the router as ``python -m serinus_serving.router.shadow_worker --fd N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from collections import OrderedDict, deque
from typing import cast

import uvloop

from serinus_serving.router.compare import Incomparable, compare
from serinus_serving.router.prediction_log import answer_of, request_api
from serinus_serving.router.shadow_protocol import (
    ALIVE,
    COPY,
    HEARTBEAT_SECONDS,
    HELLO,
    KEPT_TARGETS,
    QUIT,
    TARGET,
    Copy,
    FrameError,
    FrameReader,
    ShadowTotals,
    Target,
    decode_copy,
    encode_answers,
    frame,
)
from serinus_serving.router.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("serinus_serving.router.shadow_worker")

#: How often changed totals are sent to the router.
SNAPSHOT_SECONDS = 0.1
MAX_FRAME = 256 << 20
#: Copies read and waiting for a free slot before the worker stops reading its socket.
BACKLOG = 256
#: Shadow answers for the prediction log held between two sends; more are dropped, counted.
MAX_ANSWERS = 8192


def lower_priority() -> str:
    """Run only when the CPU is otherwise idle; a plain nice value where that is refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
        return "nice 19"


class ShadowWorker(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader(max_frame=MAX_FRAME)
        self.targets: OrderedDict[int, Target] = OrderedDict()
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        self.totals = ShadowTotals()
        self.tasks: set[asyncio.Task[None]] = set()
        #: Copies read but not started (their target is at its concurrency).
        self.backlog: deque[tuple[Target, Copy]] = deque()
        #: Shadow answers for the router's prediction log, sent with the next tick.
        self.answers: list[tuple[str, str, bytes]] = []
        self.paused = False
        self.changed = False
        self.quitting = False
        self.finished = False
        self._ticker: asyncio.TimerHandle | None = None
        #: When something was last sent to the router (the heartbeat's clock).
        self._sent_at = self.loop.time()

    # ------------------------------------------------------------------ the channel
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(frame(HELLO))
        self._ticker = self.loop.call_later(SNAPSHOT_SECONDS, self._tick)

    def data_received(self, data: bytes) -> None:
        try:
            for kind, payload in self.reader.feed(data):
                if kind == COPY:
                    self.accept(decode_copy(payload))
                elif kind == TARGET:
                    self.remember(Target.decode(payload))
                elif kind == QUIT:
                    self.loop.create_task(self.quit(float(payload or b"0")))
                else:
                    raise FrameError(f"unknown frame kind {kind!r}")
        except (FrameError, ValueError) as exc:
            log.error("shadow worker: the router sent something unreadable (%s); exiting", exc)
            self.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.quitting:
            log.debug("shadow worker: the router is gone; exiting")
        self.finish()
        if not self.done.done():
            self.done.set_result(None)

    def _tick(self) -> None:
        self.send_answers()
        if self.changed:
            self.send_totals()
        elif self.loop.time() - self._sent_at >= HEARTBEAT_SECONDS:
            self._send(frame(ALIVE))
        self._ticker = self.loop.call_later(SNAPSHOT_SECONDS, self._tick)

    def send_totals(self) -> None:
        self.changed = False
        self._send(self.totals.encode())

    def send_answers(self) -> None:
        if self.answers:
            answers, self.answers = self.answers, []
            self._send(encode_answers(answers))

    def log_answer(self, copy: Copy, revision: str, body: bytes) -> None:
        """Keep the shadow's answer for the router's prediction log, if it logs one."""
        answer = answer_of(body, "shadow", request_api(copy.request)) if copy.log_key else None
        if answer is None:
            return
        if len(self.answers) >= MAX_ANSWERS:
            self.totals.answers_dropped += 1
            return
        self.answers.append((copy.log_key, revision, answer))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self._sent_at = self.loop.time()

    # ------------------------------------------------------------------ copies
    def remember(self, target: Target) -> None:
        self.targets.pop(target.generation, None)  # as the router does: newest last
        self.targets[target.generation] = target
        while len(self.targets) > KEPT_TARGETS:
            self.targets.popitem(last=False)
        address = (target.host, target.port)
        if address not in self.pools:
            self.pools[address] = UpstreamPool(target.host, target.port)
        wanted = {(t.host, t.port) for t in self.targets.values()}
        for stale in [a for a in self.pools if a not in wanted]:
            self.pools.pop(stale).close()

    def accept(self, copy: Copy) -> None:
        target = self.targets.get(copy.generation)
        self.changed = True
        if target is None:  # the router never sends a copy before its target
            log.error("shadow worker: a copy for unknown table %d; dropped", copy.generation)
            self.totals.counts[copy.primary_revision, "", "dropped"] += 1
            return
        if self.quitting:
            self.totals.counts[copy.primary_revision, target.revision, "dropped"] += 1
            return
        self.backlog.append((target, copy))
        self.start_what_fits()
        if len(self.backlog) >= BACKLOG and not self.paused and self.transport is not None:
            # Full: leave further copies in the socket and the router's bounded buffer,
            # which drops (and counts) them once that fills up.
            self.paused = True
            self.transport.pause_reading()

    def start_what_fits(self) -> None:
        """Start waiting copies, oldest first, while their target's concurrency allows."""
        if self.finished:
            return
        backlog = self.backlog
        while backlog and self.totals.inflight < backlog[0][0].max_concurrency:
            target, copy = backlog.popleft()
            key = (copy.primary_revision, target.revision)
            self.totals.inflight += 1
            pool = self.pools[target.host, target.port]
            task = self.loop.create_task(self.judge(target, pool, copy, key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.paused and len(backlog) < BACKLOG // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    async def judge(
        self, target: Target, pool: UpstreamPool, copy: Copy, key: tuple[str, str]
    ) -> None:
        result = "error"
        try:
            response = await pool.request(copy.request, within=target.timeout_seconds)
            if response.status == 200:
                self.log_answer(copy, target.revision, response.body)
                verdict = compare(copy.primary_body, response.body, target.comparison)
                result = "agree" if verdict.agree else "disagree"
                if verdict.difference is not None:
                    self.totals.difference[key].observe(verdict.difference)
        except (UpstreamError, Incomparable) as exc:
            log.debug("shadow %s failed: %s", target.revision, exc)
        except asyncio.CancelledError:
            result = "dropped"  # the router is shutting down and the grace is over
            raise
        finally:
            self.totals.inflight -= 1
            self.totals.counts[(*key, result)] += 1
            self.changed = True
            if not self.quitting:
                self.start_what_fits()

    # ------------------------------------------------------------------ the end
    async def quit(self, grace: float) -> None:
        """The router is shutting down: finish the copies in flight within ``grace``."""
        self.quitting = True
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(grace, 0.0))
        self.finish()

    def finish(self) -> None:
        """Send the last totals and close; the process ends once they are flushed."""
        if self.finished:
            return
        self.finished = True
        while self.backlog:  # never started: the router is going away
            target, copy = self.backlog.popleft()
            self.totals.counts[copy.primary_revision, target.revision, "dropped"] += 1
        for task in self.tasks:
            task.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        self.send_answers()
        self.send_totals()
        for pool in self.pools.values():
            pool.close()
        if self.transport is None:
            self.done.set_result(None)
        else:
            self.transport.close()  # flushes, then connection_lost


async def serve(fd: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sock = socket.socket(fileno=fd)
    await loop.connect_accepted_socket(lambda: ShadowWorker(done), sock)
    await done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="serinus-shadow-worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the router's socket")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.debug("shadow worker running at %s", lower_priority())
    uvloop.run(serve(args.fd))


if __name__ == "__main__":
    main()

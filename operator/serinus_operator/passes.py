"""The async shell around :class:`~serinus_operator.scheduling.Scheduler`: a loop awaits
:meth:`PassGate.slot` around each reconcile pass and gets it when the scheduler grants it.

The queue depth, the passes running and each pass's wait for its slot are exported
(telemetry.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from serinus_operator.scheduling import Key, Scheduler, Urgency
from serinus_operator.telemetry import Telemetry

#: Passes at once unless ``--max-concurrent-passes`` says otherwise.
MAX_CONCURRENT_PASSES = 16


class PassGate:
    def __init__(
        self,
        limit: int = MAX_CONCURRENT_PASSES,
        telemetry: Telemetry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = Scheduler(limit)
        self._telemetry = telemetry
        self._clock = clock
        self._grants: dict[Key, asyncio.Future[None]] = {}

    @asynccontextmanager
    async def slot(self, key: Key, urgency: Urgency) -> AsyncIterator[None]:
        """Wait for ``key``'s turn, hold one of the slots while the body runs."""
        await self._acquire(key, urgency)
        try:
            yield
        finally:
            self.release(key)

    async def _acquire(self, key: Key, urgency: Urgency) -> None:
        granted = self._grants.get(key)
        if granted is None or granted.done():
            granted = asyncio.get_running_loop().create_future()
            self._grants[key] = granted
        self.scheduler.request(key, urgency, self._clock())
        self._dispatch()
        try:
            await asyncio.shield(granted)
        except asyncio.CancelledError:
            if granted.done():
                self.release(key)  # granted just as we were cancelled: give it back
            else:
                self._grants.pop(key, None)
                self.scheduler.cancel(key)
                self._export()
            raise

    def release(self, key: Key) -> Urgency | None:
        again = self.scheduler.finish(key)
        self._dispatch()
        return again

    def promote(self, key: Key) -> None:
        """Something changed for ``key``: a pass it waits for goes before idle ones."""
        self.scheduler.promote(key)

    def _dispatch(self) -> None:
        now = self._clock()
        while started := self.scheduler.grant():
            stale = False
            for entry in started:
                granted = self._grants.pop(entry.key, None)
                if granted is None or granted.done():  # nobody waits any more
                    self.scheduler.finish(entry.key)
                    stale = True
                    continue
                granted.set_result(None)
                if self._telemetry is not None:
                    self._telemetry.pass_wait.labels(entry.urgency.name.lower()).observe(
                        max(0.0, now - entry.since)
                    )
            if not stale:
                break
        self._export()

    def _export(self) -> None:
        if self._telemetry is not None:
            self._telemetry.pass_queue_depth.set(self.scheduler.depth)
            self._telemetry.passes_running.set(len(self.scheduler.running))

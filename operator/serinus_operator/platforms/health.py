"""Whether the API answers, and a wake-up for everyone waiting the moment it answers again.

Each ModelDeployment's loop backs off on its own after a failed pass (up to a minute), so
after an outage the first pass would otherwise come up to a minute late, and a rollback
that is due would wait as long. Instead the client reports every answer here: a failure
to connect or a 5xx marks the API down and starts one prober (a cheap ``/readyz`` every
``probe_interval`` seconds); the first answer of any request marks it up and wakes every
loop at once, with its back-off reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("serinus.health")

#: How often a down API is probed: the recovery delay is at most this.
PROBE_INTERVAL = 0.5


class ApiHealth:
    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]] | None = None,
        *,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._probe = probe
        self._interval = probe_interval
        self._up = asyncio.Event()
        self._up.set()
        self._prober: asyncio.Task[None] | None = None
        self.recoveries = 0  # how many times the API came back; a loop compares it

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def succeeded(self) -> None:
        """Any request got an answer (even a 404 or 409): the API is there."""
        if not self._up.is_set():
            self.recoveries += 1
            log.info("the API server answers again: waking every waiting loop")
            self._up.set()

    def failed(self) -> None:
        """No answer, or a 5xx: down until something succeeds."""
        if self._up.is_set():
            log.warning("the API server does not answer: probing it every %.1f s", self._interval)
        self._up.clear()
        if self._probe is not None and (self._prober is None or self._prober.done()):
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def wait_up(self) -> None:
        await self._up.wait()

    async def _probe_until_up(self) -> None:
        assert self._probe is not None
        while not self._up.is_set():
            await asyncio.sleep(self._interval)
            with contextlib.suppress(Exception):
                if await self._probe():
                    self.succeeded()

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober

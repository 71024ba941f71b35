"""Where the routing table comes from. A file is polled (a change applies within
``interval``); an invalid table is logged, counted and ignored, keeping the last good one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from serinus_serving.router.table import RoutingTable, TableError, parse_table

log = logging.getLogger(__name__)


class FileSource:
    def __init__(
        self,
        path: Path,
        apply: Callable[[RoutingTable], None],
        *,
        rejected: Callable[[str], None],
        interval: float = 0.2,
    ) -> None:
        self.path = path
        self.apply = apply
        self.rejected = rejected
        self.interval = interval
        self._seen: tuple[float, int, bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Apply the file if it changed; True when a table was applied."""
        try:
            stat = self.path.stat()
            raw = self.path.read_bytes()
        except OSError as exc:
            if self._seen is not None or not hasattr(self, "_missing_logged"):
                log.error("cannot read routing table %s: %s", self.path, exc)
                self._missing_logged = True
            return False
        fingerprint = (stat.st_mtime, stat.st_size, raw)
        if fingerprint == self._seen:
            return False
        self._seen = fingerprint
        try:
            table = parse_table(raw)
        except TableError as exc:
            log.error("routing table %s rejected, keeping the last good one: %s", self.path, exc)
            self.rejected(str(exc))
            return False
        self.apply(table)
        return True

    async def start(self) -> None:
        self.load()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.load()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""Where the routing table comes from. A file is polled (a change applies within
``interval``); a table that cannot be read or is invalid is logged, counted and ignored,
keeping the last good one.

Failures are reported when they change, not on every poll: a file that goes missing (or
becomes unreadable, or holds an invalid table) is logged and counted as a rejected table
once, however long it stays so, and its return is logged once. As the ConfigMap source
does, what was last offered is remembered, so only a new state is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from serinus_serving.router.table import RoutingTable, TableError, parse_table

log = logging.getLogger(__name__)


def read_problem(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be read, in words that stay the same while the cause does."""
    if isinstance(exc, FileNotFoundError):
        return f"routing table {path} does not exist"
    return f"cannot read routing table {path}: {exc.strerror or exc}"


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
        #: The content last read (not its mtime: rewriting the same table changes nothing),
        #: None after the file could not be read: what it holds when it is back is applied
        #: or rejected afresh.
        self._seen: bytes | None = None
        #: Why the file could not be read at the last poll (None: it could).
        self._problem: str | None = None
        self._task: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Apply the file if it changed; True when a table was applied."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self._unreadable(read_problem(self.path, exc))
            return False
        if self._problem is not None:
            log.info("routing table %s is readable again", self.path)
            self._problem = None
        if raw == self._seen:
            return False
        self._seen = raw
        try:
            table = parse_table(raw)
        except TableError as exc:
            log.error("routing table %s rejected, keeping the last good one: %s", self.path, exc)
            self.rejected(str(exc))
            return False
        self.apply(table)
        return True

    def _unreadable(self, problem: str) -> None:
        """Report a read failure once, when it starts or its cause changes."""
        self._seen = None
        if problem == self._problem:
            return
        self._problem = problem
        log.error("%s; keeping the last good one", problem)
        self.rejected(problem)

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

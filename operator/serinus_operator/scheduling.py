"""Which reconcile pass runs next: a bounded, fair queue of passes (pure; no I/O, no clock).

Every ModelDeployment's loop asks for a slot before each pass (handlers.py, through the
async shell in passes.py). At most ``limit`` passes run at once. A pass that something
asked for (a change to the object or a child, the engine's ``wake_at``, a retry) is
:attr:`Urgency.DUE` and always goes before idle resyncs (:attr:`Urgency.RESYNC`), which
are only a safety net; within one urgency, first come first served. Requests are
coalesced per object: asking again while queued keeps one entry (the more urgent, the
earlier place), asking while the pass runs owes exactly one more pass after it.

:func:`resync_delay` spreads the idle resyncs of a fleet over the period by a stable hash
of each object's name, so that a thousand objects do not all look again at one moment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

Key = tuple[str, str]  # (namespace, name)

#: Without news, a ModelDeployment is looked at again this often anyway: a safety net
#: against a lost wake-up, read from the watch caches, so an idle fleet sends no request.
RESYNC_SECONDS = 600.0


class Urgency(IntEnum):
    """Lower goes first."""

    DUE = 0  # changed, woken, ``wake_at`` reached, retrying
    RESYNC = 1  # nothing happened: the periodic look, a safety net


@dataclass(frozen=True)
class Entry:
    key: Key
    urgency: Urgency
    seq: int  # arrival order: first come, first served within an urgency
    since: float  # when it was first asked for (for the wait-time metric)

    @property
    def order(self) -> tuple[int, int]:
        return (int(self.urgency), self.seq)


@dataclass
class Scheduler:
    limit: int
    queued: dict[Key, Entry] = field(default_factory=dict)
    running: set[Key] = field(default_factory=set)
    #: Asked for again while running: owed one more pass, at this urgency.
    again: dict[Key, Urgency] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"at least one pass must be able to run (got {self.limit})")

    def request(self, key: Key, urgency: Urgency, now: float) -> None:
        """Ask for a pass of ``key``; coalesced with one already queued or running."""
        if key in self.running:
            self.again[key] = min(urgency, self.again.get(key, Urgency.RESYNC))
            return
        old = self.queued.get(key)
        if old is not None:
            if urgency < old.urgency:  # promoted, keeping its place among its new peers
                self.queued[key] = Entry(key, urgency, old.seq, old.since)
            return
        self._seq += 1
        self.queued[key] = Entry(key, urgency, self._seq, now)

    def promote(self, key: Key) -> None:
        """Something changed for ``key``: if it waits or runs, make that pass (or the next
        one) due. An object with no pass asked for is left alone: its loop, once woken,
        asks itself (and a deleted object's loop never asks again)."""
        if key in self.queued or key in self.running:
            self.request(key, Urgency.DUE, 0.0)

    def cancel(self, key: Key) -> None:
        """The loop that asked stopped waiting (the object is gone, the operator stops)."""
        self.queued.pop(key, None)

    def grant(self) -> list[Entry]:
        """The passes to start now, most urgent first, never more than the limit running."""
        started: list[Entry] = []
        free = self.limit - len(self.running)
        if free <= 0 or not self.queued:
            return started
        for entry in sorted(self.queued.values(), key=lambda e: e.order)[:free]:
            del self.queued[entry.key]
            self.running.add(entry.key)
            started.append(entry)
        return started

    def finish(self, key: Key) -> Urgency | None:
        """``key``'s pass ended; the urgency of the pass it is owed, if it was asked for
        again while running."""
        self.running.discard(key)
        return self.again.pop(key, None)

    @property
    def depth(self) -> int:
        return len(self.queued)


def phase(key: Key) -> float:
    """A stable number in [0, 1) for ``key`` (the same in every process, unlike hash())."""
    digest = hashlib.blake2b("/".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def resync_delay(key: Key, period: float, now: float, *, minimum: float = 0.1) -> float:
    """Seconds until ``key``'s next idle resync: the fleet's resyncs fall on a grid of
    ``period`` shifted by each object's :func:`phase`, so they are spread evenly over the
    period and each object resyncs every ``period`` (``now`` is any monotonic clock)."""
    offset = phase(key) * period
    delay = period - ((now - offset) % period)
    return delay if delay >= minimum else delay + period

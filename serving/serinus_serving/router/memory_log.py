"""The prediction log in the router's own memory: one replica, ``serinus local``, tests.

Bounded in bytes, not in entries: each entry is charged its key, its answers and a fixed
overhead for the containers, and the oldest entries go first once the total is over
``max_bytes``. Entries older than ``ttl`` are dropped as new ones arrive (oldest first,
so the work is proportional to what is dropped), and reported ``expired`` until then.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from serinus_serving.router.prediction_log import Lookup, Record

#: What an entry costs besides its strings: the OrderedDict node, the entry, its dict.
ENTRY_OVERHEAD = 400
#: Per answer: the dict slot and the two bytes/str objects' headers.
ANSWER_OVERHEAD = 120


@dataclass(slots=True)
class _Entry:
    at: float
    size: int
    labelled: bool = False
    answers: dict[str, bytes] = field(default_factory=dict)


class MemoryLog:
    def __init__(
        self, *, ttl: float, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Bytes charged to the entries held now.
        self.bytes = 0
        #: Entries dropped, by reason: ``ttl`` or ``budget``.
        self.evicted: defaultdict[str, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self._entries)

    async def record(self, records: Sequence[Record]) -> None:
        now = self._clock()
        entries = self._entries
        for rec in records:
            entry = entries.get(rec.key)
            if entry is None:
                entry = entries[rec.key] = _Entry(now, ENTRY_OVERHEAD + len(rec.key))
                self.bytes += entry.size
            elif rec.primary:  # a reused id: the entry is this request's from now on
                entry.at, entry.labelled = now, False
                entries.move_to_end(rec.key)
            old = entry.answers.get(rec.revision)
            grown = len(rec.answer) - (
                len(old) if old is not None else -ANSWER_OVERHEAD - len(rec.revision)
            )
            entry.answers[rec.revision] = rec.answer
            entry.size += grown
            self.bytes += grown
        self._evict(now)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if now - oldest.at > self.ttl:
                reason = "ttl"
            elif self.bytes > self.max_bytes:
                reason = "budget"
            else:
                return
            del entries[key]
            self.bytes -= oldest.size
            self.evicted[reason] += 1

    async def lookup(self, keys: Sequence[str]) -> list[Lookup]:
        now = self._clock()
        found = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                found.append(Lookup("unknown_id", {}))
            elif entry.labelled:
                found.append(Lookup("duplicate", {}))
            elif now - entry.at > self.ttl:
                found.append(Lookup("expired", {}))
            else:
                found.append(Lookup("found", dict(entry.answers)))
        return found

    async def mark(self, keys: Sequence[str]) -> list[bool]:
        marked = []
        for key in keys:
            entry = self._entries.get(key)
            first = entry is not None and not entry.labelled
            if entry is not None:
                entry.labelled = True
            marked.append(first)
        return marked

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0

"""Choosing the revision that serves a request. Pure: randomness comes in as a number."""

from __future__ import annotations

import zlib

from serinus_serving.router.table import RoutingTable


class UnknownRevision(ValueError):
    pass


def sticky_point(key: str) -> float:
    """A stable point in [0, 100) for a user key: the same on every router replica."""
    return (zlib.crc32(key.encode()) % 10_000) / 100


def choose(table: RoutingTable, *, pinned: str | None = None, point: float) -> str:
    """The revision for a request: the pinned one if any, else the one whose share of
    [0, 100) holds ``point`` (revisions in name order, so a point maps consistently)."""
    if pinned is not None:
        if pinned not in table.backends:
            known = ", ".join(sorted(table.backends))
            raise UnknownRevision(f"x-serinus-revision {pinned!r} is not one of: {known}")
        return pinned
    cumulative = 0
    last = ""
    for revision in sorted(table.backends):
        weight = table.backends[revision].weight
        if weight == 0:
            continue
        cumulative += weight
        last = revision
        if point < cumulative:
            return revision
    return last

"""A big file fetched in parts: ``workers`` range requests at once, each part written at its
offset and retried on its own.

One stream of a multi-gigabyte model is bound by one connection's throughput (and a
dropped connection costs everything fetched so far); object stores and most HTTP servers
serve ranges, and several at once fill the link. Memory stays bounded: each part streams
to disk. Every part asks for the same version of the file (its ETag, ``If-Match``), so a
file replaced half-way fails the fetch instead of mixing two versions; the digest check
after the fetch is the final word either way.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import Limits, Retryable, Sink, retrying

#: ``read(start, end)``: the bytes ``[start, end)`` of the file, in chunks.
ReadRange = Callable[[int, int], Iterable[bytes | memoryview]]


def in_parts(size: int, *, limits: Limits) -> bool:
    """Whether a file of ``size`` bytes is worth fetching in parts."""
    return limits.workers > 1 and size >= max(limits.parts_from, 2 * limits.part_bytes)


def fetch_in_parts(
    read: ReadRange, target: Path, *, size: int, uri: str, budget: list[int], limits: Limits
) -> Path:
    """Write the ``size`` bytes of a file to ``target`` in parts of ``limits.part_bytes``;
    the first part that fails for good stops the others and fails the fetch."""
    sink = Sink(target, uri=uri, budget=budget, limit=limits.max_bytes)
    with sink.filling():
        fd = sink.reserve(size)
        stop = threading.Event()
        step = limits.part_bytes
        parts = [(start, min(start + step, size)) for start in range(0, size, step)]
        one = functools.partial(_part, read, sink, fd, uri=uri, limits=limits, stop=stop)
        with ThreadPoolExecutor(min(limits.workers, len(parts))) as pool:
            futures = [pool.submit(one, start, end) for start, end in parts]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()
                raise
    return sink.done()


def _part(
    read: ReadRange,
    sink: Sink,
    fd: int,
    start: int,
    end: int,
    *,
    uri: str,
    limits: Limits,
    stop: threading.Event,
) -> None:
    def attempt() -> None:
        offset = start
        for chunk in read(start, end):
            if stop.is_set():
                raise ModelLoadError(f"fetching {uri}: stopped (another part failed)")
            if offset + len(chunk) > end:
                raise ModelLoadError(f"{uri}: the store sent more than bytes {start}-{end - 1}")
            sink.write_at(fd, offset, chunk)
            offset += len(chunk)
        if offset != end:
            raise Retryable(f"bytes {start}-{end - 1}: {offset - start} of {end - start} came")

    retrying(f"fetching bytes {start}-{end - 1} of {uri}", limits.attempts, attempt)

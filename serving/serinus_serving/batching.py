"""Adaptive batching: concurrent requests become one runtime call, then are split back.

It never waits for company that is not coming: a batch runs as soon as the runtime is
free, holding everything that queued meanwhile, and only waits (up to ``max_latency``)
while requests are known to be mid-arrival (their bodies still being read). Under load
batches fill by themselves; alone, a request pays no extra latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from serinus_serving.runtime.base import Array

RunFn = Callable[[dict[str, Array]], dict[str, Array]]
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


def signature_of(inputs: dict[str, Array]) -> Signature:
    """Requests can share a call only with the same input names, dtypes and row shapes."""
    return tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()))


@dataclass(slots=True)
class _Pending:
    inputs: dict[str, Array]
    rows: int
    signature: Signature
    future: asyncio.Future[dict[str, Array]]


class AdaptiveBatcher:
    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int,
        max_latency: float,
        inline: bool,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.inline = inline
        self._observe = observe
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        #: Requests on their way (body being read and decoded); the caller keeps it current.
        self.arriving = 0

    async def submit(self, inputs: dict[str, Array], rows: int) -> dict[str, Array]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Array]] = loop.create_future()
        self._queue.append(_Pending(inputs, rows, signature_of(inputs), future))
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def _take(self) -> list[_Pending]:
        first = self._queue[0]
        batch: list[_Pending] = []
        rows = 0
        kept: deque[_Pending] = deque()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():
                continue
            fits = rows + item.rows <= self.max_batch_size or not batch  # big ones run alone
            if item.signature == first.signature and fits:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        self._queue = kept
        return batch

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self._queue)

    async def _work(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # let requests read in this loop turn join the batch
            deadline = time.monotonic() + self.max_latency
            while self.arriving and self._queued_rows() < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            batch = self._take()
            if batch:
                await self._execute(batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            merged = batch[0].inputs
        else:
            merged = {
                name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs
            }
        rows = sum(p.rows for p in batch)
        started = time.perf_counter()
        try:
            if self.inline:
                outputs = self._run(merged)
            else:
                outputs = await asyncio.to_thread(self._run, merged)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            # One request's data must not fail its neighbours: run them one by one.
            for p in batch:
                await self._execute([p])
            return
        if self._observe is not None:
            self._observe(rows, time.perf_counter() - started)
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result({n: a[start : start + p.rows] for n, a in outputs.items()})
            start += p.rows

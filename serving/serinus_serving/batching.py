"""Adaptive batching: concurrent requests become one runtime call, then are split back.

It never waits for company that is not coming. A submitted request schedules a flush for
the event loop's next turn, so every request already being handled in this turn joins the
batch, and nothing more: alone, a request costs one loop turn. While the runtime is busy in
a worker thread, arrivals queue up and form the next batch. Only while requests are known
to be mid-arrival (bodies still being read) does a flush wait, and never longer than
``max_latency`` after the first queued request.

Flushes are plain loop callbacks rather than a worker task: at one request at a time the
task switches cost more than a small model's inference.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from serinus_serving.runtime.base import Array

RunFn = Callable[[dict[str, Array]], dict[str, Array]]
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]
#: How often a flush that waits for arriving requests looks again.
_POLL = 0.0002


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
        arriving: Callable[[], int] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.inline = inline
        self._observe = observe
        self._queue: deque[_Pending] = deque()
        self._scheduled: asyncio.Handle | None = None
        self._busy = False  # a batch is running in a worker thread
        self._deadline = 0.0
        self._threads: set[asyncio.Task[None]] = set()
        #: Requests the HTTP server is receiving or about to answer: the company a batch may
        #: wait for. Known, it also lets a lone request run at once; unknown (None), every
        #: request waits one loop turn for company and no longer.
        self._arriving_at_server = arriving

    def run_alone(self, inputs: dict[str, Array], rows: int) -> dict[str, Array] | None:
        """Run the request now if it is alone and no one is on the way to keep it company
        (a batch of one, run now rather than a loop turn later); else None: submit it."""
        if (
            not self.inline
            or self._arriving_at_server is None
            or self._queue
            or self._scheduled is not None
            or self._arriving_at_server()
        ):
            return None
        started = time.perf_counter()
        outputs = self._run(inputs)
        if self._observe is not None:
            self._observe(rows, time.perf_counter() - started)
        return outputs

    async def submit(self, inputs: dict[str, Array], rows: int) -> dict[str, Array]:
        outputs = self.run_alone(inputs, rows)
        if outputs is not None:
            return outputs
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Array]] = loop.create_future()
        self._queue.append(_Pending(inputs, rows, signature_of(inputs), future))
        if self._scheduled is None and not self._busy:
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._deadline = time.monotonic() + self.max_latency
        self._scheduled = loop.call_soon(self._flush)

    async def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._threads:
            await asyncio.wait(list(self._threads))
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))

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

    def _flush(self) -> None:
        self._scheduled = None
        if not self._queue or self._busy:
            return
        loop = asyncio.get_running_loop()
        if (
            self._arriving_at_server is not None
            and self._arriving_at_server()
            and sum(p.rows for p in self._queue) < self.max_batch_size
            and time.monotonic() < self._deadline
        ):
            self._scheduled = loop.call_later(_POLL, self._flush)
            return
        batch = self._take()
        if batch:
            if self.inline:
                self._run_batch(batch)
            else:
                self._busy = True
                task = loop.create_task(self._run_in_thread(batch))
                self._threads.add(task)
                task.add_done_callback(self._threads.discard)
                return
        if self._queue:
            self._schedule(loop)

    async def _run_in_thread(self, batch: list[_Pending]) -> None:
        try:
            merged, rows = _merge(batch)
            started = time.perf_counter()
            try:
                outputs = await asyncio.to_thread(self._run, merged)
            except Exception as exc:
                for p in batch:  # one by one, so one bad request cannot fail the rest
                    await self._run_alone_in_thread(p, exc if len(batch) == 1 else None)
                return
            self._deliver(batch, outputs, rows, time.perf_counter() - started)
        finally:
            self._busy = False
            if self._queue and self._scheduled is None:
                self._schedule(asyncio.get_running_loop())

    async def _run_alone_in_thread(self, p: _Pending, known: Exception | None) -> None:
        if known is None:
            try:
                started = time.perf_counter()
                outputs = await asyncio.to_thread(self._run, p.inputs)
            except Exception as exc:
                known = exc
            else:
                self._deliver([p], outputs, p.rows, time.perf_counter() - started)
                return
        if not p.future.done():
            p.future.set_exception(known)

    def _run_batch(self, batch: list[_Pending]) -> None:
        merged, rows = _merge(batch)
        started = time.perf_counter()
        try:
            outputs = self._run(merged)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for p in batch:  # one by one, so one bad request cannot fail the rest
                self._run_batch([p])
            return
        self._deliver(batch, outputs, rows, time.perf_counter() - started)

    def _deliver(
        self, batch: list[_Pending], outputs: dict[str, Array], rows: int, seconds: float
    ) -> None:
        if self._observe is not None:
            self._observe(rows, seconds)
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result({n: a[start : start + p.rows] for n, a in outputs.items()})
            start += p.rows


def _merge(batch: list[_Pending]) -> tuple[dict[str, Array], int]:
    if len(batch) == 1:
        return batch[0].inputs, batch[0].rows
    merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
    return merged, sum(p.rows for p in batch)

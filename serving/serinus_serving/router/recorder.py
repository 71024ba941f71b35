"""Recording answers into the prediction log off the request path.

The request path only appends ``(id, revision, response body)`` to a queue bounded in
entries and bytes (a full queue drops and counts, it never grows); a task on the same
event loop takes the queue every ``interval`` seconds, reduces each body to its compact
answer and writes the lot to the store in one batch (one Redis round trip). Shadow
answers arrive already reduced, from the shadow worker. A store that fails or hangs
costs counted drops (``failed``), never a request's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from serinus_serving.router.memory_log import MemoryLog
from serinus_serving.router.prediction_log import (
    Api,
    PredictionLog,
    PredictionLogError,
    Record,
    answer_of,
    id_key,
)

log = logging.getLogger(__name__)

#: Results counted per answer: recorded, overflow (the queue was full), unreadable (no
#: single label or value output), failed (the store refused or did not answer in time).
RECORD_RESULTS = ("recorded", "overflow", "unreadable", "failed")


@dataclass(frozen=True, slots=True)
class RecorderLimits:
    max_pending: int = 10_000
    max_pending_bytes: int = 16 << 20
    interval: float = 0.05
    #: Answers reduced and written per step; the loop serves requests between steps, so a
    #: flush never holds the event loop for long (a tail-latency spike otherwise).
    batch: int = 64


class Recorder:
    def __init__(self, store: PredictionLog, limits: RecorderLimits | None = None) -> None:
        self.store = store
        self.limits = limits or RecorderLimits()
        #: (model-scoped key or raw id, revision, body or answer, the body's protocol or
        #: None for an answer already reduced)
        self._queue: deque[tuple[str, str, bytes, Api | None]] = deque()
        self._bytes = 0
        self.counts: defaultdict[str, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ request path
    def primary(self, model: str, request_id: str, revision: str, body: bytes, api: Api) -> None:
        """Queue a primary answer (the body of an ``api`` response): an append, or a
        counted drop when the queue is full."""
        size = len(body) + len(request_id)
        limits = self.limits
        if len(self._queue) >= limits.max_pending or self._bytes + size > limits.max_pending_bytes:
            self.counts["overflow"] += 1
            return
        self._queue.append((model + "\0" + request_id, revision, body, api))
        self._bytes += size

    def shadow(self, answers: Sequence[tuple[str, str, bytes]]) -> None:
        """Queue the shadow worker's answers: (model-scoped key, revision, answer)."""
        limits = self.limits
        for key, revision, answer in answers:
            size = len(answer) + len(key)
            if (
                len(self._queue) >= limits.max_pending
                or self._bytes + size > limits.max_pending_bytes
            ):
                self.counts["overflow"] += 1
                continue
            self._queue.append((key, revision, answer, None))
            self._bytes += size

    # ------------------------------------------------------------------ the task
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued (briefly), then close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=2.0)
        await self.store.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.limits.interval)
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued now, a batch at a time, letting requests run between."""
        while self._queue:
            records = self._take(self.limits.batch)
            if not records:
                continue
            try:
                await self.store.record(records)
            except PredictionLogError as exc:
                self.counts["failed"] += len(records)
                log.warning("prediction log: %d answers not recorded: %s", len(records), exc)
                return
            self.counts["recorded"] += len(records)
            await asyncio.sleep(0)

    def _take(self, n: int) -> list[Record]:
        records = []
        queue = self._queue
        for _ in range(min(n, len(queue))):
            key, revision, payload, api = queue.popleft()
            self._bytes -= len(payload) + len(key)
            if api is None:
                records.append(Record(key, revision, payload, primary=False))
                continue
            answer = answer_of(payload, "primary", api)
            if answer is None:
                self.counts["unreadable"] += 1
                continue
            model, _, request_id = key.partition("\0")
            records.append(Record(store_key(model, request_id), revision, answer, primary=True))
        return records


def store_key(model: str, request_id: str) -> str:
    """The store's key of a request id: scoped to the model, bounded in length."""
    return f"{model}:{id_key(request_id)}"


def collect(recorder: Recorder, model: str, *, shadow_dropped: int) -> Iterator[Metric]:
    """The prediction log's own health: answers by result, the queue, the memory store."""
    answers = CounterMetricFamily(
        "serinus_prediction_log_answers",
        "Answers for the prediction log by result: recorded, overflow (a queue was full), "
        "unreadable (no single label or value output), failed (the store did not take them).",
        labels=["model", "result"],
    )
    for result in RECORD_RESULTS:
        extra = shadow_dropped if result == "overflow" else 0
        answers.add_metric([model, result], recorder.counts.get(result, 0) + extra)
    yield answers
    pending = GaugeMetricFamily(
        "serinus_prediction_log_pending", "Answers queued for the store.", labels=["model"]
    )
    pending.add_metric([model], recorder.pending)
    yield pending
    store = recorder.store
    if isinstance(store, MemoryLog):
        size = GaugeMetricFamily(
            "serinus_prediction_log_bytes",
            "Bytes charged to the in-process prediction log (bounded by its budget).",
            labels=["model"],
        )
        size.add_metric([model], store.bytes)
        yield size
        evicted = CounterMetricFamily(
            "serinus_prediction_log_evicted",
            "Entries the in-process prediction log dropped: ttl (expired), budget (bytes).",
            labels=["model", "reason"],
        )
        for reason in ("ttl", "budget"):
            evicted.add_metric([model, reason], store.evicted.get(reason, 0))
        yield evicted

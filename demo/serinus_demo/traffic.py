"""The demo's traffic: transactions from today's distribution, sent through the router.

A few threads send one-row OIP v2 requests at a steady rate, each with an ``id``; the
router says in ``x-serinus-revision`` which revision answered, and for a share of the
answers the generator sends the true label back a moment later as feedback (the router
joins it with every answer of that id and counts live accuracy per revision). While a
blue-green candidate is in preview, a share of the requests is pinned to it with the same
header, as a smoke test would be.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from serinus_demo.models import FEATURES, sample, truth

PIN = "x-serinus-revision"
#: Labels come later than answers, as a fraud analyst's verdict would (sooner here): the
#: router joins them with every answer of their id, the shadow's included.
LABEL_DELAY = 1.5


@dataclass
class Stats:
    """What users saw, by the revision that answered them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (revision, status)
    correct: Counter[str] = field(default_factory=Counter)
    pinned: Counter[str] = field(default_factory=Counter)
    failures: int = 0  # no answer at all (connection refused, timeout)

    def served(self, revision: str) -> int:
        with self.lock:
            return sum(n for (r, s), n in self.answers.items() if r == revision and s == 200)

    def errors(self) -> int:
        with self.lock:
            return self.failures + sum(n for (_, s), n in self.answers.items() if s >= 500)

    def total(self) -> int:
        with self.lock:
            return self.failures + sum(self.answers.values())

    def accuracy(self, revision: str) -> float | None:
        served = self.served(revision)
        with self.lock:
            return None if not served else self.correct[revision] / served


class Traffic:
    """Runs until :meth:`stop`: ``rate`` requests per second over ``workers`` threads."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        rate: float = 60.0,
        workers: int = 3,
        feedback_share: float = 0.3,
        pin_share: float = 0.3,
        seed: int = 11,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.rate = rate
        self.workers = workers
        self.feedback_share = feedback_share
        self.pin_share = pin_share
        self.seed = seed
        self.stats = Stats()
        self.preview: str | None = None  # a revision to pin a share of requests to
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count()

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self, index: int) -> None:
        rng = np.random.default_rng(self.seed + index)
        period = self.workers / self.rate
        next_at = time.monotonic()
        labels: deque[tuple[float, str, int]] = deque()  # (when, id, label)
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                request_id = f"tx-{index}-{next(self._ids)}"
                label = self._send(client, rng, request_id=request_id)
                if label is not None:
                    labels.append((time.monotonic() + LABEL_DELAY, request_id, label))
                while labels and labels[0][0] <= time.monotonic():
                    _, labelled, value = labels.popleft()
                    with contextlib.suppress(httpx.HTTPError):
                        client.post(
                            f"/v2/models/{self.model}/feedback",
                            json={"id": labelled, "label": value},
                        )
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _send(
        self, client: httpx.Client, rng: np.random.Generator, *, request_id: str
    ) -> int | None:
        """One request; its true label when it is to be sent back later."""
        x = sample(1, rng)
        label = int(truth(x, rng)[0])
        headers = {}
        preview = self.preview
        if preview is not None and rng.random() < self.pin_share:
            headers[PIN] = preview
        body: dict[str, Any] = {
            "id": request_id,
            "inputs": [
                {
                    "name": "X",
                    "shape": [1, len(FEATURES)],
                    "datatype": "FP32",
                    "data": [float(v) for v in x[0]],
                }
            ],
        }
        try:
            response = client.post(f"/v2/models/{self.model}/infer", json=body, headers=headers)
        except httpx.HTTPError:
            with self.stats.lock:
                self.stats.failures += 1
            return None
        revision = response.headers.get(PIN, "?")
        hit, feedback = False, None
        if response.status_code == 200:
            outputs = {o["name"]: o["data"] for o in response.json().get("outputs", [])}
            hit = int(outputs.get("label", [-1])[0]) == label
            if rng.random() < self.feedback_share:
                feedback = label
        with self.stats.lock:
            self.stats.answers[(revision, response.status_code)] += 1
            self.stats.correct[revision] += hit
            if PIN in headers:
                self.stats.pinned[revision] += 1
        return feedback

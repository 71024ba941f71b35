"""What the router and its shadow worker say to each other over their socket pair. Pure.

A frame is a 4-byte big-endian length, one kind byte and a payload:

- router → worker: ``T`` a shadow target (JSON: generation, revision, host, port,
  timeout, concurrency bound, comparison rules), ``C`` a copy (generation, the primary's
  revision, the request id for the prediction log or nothing, the request as the shadow
  backend is to get it, the primary's response body),
  ``Q`` finish what is in flight within the given seconds and exit;
- worker → router: ``H`` ready, ``S`` its running totals (JSON, cumulative, so a lost or
  late snapshot loses nothing), ``A`` alive: sent when it has sent nothing else for
  ``HEARTBEAT_SECONDS``, ``P`` shadow answers for the prediction log (JSON list of
  ``[key, revision, answer]``).

A worker is judged by what it sends, not by its process being there: one that sends
nothing for ``STALL_SECONDS`` (stopped, wedged, or starved of CPU) is not making progress,
and the router takes it out of service until it speaks again.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson

from serinus_serving.metrics import FastHistogram
from serinus_serving.router.table import Comparison

_LENGTH = struct.Struct(">I")
# generation, primary revision length, request id length, request length
_COPY = struct.Struct(">IHII")

TARGET, COPY, QUIT, HELLO, SNAPSHOT, ALIVE = b"T", b"C", b"Q", b"H", b"S", b"A"
ANSWERS = b"P"
#: The worker sends something (a snapshot, else ``ALIVE``) at least this often...
HEARTBEAT_SECONDS = 0.5
#: ...and the router counts it down after this long without a word from it.
STALL_SECONDS = 2.0

#: Largest absolute difference between a shadow's and the primary's float outputs.
DIFFERENCE_BUCKETS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
SHADOW_RESULTS = ("agree", "disagree", "error", "dropped")
#: Targets both sides remember, oldest first out: a copy may name the table before the
#: newest one (a request that began before a table change); the router sends a target
#: again once the worker has forgotten it.
KEPT_TARGETS = 16


class FrameError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def frame(kind: bytes, *parts: bytes) -> bytes:
    size = 1 + sum(len(p) for p in parts)
    return b"".join((_LENGTH.pack(size), kind, *parts))


class FrameReader:
    """Cuts a byte stream into ``(kind, payload)`` frames, whatever the chunking."""

    def __init__(self, *, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= 4:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if size < 1 or size > self.max_frame:
                raise FrameError(f"frame of {size} bytes (limit {self.max_frame})")
            if len(buffer) - offset - 4 < size:
                break
            start = offset + 4
            kind, payload = buffer[start : start + 1], buffer[start + 1 : start + size]
            frames.append((bytes(kind), bytes(payload)))
            offset = start + size
        del buffer[:offset]
        return frames


@dataclass(frozen=True, slots=True)
class Target:
    """Where one routing table's shadow copies go, and how they are judged."""

    generation: int
    revision: str
    host: str
    port: int
    timeout_seconds: float
    max_concurrency: int
    comparison: Comparison

    def encode(self) -> bytes:
        return frame(
            TARGET,
            orjson.dumps(
                {
                    "generation": self.generation,
                    "revision": self.revision,
                    "host": self.host,
                    "port": self.port,
                    "timeoutSeconds": self.timeout_seconds,
                    "maxConcurrency": self.max_concurrency,
                    "outputs": list(self.comparison.outputs),
                    "absTolerance": self.comparison.abs_tolerance,
                    "relTolerance": self.comparison.rel_tolerance,
                }
            ),
        )

    @classmethod
    def decode(cls, payload: bytes) -> Target:
        try:
            raw = orjson.loads(payload)
            return cls(
                generation=int(raw["generation"]),
                revision=str(raw["revision"]),
                host=str(raw["host"]),
                port=int(raw["port"]),
                timeout_seconds=float(raw["timeoutSeconds"]),
                max_concurrency=int(raw["maxConcurrency"]),
                comparison=Comparison(
                    outputs=tuple(str(o) for o in raw["outputs"]),
                    abs_tolerance=float(raw["absTolerance"]),
                    rel_tolerance=float(raw["relTolerance"]),
                ),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FrameError(f"bad target frame: {exc}") from None


@dataclass(frozen=True, slots=True)
class Copy:
    generation: int
    primary_revision: str
    request: bytes
    primary_body: bytes
    #: The prediction log's key for the shadow's answer; empty when nothing is logged.
    log_key: str = ""


def encode_copy(
    generation: int, primary_revision: bytes, request: bytes, body: bytes, log_key: bytes = b""
) -> bytes:
    """A ``C`` frame; built on the router's event loop for every copy, so kept to one join."""
    header = _COPY.pack(generation, len(primary_revision), len(log_key), len(request))
    return frame(COPY, header, primary_revision, log_key, request, body)


def decode_copy(payload: bytes) -> Copy:
    if len(payload) < _COPY.size:
        raise FrameError("copy frame too short")
    generation, name_length, key_length, request_length = _COPY.unpack_from(payload)
    start = _COPY.size
    key_at = start + name_length
    request_at = key_at + key_length
    if len(payload) < request_at + request_length:
        raise FrameError("copy frame shorter than its lengths")
    return Copy(
        generation,
        payload[start:key_at].decode(),
        payload[request_at : request_at + request_length],
        payload[request_at + request_length :],
        payload[key_at:request_at].decode("utf-8", "replace"),
    )


def encode_answers(answers: list[tuple[str, str, bytes]]) -> bytes:
    """A ``P`` frame: shadow answers ``(key, revision, encoded answer)``."""
    return frame(ANSWERS, orjson.dumps([[k, r, a.decode()] for k, r, a in answers]))


def decode_answers(payload: bytes) -> list[tuple[str, str, bytes]]:
    try:
        raw: Any = orjson.loads(payload)
        return [(str(k), str(r), str(a).encode()) for k, r, a in raw]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise FrameError(f"bad answers frame: {exc}") from None


class ShadowTotals:
    """Shadow results by (primary, shadow, result) and the difference histogram by
    (primary, shadow): kept by the worker, sent whole, added up by the router."""

    def __init__(self) -> None:
        self.counts: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.difference: defaultdict[tuple[str, str], FastHistogram] = defaultdict(
            lambda: FastHistogram(DIFFERENCE_BUCKETS)
        )
        self.inflight = 0
        #: Shadow answers for the prediction log dropped because the router was not taking
        #: them fast enough.
        self.answers_dropped = 0

    def add(self, other: ShadowTotals) -> None:
        self.answers_dropped += other.answers_dropped
        for key, value in other.counts.items():
            self.counts[key] += value
        for pair, hist in other.difference.items():
            mine = self.difference[pair]
            mine.counts = [a + b for a, b in zip(mine.counts, hist.counts, strict=True)]
            mine.total += hist.total

    def encode(self) -> bytes:
        return frame(
            SNAPSHOT,
            orjson.dumps(
                {
                    "counts": [[*key, value] for key, value in self.counts.items()],
                    "difference": [
                        [*pair, hist.counts, hist.total] for pair, hist in self.difference.items()
                    ],
                    "inflight": self.inflight,
                    "answersDropped": self.answers_dropped,
                }
            ),
        )

    @classmethod
    def decode(cls, payload: bytes) -> ShadowTotals:
        totals = cls()
        try:
            raw: Any = orjson.loads(payload)
            for primary, shadow, result, value in raw["counts"]:
                totals.counts[str(primary), str(shadow), str(result)] = int(value)
            for primary, shadow, counts, total in raw["difference"]:
                hist = totals.difference[str(primary), str(shadow)]
                if len(counts) != len(hist.counts):
                    raise ValueError("histogram buckets differ")
                hist.counts = [int(c) for c in counts]
                # JSON has no infinity: orjson writes an infinite sum (a NaN output) as null.
                hist.total = math.inf if total is None else float(total)
            totals.inflight = int(raw["inflight"])
            totals.answers_dropped = int(raw.get("answersDropped", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FrameError(f"bad snapshot frame: {exc}") from None
        return totals

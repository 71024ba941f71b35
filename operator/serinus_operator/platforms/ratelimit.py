"""Client-side pacing of API requests: a token bucket, and what a 429 asks for.

As client-go's ``--kube-api-qps``/``--kube-api-burst``: up to ``burst`` requests go at once,
then ``qps`` per second. A request that finds the bucket empty reserves the next token and
waits for it, so waiting requests are served in order at the steady rate instead of all
retrying together. Worked example, qps 10, burst 2, requests at t=0:

    request 1: tokens 2 -> 1, no wait
    request 2: tokens 1 -> 0, no wait
    request 3: tokens 0 -> -1, waits 0.1 s
    request 4: tokens -1 -> -2, waits 0.2 s
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The longest ``Retry-After`` honoured: an API server under load asks for seconds, and a
#: pass waiting longer than this is better retried by its loop (with its back-off).
MAX_RETRY_AFTER = 10.0


@dataclass
class TokenBucket:
    qps: float
    burst: int
    tokens: float = field(init=False)
    last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.qps <= 0 or self.burst < 1:
            raise ValueError(f"qps must be > 0 and burst >= 1, got {self.qps} and {self.burst}")
        self.tokens = float(self.burst)

    def reserve(self, now: float) -> float:
        """Take the next token at ``now``; the seconds to wait before using it."""
        if self.last is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
        self.last = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps


def retry_after(header: str | None) -> float:
    """Seconds a 429's ``Retry-After`` asks for (1 s when absent or not a number of
    seconds), at most :data:`MAX_RETRY_AFTER`."""
    try:
        seconds = float(header) if header is not None else 1.0
    except ValueError:
        seconds = 1.0
    if seconds != seconds or seconds < 0:  # NaN or negative
        seconds = 1.0
    return min(seconds, MAX_RETRY_AFTER)

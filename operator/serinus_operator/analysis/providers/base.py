"""The contract every metric provider keeps."""

from __future__ import annotations

from typing import Protocol

from serinus_operator.analysis.evaluate import QueryResult


class MetricProvider(Protocol):
    async def query(self, promql: str, *, deadline_seconds: float) -> QueryResult:
        """Evaluate an instant query; never raises for provider trouble, which comes back
        as ``QueryResult(error=...)`` so that it can only ever be Inconclusive."""
        ...

    async def is_online(self) -> bool:
        """Whether the provider answers at all (for status and the operator's metrics)."""
        ...

    async def aclose(self) -> None: ...

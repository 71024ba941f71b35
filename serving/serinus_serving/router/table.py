"""The routing table: which revisions exist, where they are, and who gets what.

It arrives as JSON (a file or a ConfigMap written by the operator's router provider) and
is validated whole: a table with any mistake is refused and the last good one kept.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import orjson


class TableError(ValueError):
    """The routing table is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class Backend:
    revision: str
    url: str
    host: str
    port: int
    weight: int
    version: str = ""


@dataclass(frozen=True, slots=True)
class Shadow:
    revision: str
    percent: float
    max_concurrency: int = 32
    max_body_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class Comparison:
    """Which outputs decide agreement, and how close two floats must be to agree.

    With no ``outputs`` given, discrete outputs (integers, booleans, strings: class labels)
    decide when the model has any; otherwise every output does, within the tolerances.
    """

    outputs: tuple[str, ...] = ()
    abs_tolerance: float = 1e-6
    rel_tolerance: float = 1e-6


@dataclass(frozen=True, slots=True)
class Stickiness:
    header: str | None = None
    cookie: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingTable:
    model: str
    backends: dict[str, Backend]
    shadow: Shadow | None = None
    stickiness: Stickiness | None = None
    comparison: Comparison = field(default_factory=Comparison)
    timeout_seconds: float = 30.0

    @property
    def weights(self) -> dict[str, int]:
        return {r: b.weight for r, b in self.backends.items()}


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TableError(f"{where} must be an object")
    return value


def _number(value: Any, where: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TableError(f"{where} must be a number")
    if not low <= value <= high:
        raise TableError(f"{where} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _backend(revision: str, raw: Any) -> Backend:
    where = f"revisions.{revision}"
    spec = _obj(raw, where)
    url = spec.get("url")
    if not isinstance(url, str):
        raise TableError(f"{where}.url must be a string such as http://10.0.0.5:8080")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise TableError(f"{where}.url must be an http:// URL with a host, got {url!r}")
    if parsed.path not in ("", "/") or parsed.query:
        raise TableError(f"{where}.url must not have a path or query, got {url!r}")
    weight = spec.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise TableError(f"{where}.weight must be an integer from 0 to 100, got {weight!r}")
    version = spec.get("version", "")
    if not isinstance(version, str):
        raise TableError(f"{where}.version must be a string")
    return Backend(revision, url, parsed.hostname, parsed.port or 80, weight, version)


def _shadow(raw: Any, backends: dict[str, Backend]) -> Shadow | None:
    if raw is None:
        return None
    spec = _obj(raw, "shadow")
    revision = spec.get("revision")
    if revision not in backends:
        raise TableError(f"shadow.revision {revision!r} is not one of the revisions")
    return Shadow(
        revision=str(revision),
        percent=_number(spec.get("percent", 100), "shadow.percent", low=0, high=100),
        max_concurrency=int(
            _number(spec.get("maxConcurrency", 32), "shadow.maxConcurrency", low=1, high=4096)
        ),
        max_body_bytes=int(
            _number(
                spec.get("maxBodyBytes", 1 << 20),
                "shadow.maxBodyBytes",
                low=0,
                high=1 << 30,
            )
        ),
    )


def _stickiness(raw: Any) -> Stickiness | None:
    if raw is None:
        return None
    spec = _obj(raw, "stickiness")
    header, cookie = spec.get("header"), spec.get("cookie")
    if (header is None) == (cookie is None):
        raise TableError("stickiness needs exactly one of header or cookie")
    for name, value in (("header", header), ("cookie", cookie)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TableError(f"stickiness.{name} must be a non-empty string")
    return Stickiness(header=header.lower() if header else None, cookie=cookie)


def _comparison(raw: Any) -> Comparison:
    if raw is None:
        return Comparison()
    spec = _obj(raw, "comparison")
    outputs = spec.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise TableError("comparison.outputs must be a list of output names")
    return Comparison(
        outputs=tuple(outputs),
        abs_tolerance=_number(
            spec.get("absTolerance", 1e-6), "comparison.absTolerance", low=0, high=1e300
        ),
        rel_tolerance=_number(
            spec.get("relTolerance", 1e-6), "comparison.relTolerance", low=0, high=1e300
        ),
    )


def _backends(raw: Any) -> dict[str, Backend]:
    revisions = _obj(raw, "revisions")
    if not revisions:
        raise TableError("revisions must list at least one revision")
    backends = {str(r): _backend(str(r), b) for r, b in revisions.items()}
    total = sum(b.weight for b in backends.values())
    if total != 100:
        raise TableError(f"revision weights must add up to 100, they add up to {total}")
    return backends


def parse_table(raw: bytes | str | dict[str, Any]) -> RoutingTable:
    """Validate a routing table; raises :class:`TableError` naming the first mistake."""
    if isinstance(raw, bytes | str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TableError(f"routing table is not valid JSON: {exc}") from None
    spec = _obj(raw, "routing table")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise TableError("model must be a non-empty string")
    backends = _backends(spec.get("revisions"))
    shadow = _shadow(spec.get("shadow"), backends)
    stickiness = _stickiness(spec.get("stickiness"))
    comparison = _comparison(spec.get("comparison"))
    timeout = _number(spec.get("timeoutSeconds", 30), "timeoutSeconds", low=0.001, high=3600)
    return RoutingTable(
        model=model,
        backends=backends,
        shadow=shadow,
        stickiness=stickiness,
        comparison=comparison,
        timeout_seconds=timeout,
    )

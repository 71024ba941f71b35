"""The router's prediction-log settings (``serinus router --prediction-log …``) and the
store they open. Redis is imported only when asked for: the in-process default needs no
client library."""

from __future__ import annotations

from dataclasses import dataclass

from serinus_serving.router.memory_log import MemoryLog
from serinus_serving.router.prediction_log import PredictionLog

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True, slots=True)
class PredictionLogSettings:
    """How the router remembers answers so that labels sent to any replica find them."""

    #: ``memory`` (this process: one replica), ``redis://HOST:PORT/DB`` (``rediss://`` for
    #: TLS; shared by every replica), or ``off`` (feedback goes to the backends as before).
    store: str = "memory"
    #: The request header holding a request's id; else the OIP ``id``, else one is made up
    #: and returned in this header.
    request_id_header: str = "x-request-id"
    #: How long an answer waits for its label.
    ttl_seconds: float = 3600.0
    #: The in-process store's byte budget (the oldest answers go first past it). Redis is
    #: bounded by its own ``maxmemory`` (docs/drift.md).
    max_bytes: int = 64 << 20
    #: Prefix of the Redis keys: distinct per namespace when one Redis serves several.
    prefix: str = "serinus:"


class SettingsError(ValueError):
    """A prediction-log setting that cannot work; the message names it."""


def open_log(settings: PredictionLogSettings) -> PredictionLog | None:
    """The store the settings name, None when the log is off."""
    if settings.ttl_seconds <= 0:
        raise SettingsError(f"--prediction-ttl must be above 0, got {settings.ttl_seconds}")
    if settings.store == "off":
        return None
    if settings.store == "memory":
        if settings.max_bytes < 1:
            raise SettingsError("--prediction-log-max-bytes must be at least 1")
        return MemoryLog(ttl=settings.ttl_seconds, max_bytes=settings.max_bytes)
    if settings.store.startswith(REDIS_SCHEMES):
        from serinus_serving.router.redis_log import RedisLog

        return RedisLog(settings.store, ttl=settings.ttl_seconds, prefix=settings.prefix)
    raise SettingsError(
        f"--prediction-log must be memory, off or redis://HOST:PORT/DB, got {settings.store!r}"
    )

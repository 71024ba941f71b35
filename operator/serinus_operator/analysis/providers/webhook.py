"""Webhook checks: POST a JSON payload, a 2xx answer passes. Never raises: a timeout, a
refused connection or a non-2xx answer is a failed check with a message saying which."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from serinus_operator.api import WebhookSpec, WebhookType
from serinus_operator.rollout.observed import WebhookResult

_BODY_SHOWN = 200


async def call_one(
    client: httpx.AsyncClient,
    hook: WebhookSpec,
    payload: Mapping[str, Any],
    *,
    revision: str,
    clock: Callable[[], datetime],
) -> WebhookResult:
    body = {**payload, "webhook": hook.name, "metadata": dict(hook.metadata)}
    seconds = hook.timeout.total_seconds()
    try:
        response = await client.post(hook.url, json=body, timeout=seconds)
    except httpx.TimeoutException:
        return WebhookResult(
            hook.type, hook.name, revision, False, clock(), f"no answer within {seconds:g}s"
        )
    except httpx.HTTPError as exc:
        return WebhookResult(
            hook.type,
            hook.name,
            revision,
            False,
            clock(),
            f"{type(exc).__name__}: {exc}"[:_BODY_SHOWN],
        )
    ok = 200 <= response.status_code < 300
    text = response.text.strip().replace("\n", " ")[:_BODY_SHOWN]
    message = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    return WebhookResult(hook.type, hook.name, revision, ok, clock(), message)


async def call_all(
    client: httpx.AsyncClient,
    kind: WebhookType,
    hooks: Sequence[WebhookSpec],
    payload: Mapping[str, Any],
    *,
    revision: str,
    clock: Callable[[], datetime],
) -> list[WebhookResult]:
    """Every hook of one call, concurrently."""
    del kind  # each hook carries its type
    return list(
        await asyncio.gather(
            *(call_one(client, h, payload, revision=revision, clock=clock) for h in hooks)
        )
    )

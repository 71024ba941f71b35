"""``kubectl serinus promote|abort|pause|resume|retry NAME``: a manual action.

Written to the ``serinus.dev/action`` annotation as ``<action>:<nonce>``, never to
``spec``, so GitOps tools that own the spec never fight it; the operator records what it
did with each nonce in ``status.lastAction``, which this waits for.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from serinus_operator.api import ACTION_ANNOTATION
from serinus_operator.kubectl.api import MODELDEPLOYMENTS, Resource
from serinus_operator.kubectl.errors import EXIT_IGNORED, EXIT_NOT_ACKNOWLEDGED, CliError

POLL_SECONDS = 0.5


class Store(Protocol):
    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]: ...

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...


def new_nonce() -> str:
    return f"{int(time.time())}-{secrets.token_hex(3)}"


def action_value(action: str, *, full: bool = False) -> str:
    """The action the annotation names: ``promote --full`` is ``promote-full``."""
    return "promote-full" if action == "promote" and full else action


async def request(
    store: Store,
    namespace: str,
    name: str,
    action: str,
    *,
    nonce: str,
    wait_seconds: float,
    say: Callable[[str], None] = print,
) -> None:
    """Write the request and wait up to ``wait_seconds`` (0: not at all) for the
    operator's answer; raises CliError unless it was applied."""
    value = f"{action}:{nonce}"
    await store.merge_patch(
        MODELDEPLOYMENTS,
        namespace,
        name,
        {"metadata": {"annotations": {ACTION_ANNOTATION: value}}},
    )
    say(f"requested {action} on {namespace}/{name} (nonce {nonce})")
    if wait_seconds <= 0:
        return
    last = await _answer(store, namespace, name, nonce, wait_seconds)
    if last is None:
        raise CliError(
            f"{MODELDEPLOYMENTS.kind} {name} in namespace {namespace} did not acknowledge "
            f"{value} within {wait_seconds:g}s: the operator may not be running, or not watching "
            f"namespace {namespace} (the request stays in the {ACTION_ANNOTATION} annotation)",
            EXIT_NOT_ACKNOWLEDGED,
        )
    message = str(last.get("message") or "")
    if last.get("result") != "Applied":
        reason = message or "no reason given"
        raise CliError(f"{action} ignored by the operator: {reason}", EXIT_IGNORED)
    say("Applied" + (f": {message}" if message else ""))


async def _answer(
    store: Store, namespace: str, name: str, nonce: str, wait_seconds: float
) -> Mapping[str, Any] | None:
    deadline = time.monotonic() + wait_seconds
    while True:
        obj = await store.get(MODELDEPLOYMENTS, namespace, name)
        last = (obj.get("status") or {}).get("lastAction") or {}
        if last.get("nonce") == nonce:
            return dict(last)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(POLL_SECONDS, left))

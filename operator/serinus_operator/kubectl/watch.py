"""``kubectl serinus status NAME -w``: the view redrawn on every change.

Two list-then-watch loops, as client-go's informers do it (and as ``kubectl argo rollouts
get rollout -w`` shows a Rollout): the ModelDeployment itself and its Events. A watch that
the API server ends is resumed from the last resourceVersion seen; a 410 Gone (that version
compacted away) lists again; an API server that stops answering is retried for a while.
The view is drawn again only when its text changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TextIO

from serinus_operator.kubectl.api import (
    EVENTS,
    MODELDEPLOYMENTS,
    Forbidden,
    Gone,
    Resource,
    Unreachable,
)
from serinus_operator.kubectl.errors import CliError

#: How long a live view waits for an API server that stopped answering before it gives up.
PATIENCE: Final = 30.0
CLEAR: Final = "\x1b[H\x1b[2J"

Obj = dict[str, Any]
Render = Callable[[Mapping[str, Any] | None, Sequence[Mapping[str, Any]], str | None], str]


class Source(Protocol):
    """What :func:`follow` needs of :class:`~serinus_operator.kubectl.api.Api`."""

    async def list(
        self, resource: Resource, namespace: str | None, *, field_selector: str | None = None
    ) -> tuple[list[Obj], str]: ...

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        field_selector: str | None = None,
    ) -> AsyncIterator[Obj]: ...


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


async def follow(
    source: Source,
    resource: Resource,
    namespace: str | None,
    *,
    field_selector: str | None = None,
    patience: float = PATIENCE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[list[Obj]]:
    """The matching objects now, then again after every change. The first list's errors
    are raised at once; later, an unreachable API server is retried for ``patience``."""
    current: dict[str, Obj] = {}
    version: str | None = None
    started = False
    failing_since: float | None = None
    while True:
        try:
            if version is None:
                items, version = await source.list(
                    resource, namespace, field_selector=field_selector
                )
                current = {_key(o): o for o in items}
                started, failing_since = True, None
                yield list(current.values())
            async for event in source.watch(
                resource, namespace, resource_version=version, field_selector=field_selector
            ):
                failing_since = None
                obj = event.get("object") or {}
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") == "DELETED":
                    current.pop(_key(obj), None)
                elif event.get("type") in ("ADDED", "MODIFIED"):
                    current[_key(obj)] = obj
                else:
                    continue  # BOOKMARK: only a newer resourceVersion
                yield list(current.values())
        except Gone:
            version = None  # list again
        except Unreachable:
            if not started:
                raise
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > patience:
                raise
            await sleep(1.0)


async def _pump(tag: str, snapshots: AsyncIterator[list[Obj]], queue: asyncio.Queue[Any]) -> None:
    try:
        async for snapshot in snapshots:
            await queue.put((tag, snapshot, None))
    except CliError as exc:
        await queue.put((tag, None, exc))


def draw(out: TextIO, text: str, *, tty: bool, first: bool) -> None:
    """Clear the terminal and draw; into a pipe or file, a blank line between views."""
    if tty:
        out.write(CLEAR + text + "\n")
    else:
        out.write(("" if first else "\n") + text + "\n")
    out.flush()


async def watch_status(
    source: Source, namespace: str, name: str, render: Render, out: TextIO
) -> int:
    """Draw the view, then again on every change, until cancelled (Ctrl-C)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    events_selector = f"involvedObject.kind={MODELDEPLOYMENTS.kind},involvedObject.name={name}"
    tasks = [
        asyncio.create_task(
            _pump(
                "md",
                follow(source, MODELDEPLOYMENTS, namespace, field_selector=f"metadata.name={name}"),
                queue,
            )
        ),
        asyncio.create_task(
            _pump(
                "events", follow(source, EVENTS, namespace, field_selector=events_selector), queue
            )
        ),
    ]
    try:
        await _redraw(queue, namespace, name, render, out)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0


async def _redraw(
    queue: asyncio.Queue[Any], namespace: str, name: str, render: Render, out: TextIO
) -> None:
    obj: Mapping[str, Any] | None = None
    events: Sequence[Mapping[str, Any]] = ()
    note: str | None = None
    seen: set[str] = set()
    shown: str | None = None
    tty = out.isatty()
    while True:
        tag, snapshot, error = await queue.get()
        if tag == "events" and isinstance(error, Forbidden):
            note = f"not shown ({error})"  # the view works without them
        elif error is not None:
            raise error
        elif tag == "events":
            events = snapshot
        elif snapshot:
            obj = snapshot[0]
        elif "md" not in seen:
            raise CliError(f"no {MODELDEPLOYMENTS.kind} {name} in namespace {namespace}")
        else:
            obj = None
        seen.add(tag)
        if seen != {"md", "events"}:
            continue  # the first view waits for both lists
        text = render(obj, events, note)
        if text != shown:
            draw(out, text, tty=tty, first=shown is None)
            shown = text

"""Waiting on a ``serinus local up`` run (demo/serinus_demo/localup.py ``LocalUp``) from a
test: its status polled until a condition holds, failing at once, with the reason, when
the run died or the ModelDeployment is Degraded (an alias not resolved, say)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class Run(Protocol):
    def check_running(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


def wait_status(
    run: Run,
    done: Callable[[dict[str, Any]], bool],
    what: str,
    *,
    timeout: float = 60.0,
    seen: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run.check_running()
        status = run.status()
        seen(status)
        if done(status):
            return status
        assert status.get("phase") != "Degraded", f"{what}: {status.get('message')}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; status: {status}")
        time.sleep(0.1)

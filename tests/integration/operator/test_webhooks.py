"""Webhooks called by the real operator: a real HTTP server on 127.0.0.1 plays the hooks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from serinus_operator.analysis.providers.webhook import call_one
from serinus_operator.api import WebhookSpec, WebhookType
from support.cluster import Cluster, md, wait_for

pytestmark = pytest.mark.integration


class Hooks:
    """Answers each path with the status the test sets; records every payload."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.calls.append((self.path, body))
                code = hooks.status.get(self.path, 200)
                if code == 0:  # play a hook that hangs past its timeout
                    threading.Event().wait(3)
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if code >= 300 else b"ok")

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    try:
        yield h
    finally:
        h.server.shutdown()


def test_call_one_reports_each_way_a_hook_can_fail(hooks: Hooks) -> None:
    def clock() -> datetime:
        return datetime.now(UTC)

    def pre(path: str, timeout: float = 10) -> WebhookSpec:
        return WebhookSpec("h", WebhookType.PRE_ROLLOUT, path, timedelta(seconds=timeout))

    async def run() -> list[tuple[bool, str]]:
        async with httpx.AsyncClient() as client:
            return [
                (r.ok, r.message)
                for r in [
                    await call_one(client, hook, {"x": 1}, revision="r1", clock=clock)
                    for hook in (
                        pre(hooks.url + "/ok"),
                        pre(hooks.url + "/no"),
                        pre(hooks.url + "/slow", 0.5),
                        pre("http://127.0.0.1:9/"),
                    )
                ]
            ]

    hooks.status |= {"/ok": 204, "/no": 503, "/slow": 0}
    ok, no, slow, dead = asyncio.run(run())
    assert ok == (True, "HTTP 204")  # a 204 has no body
    assert no == (False, "HTTP 503: no")
    assert not slow[0] and "no answer within 0.5s" in slow[1]
    assert not dead[0] and "Connect" in dead[1]
    assert hooks.calls[0][1] == {"x": 1, "webhook": "h", "metadata": {}}


def manifest(version: str, url: str) -> dict[str, Any]:
    return md(
        version,
        replicas=1,
        strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 40}]}},
        webhooks=[
            {
                "name": "load-test",
                "type": "PreRollout",
                "url": f"{url}/pre",
                "metadata": {"suite": "smoke"},
            },
            {"name": "window", "type": "ConfirmPromotion", "url": f"{url}/confirm"},
            {"name": "chatops", "type": "PostRollout", "url": f"{url}/post"},
        ],
    )


def test_operator_gates_a_rollout_on_its_webhooks(cluster: Cluster, hooks: Hooks) -> None:
    hooks.status |= {"/pre": 200, "/confirm": 409}
    cluster.operator.start()
    cluster.apply(manifest("v1", hooks.url))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1 stable")
    assert hooks.calls == [], "the first revision is no rollout: no hooks"
    cluster.apply(manifest("v2", hooks.url))
    # PreRollout passes, the canary takes 40%, then waits for the change window.
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 40, what="40%")
    v2 = s["candidate"]["revision"]
    pre = [body for path, body in hooks.calls if path == "/pre"]
    assert pre and pre[0]["type"] == "PreRollout" and pre[0]["name"] == "fraud"
    assert pre[0]["namespace"] == cluster.namespace and pre[0]["candidate"]["revision"] == v2
    assert pre[0]["metadata"] == {"suite": "smoke"}
    assert pre[0]["weights"]["candidate"] == 0, "PreRollout is asked before any traffic"
    wait_for(lambda: "/confirm" in hooks.paths(), what="ConfirmPromotion asked")
    assert cluster.status("fraud")["candidate"]["revision"] == v2, "promoted unconfirmed"
    cluster.wait_events("fraud", "AwaitingConfirmation")
    hooks.status["/confirm"] = 200
    s = cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["revision"] == v2,
        timeout=40,  # asked again at the 10 s pace
        what="promoted once confirmed",
    )
    post = wait_for(lambda: [b for p, b in hooks.calls if p == "/post"], what="PostRollout told")
    assert post[0]["outcome"]["result"] == "Promoted"
    assert post[0]["candidate"]["revision"] == v2

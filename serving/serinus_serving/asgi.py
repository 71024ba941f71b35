"""Between the model server's whole-request handler and ASGI, in both directions.

``serinus serve`` runs on the HTTP/1.1 layer of ``http1``, which hands over whole requests.
The documented API surface that is not on the hot path (metadata, feedback, the OpenAPI
document) is a FastAPI app, called through :func:`call_asgi`. The other way round,
:func:`asgi_entry` makes the whole handler an ASGI app again, so in-process tests (and any
ASGI server) reach exactly the code a real server runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from serinus_serving.errors import InferenceError, PayloadTooLarge
from serinus_serving.http1 import Handler, Request, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What the HTTP layer writes itself; an ASGI app's own values are dropped.
_SERVER_HEADERS = frozenset({b"content-length", b"connection", b"transfer-encoding"})


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def read_body(receive: Receive, limit: int, content_length: bytes | None = None) -> bytes:
    """Read the whole request body, refusing (413) as soon as it exceeds ``limit``."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InferenceError("client disconnected before sending the whole body", 400)
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def call_asgi(app: ASGIApp, request: Request) -> Response:
    """Run ``app`` on a whole request and collect its whole response."""
    path, _, query = request.target.partition(b"?")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.decode("latin-1"),
        "scheme": "http",
        "path": request.path,
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": request.headers,
        "client": None,
        "server": None,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    status = 500
    headers: list[tuple[bytes, bytes]] = []
    body: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            head = request.method == b"HEAD"
            headers = [
                (n.lower(), v)
                for n, v in message.get("headers", [])
                if n.lower() not in _SERVER_HEADERS or (head and n.lower() == b"content-length")
            ]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return Response(status, headers, b"".join(body))


def asgi_entry(handler: Handler, *, max_body: int, lifespan: ASGIApp) -> ASGIApp:
    """An ASGI app that buffers each request (up to ``max_body``) and answers it with
    ``handler``; lifespan events go to ``lifespan``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(scope, receive, send)
            return
        length = next((v for n, v in scope["headers"] if n == b"content-length"), None)
        try:
            body = await read_body(receive, max_body, length)
        except InferenceError as exc:
            json = [(b"content-type", b"application/json")]
            response = Response(exc.status, json, error_body(exc.message))
        else:
            target = scope.get("raw_path") or scope["path"].encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            request = Request(
                scope["method"].encode(), target, scope["path"], list(scope["headers"]), body
            )
            response = await handler(request)
        await _send_whole(send, response, head=scope["method"] == "HEAD")

    return app


async def _send_whole(send: Send, response: Response, *, head: bool) -> None:
    headers = list(response.headers)
    if not head or not any(n == b"content-length" for n, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})
    if response.after is not None:
        response.after()

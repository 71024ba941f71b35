"""Raw ASGI pieces of the inference fast path: route matching, body reading, responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from serinus_serving.codec import HEADER_LENGTH
from serinus_serving.errors import InferenceError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
ALLOW_POST = [*JSON_HEADERS, (b"allow", b"POST")]
HEADER_LENGTH_KEY = HEADER_LENGTH.encode()


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def send_response(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def match_infer(path: str) -> tuple[str, str, str | None] | None:
    """``(protocol, model, version)`` for an inference path, else None."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[11:-6].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2", parts[0], None
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return "v2", parts[0], parts[2]
        return None
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        model = path[11:-8]
        if model and "/" not in model:
            return "v1", model, None
    return None


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


def header_length_value(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise InferenceError("Inference-Header-Content-Length must be a non-negative integer")
    return int(raw)

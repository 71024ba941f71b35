"""A fake Kubernetes API on 127.0.0.1 for tests of the router's ConfigMap source.

:class:`FakeKubeApi` runs kmock's ``KubernetesEmulator`` (by kopf's author) on a real HTTP
port in a background thread with its own event loop, behind a small TCP proxy that the
tests can take down and bring back to play an API server outage.

What kmock (0.8) does, as the router's source relies on it:

- GET of a named object (404 with a ``Status`` body when absent), POST (create), PATCH (a
  recursive merge: ``None`` removes a key, as a JSON merge patch does) and DELETE.
- ``?watch=true`` streams newline-delimited JSON events over a chunked response: first an
  ADDED for every existing object, then ADDED/MODIFIED/DELETED as they happen over HTTP
  (changes made through ``kmock.objects`` in Python are *not* streamed, so this helper
  changes the object over HTTP only).

What it lacks, and how this helper makes up for it:

- **resourceVersion**: kmock neither sets nor checks it (lists carry ``"..."``). The
  helper writes ``metadata.resourceVersion`` itself, a counter bumped on every change, so
  the GET → watch-from-RV path is exercised with real values. kmock ignores the watch's
  ``resourceVersion`` and replays the current object as ADDED, which the source tolerates
  (it ignores a table it already has).
- **fieldSelector**: ignored; the watch carries every ConfigMap of the namespace. The
  source filters events by name itself (tested with a second ConfigMap).
- **410 Gone, ERROR events, BOOKMARKs, server-side ``timeoutSeconds``**: never sent; the
  re-list paths are covered by unit tests of the event handling instead.
- **Stopping**: kmock's server cannot shut down while a watch is open (its watch handler
  waits on its event bus forever, and aiohttp does not cancel it when the client leaves), so
  the outage is played by the proxy: :meth:`down` closes its listener and every connection
  through it (the router sees its stream break and connections refused), :meth:`up`
  listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import kmock

T = TypeVar("T")


class _Proxy:
    """Forward TCP connections from a fixed loopback port to ``upstream``."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


class FakeKubeApi:
    """kmock's Kubernetes emulator on a loopback port, with ConfigMap helpers."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.emulator = kmock.KubernetesEmulator()
        self._server = kmock.Server(self.emulator)
        self._versions = 0
        self._run(self.emulator.__aenter__())
        self._run(self._server.__aenter__())
        self._proxy = _Proxy(self._server.port)
        self._run(self._proxy.start())
        self.direct = httpx.Client(base_url=f"http://127.0.0.1:{self._server.port}", timeout=5)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        """The API's base URL as clients should use it (through the proxy)."""
        return f"http://127.0.0.1:{self._proxy.port}"

    # ------------------------------------------------------------------ outage
    def down(self) -> None:
        self._run(self._proxy.stop())

    def up(self) -> None:
        self._run(self._proxy.start())

    # ------------------------------------------------------------------ ConfigMaps
    def _next_version(self) -> str:
        self._versions += 1
        return str(self._versions)

    def create(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": self._next_version(),
            },
            "data": data,
        }
        response = self.direct.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body)
        response.raise_for_status()

    def patch(self, namespace: str, name: str, data: dict[str, str | None]) -> None:
        """A JSON merge patch of ``data`` (``None`` removes a key)."""
        body = {"metadata": {"resourceVersion": self._next_version()}, "data": data}
        response = self.direct.patch(
            f"/api/v1/namespaces/{namespace}/configmaps/{name}",
            json=body,
            headers={"content-type": "application/merge-patch+json"},
        )
        response.raise_for_status()

    def delete(self, namespace: str, name: str) -> None:
        self.direct.delete(f"/api/v1/namespaces/{namespace}/configmaps/{name}").raise_for_status()

    def authorizations(self) -> list[str]:
        """The Authorization headers of the requests so far, in order."""
        return [
            next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
            for request in list(self.emulator)
        ]

    async def _shutdown(self) -> None:
        await self._proxy.stop()
        # kmock's server cannot stop while a watch is open (see above): give it a moment,
        # then cancel whatever is left
        for leave in (self._server.__aexit__, self.emulator.__aexit__):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(leave(None, None, None), 1)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self.direct.close()
        with contextlib.suppress(Exception):
            self._run(self._shutdown(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

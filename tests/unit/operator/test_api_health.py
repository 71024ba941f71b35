"""Recovery after an API outage: the client notices the API answer again and wakes loops.

A real HTTP server on 127.0.0.1 plays the API server's availability (``/readyz`` and one
path); it is stopped and started again on the same port, as an API server restarts. What
it serves is beside the point: the end-to-end measurement against a real kube-apiserver
is in tests/integration/kube.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from serinus_operator.handlers import _sleep
from serinus_operator.platforms.health import ApiHealth
from serinus_operator.platforms.kubernetes import ApiUnreachable, Credentials, KubeClient

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def serve(port: int) -> web.AppRunner:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def thing(_: web.Request) -> web.Response:
        return web.json_response({"kind": "Thing"})

    app = web.Application()
    app.router.add_get("/readyz", ok)
    app.router.add_get("/thing", thing)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


def test_a_loop_waiting_out_an_outage_wakes_when_the_api_answers_again() -> None:
    async def scenario() -> None:
        port = free_port()
        client = KubeClient(Credentials(server=f"http://127.0.0.1:{port}"))
        health = client.health
        with pytest.raises(ApiUnreachable):
            await client.get("/thing")  # nothing listens yet: an outage
        assert not health.up
        waker = asyncio.Event()
        sleeper = asyncio.create_task(_sleep(waker, health, 600.0))  # a long back-off
        await asyncio.sleep(1.0)
        assert not sleeper.done()  # still down: no hot loop, no early wake
        runner = await serve(port)
        try:
            await asyncio.wait_for(sleeper, timeout=30)  # woken by the prober, not the 600 s
            assert health.up
            assert health.recoveries == 1
            assert await client.get("/thing") == {"kind": "Thing"}
        finally:
            await runner.cleanup()
            await client.aclose()

    asyncio.run(scenario())


def test_any_answer_marks_the_api_up_and_a_5xx_marks_it_down() -> None:
    async def scenario() -> None:
        probes: list[int] = []

        async def probe() -> bool:
            probes.append(1)
            return False

        health = ApiHealth(probe, probe_interval=0.01)
        health.failed()
        assert not health.up
        await asyncio.sleep(0.1)
        assert probes  # it probes while down
        health.succeeded()  # e.g. another loop's request got a 404
        assert health.up and health.recoveries == 1
        seen = len(probes)
        await asyncio.sleep(0.1)
        assert len(probes) <= seen + 1  # and stops probing once up
        health.succeeded()
        assert health.recoveries == 1  # being up is not a recovery
        await health.aclose()

    asyncio.run(scenario())


def test_a_sleep_with_the_api_up_waits_for_its_delay_or_the_waker() -> None:
    async def scenario() -> None:
        health, waker = ApiHealth(), asyncio.Event()
        sleeper = asyncio.create_task(_sleep(waker, health, 600.0))
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        waker.set()
        await asyncio.wait_for(sleeper, timeout=30)

    asyncio.run(scenario())

"""The operator's HTTP client, measured: client CPU per Kubernetes API request with httpx
(as ``KubeClient`` configures it) and with aiohttp (which kopf uses), against the real
kube-apiserver, in one run.

Each round sends the same requests with each client — GETs of one ConfigMap and
server-side applies of another, ``--concurrency`` at a time over TLS with a client
certificate — and measures the client process's CPU time (``time.process_time``) and the
wall time. Rounds alternate the order of the clients; medians are reported, with the
ratio aiohttp ÷ httpx. Part of ``make bench-operator``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from serinus_operator.platforms.kube_http import Credentials, tls_context  # noqa: E402
from support.real_cluster import RealCluster, build_binaries  # noqa: E402

NS = "default"
GET = f"/api/v1/namespaces/{NS}/configmaps/read-me"
APPLY = f"/api/v1/namespaces/{NS}/configmaps/write-me"


def config_map(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"k": value},
    }


Send = Callable[[int], Awaitable[None]]


async def with_httpx(credentials: Credentials, concurrency: int, count: int) -> tuple[float, float]:
    async with httpx.AsyncClient(
        base_url=credentials.server,
        verify=tls_context(credentials),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    ) as client:

        async def send(i: int) -> None:
            if i % 2:
                r = await client.get(GET, headers={"accept": "application/json"})
            else:
                r = await client.patch(
                    APPLY,
                    params={"fieldManager": "bench", "force": "true"},
                    content=json.dumps(config_map("write-me", str(i))).encode(),
                    headers={"content-type": "application/apply-patch+yaml"},
                )
            r.raise_for_status()
            r.json()

        return await measure(send, concurrency, count)


async def with_aiohttp(
    credentials: Credentials, concurrency: int, count: int
) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=tls_context(credentials))
    async with aiohttp.ClientSession(credentials.server, connector=connector) as client:

        async def send(i: int) -> None:
            if i % 2:
                async with client.get(GET, headers={"accept": "application/json"}) as r:
                    r.raise_for_status()
                    await r.json()
            else:
                async with client.patch(
                    APPLY,
                    params={"fieldManager": "bench", "force": "true"},
                    data=json.dumps(config_map("write-me", str(i))).encode(),
                    headers={"content-type": "application/apply-patch+yaml"},
                ) as r:
                    r.raise_for_status()
                    await r.json()

        return await measure(send, concurrency, count)


async def measure(send: Send, concurrency: int, count: int) -> tuple[float, float]:
    """(client CPU ms per request, requests per second of wall time)."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await send(i)

    await asyncio.gather(*(send(i) for i in range(concurrency)))  # connections up: not measured
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return 1000 * (time.process_time() - cpu) / count, count / (time.perf_counter() - wall)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    build_binaries()
    with RealCluster() as cluster:
        with cluster.client() as admin:
            admin.post(
                f"/api/v1/namespaces/{NS}/configmaps", json=config_map("read-me", "x")
            ).raise_for_status()
        d = cluster.dir
        credentials = Credentials(
            server=cluster.server,
            ca_path=str(cluster.ca_path),
            cert_path=str(d / "admin.crt"),
            key_path=str(d / "admin.key"),
        )
        clients = {"httpx": with_httpx, "aiohttp": with_aiohttp}
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in clients}
        for round_ in range(args.rounds):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
            for name in order:
                results[name].append(
                    asyncio.run(clients[name](credentials, args.concurrency, args.requests))
                )
    print("| client | client CPU per request (ms) | requests/s |")
    print("| --- | ---: | ---: |")
    medians = {}
    for name, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        medians[name] = (cpu, rate)
        print(f"| {name} | {cpu:.3f} | {rate:,.0f} |")
    a, h = medians["aiohttp"], medians["httpx"]
    print(f"\naiohttp ÷ httpx: CPU per request {a[0] / h[0]:.2f}x, requests/s {a[1] / h[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`, router part 2: what a 100% shadow does to the primary's latency at a fixed
request rate.

wrk drives a closed loop as fast as it can, so on a two-core machine a 100% shadow simply
doubles the backends' work and the comparison measures saturation, not the router. Here
the load is open-loop at a fixed rate well below saturation (``BENCH_SHADOW_RPS``, default
400/s): each request is due at ``t0 + i / rate`` and its latency is counted from when it was
due, so a stall anywhere shows (no coordinated omission). The router runs with and without
a 100% shadow copy to a second backend, interleaved per round; reported: p50/p99/p99.9 of
the primary's answers and the p99 ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b
import router_bench as rb

RATE = b.env_int("BENCH_SHADOW_RPS", 400)
SECONDS = b.env_int("BENCH_SHADOW_SECONDS", 10)
ROUNDS = b.env_int("BENCH_ROUNDS", 3)
CONNECTIONS = 32


async def open_loop(url: str, body: bytes, *, rate: int, seconds: int) -> list[float]:
    """Latencies in ms from each request's due time; raises on any non-200."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=10, trust_env=False) as client:
        for _ in range(50):  # warm the pool
            await client.post(url, content=body, headers=headers)

        async def one(due: float) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise b.BenchError(f"{url} answered {response.status_code}")
            latencies.append((time.perf_counter() - due) * 1000)

        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(one(t0 + i / rate) for i in range(rate * seconds)))
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    # The load generator shares the backends' core (idle at this rate), not the router's.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {int(os.environ.get("BENCH_SHADOW_LOAD_CPU", b.SERVER_CPU))})
    b.LOGS.mkdir(parents=True, exist_ok=True)
    b.build_model()
    body = (b.MODEL_DIR / "request.json").read_bytes()
    floor_a = b.ServerSpec("floor", "bare ASGI app", b._floor, lambda: None)
    floor_b = b.ServerSpec("floor-b", "bare ASGI app (shadow)", b._floor, lambda: None)
    runs: dict[str, list[dict[str, float]]] = {"router": [], "router+shadow": []}
    try:
        with b.started(floor_a, "shadow-a") as back_a, b.started(floor_b, "shadow-b") as back_b:
            back_a.wait_ready()
            back_b.wait_ready()
            for round_no in range(1, ROUNDS + 1):
                order = ["router", "router+shadow"]
                if round_no % 2 == 0:
                    order.reverse()
                for name in order:
                    spec = rb.router_spec(back_a.port, back_b.port, mirror=name != "router")
                    with b.started(spec, f"shadow-r{round_no}-{name.replace('+', '-')}") as r:
                        r.wait_ready()
                        lat = asyncio.run(
                            open_loop(r.base_url + b.infer_path(), body, rate=RATE, seconds=SECONDS)
                        )
                    runs[name].append(
                        {
                            "p50": quantile(lat, 0.5),
                            "p99": quantile(lat, 0.99),
                            "p999": quantile(lat, 0.999),
                            "requests": float(len(lat)),
                        }
                    )
                    b.log(f"shadow bench round {round_no} {name}: {runs[name][-1]}")
    finally:
        b.Running.stop_all()
    print(report(runs))
    return 0


def report(runs: dict[str, list[dict[str, float]]]) -> str:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    lines = [
        f"### 100% shadow at a fixed rate ({RATE} requests/s, open loop, {ROUNDS} rounds x "
        f"{SECONDS} s)",
        "",
        "| router | p50 (ms) | p99 (ms) | p99.9 (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in runs:
        lines.append(
            f"| {name} | {med(name, 'p50'):.3f} | {med(name, 'p99'):.3f} | "
            f"{med(name, 'p999'):.3f} |"
        )
    per_round = [
        s["p99"] / p["p99"] for p, s in zip(runs["router"], runs["router+shadow"], strict=True)
    ]
    rise = med("router+shadow", "p99") / med("router", "p99") - 1
    lines += [
        "",
        f"- the primary's p99 with a 100% shadow: {rise:+.0%} (goal: under +10%); per round "
        + ", ".join(f"{x - 1:+.0%}" for x in per_round),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

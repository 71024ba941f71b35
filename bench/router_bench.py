"""`make bench`, second part: the router against direct calls and against nginx.

Backends: two copies of the bare ASGI floor app (the same ONNX model) on the server core.
Proxies (nginx with ``split_clients`` and keep-alive upstreams, or ``serinus router``) run
on the client core beside wrk, all sharing it alike, so the proxies are compared under the
same conditions. Configurations, interleaved per round:

- direct: wrk → backend a
- nginx: wrk → nginx (100% a) → backend a
- router: wrk → serinus router (100% a) → backend a
- router+shadow: the same with a 100% shadow copy to backend b

Reported: the p50 each proxy adds at concurrency 1, requests/s at concurrency 16 (router
÷ nginx), and what a 100% shadow does to the primary's p99.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b  # the serve bench's process and wrk plumbing

CONFIGS = ("direct", "nginx", "router", "router+shadow")
NGINX_CONF = """
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  upstream rev_a {{ server 127.0.0.1:{a}; keepalive 64; }}
  upstream rev_b {{ server 127.0.0.1:{b}; keepalive 64; }}
  split_clients "$request_id" $revision {{ 100% rev_a; * rev_b; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://$revision;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def _on_client_core(argv: list[str]) -> list[str]:
    # Running pins to the server core; an inner taskset moves the proxy to the client core.
    return ["taskset", "-c", b.CLIENT_CPU, *argv]


def nginx_spec(a: int, shadow: int) -> b.ServerSpec:
    def build(port: int, workdir: Path) -> b.Launch:
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workdir=workdir, a=a, b=shadow, port=port))
        argv = ["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
        return b.Launch(_on_client_core(argv))

    def unavailable() -> str | None:
        return (
            None
            if shutil.which("nginx")
            else "nginx is not installed (apt-get install nginx-light)"
        )

    return b.ServerSpec(
        "nginx", "nginx 1 worker, split_clients, keepalive upstreams", build, unavailable
    )


def router_spec(a: int, shadow: int, *, mirror: bool) -> b.ServerSpec:
    def build(port: int, workdir: Path) -> b.Launch:
        table: dict[str, Any] = {
            "model": b.model_name(),
            "revisions": {
                "a": {"url": f"http://127.0.0.1:{a}", "weight": 100},
                "b": {"url": f"http://127.0.0.1:{shadow}", "weight": 0},
            },
        }
        if mirror:
            table["shadow"] = {"revision": "b", "percent": 100, "maxConcurrency": 64}
        routes = workdir / "routes.json"
        routes.write_text(json.dumps(table))
        argv = [str(b.SERINUS), "router", "--routes", str(routes), "--host", b.HOST,
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
        return b.Launch(_on_client_core(argv))

    name = "router+shadow" if mirror else "router"
    return b.ServerSpec(name, f"serinus {name}", build, lambda: None)


def measure(running: b.Running, tag: str, seconds: int) -> dict[int, dict[str, Any]]:
    b.check_response(running)
    b.run_wrk(running, 16, 1, f"{tag}-warmup")
    return {c: b.run_wrk(running, c, seconds, f"{tag}-c{c}") for c in b.CONCURRENCIES}


def main() -> int:
    rounds = b.env_int("BENCH_ROUNDS", 3)
    seconds = b.env_int("BENCH_SECONDS", 5)
    b.LOGS.mkdir(parents=True, exist_ok=True)
    b.build_model()
    floor = b.ServerSpec("floor", "bare ASGI app", b._floor, lambda: None)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {c: [] for c in b.CONCURRENCIES} for name in CONFIGS
    }
    skipped: dict[str, str] = {}
    try:
        with (
            b.started(floor, "router-backend-a") as back_a,
            b.started(
                b.ServerSpec("floor-b", "bare ASGI app (shadow)", b._floor, lambda: None),
                "router-backend-b",
            ) as back_b,
        ):
            back_a.wait_ready()
            back_b.wait_ready()
            specs = {
                "nginx": nginx_spec(back_a.port, back_b.port),
                "router": router_spec(back_a.port, back_b.port, mirror=False),
                "router+shadow": router_spec(back_a.port, back_b.port, mirror=True),
            }
            for name, spec in specs.items():
                reason = spec.unavailable()
                if reason:
                    skipped[name] = reason
                    b.log(f"router bench: skipping {name}: {reason}")
            for round_no in range(1, rounds + 1):
                order = CONFIGS[round_no % len(CONFIGS) :] + CONFIGS[: round_no % len(CONFIGS)]
                for name in order:
                    tag = f"router-r{round_no}-{name.replace('+', '-')}"
                    if name == "direct":
                        results = measure(back_a, tag, seconds)
                    elif name in skipped:
                        continue
                    else:
                        with b.started(specs[name], tag) as proxy:
                            proxy.wait_ready()
                            results = measure(proxy, tag, seconds)
                    for c, result in results.items():
                        runs[name][c].append(result)
                        b.log(
                            f"  round {round_no}/{rounds} {name:14} c={c:<3} "
                            f"{result['rps']:9,.0f} req/s  p50 {result['p50_us'] / 1000:6.3f} ms"
                            f"  p99 {result['p99_us'] / 1000:6.3f} ms"
                        )
    finally:
        b.Running.stop_all()
    summary = {
        name: {
            c: {
                "rps": statistics.median(r["rps"] for r in results),
                "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000,
            }
            for c, results in by_c.items()
            if results
        }
        for name, by_c in runs.items()
        if any(by_c.values())
    }
    print(report(summary, rounds=rounds, seconds=seconds, skipped=skipped))
    (b.OUT / "router-results.json").write_text(
        json.dumps({"summary": summary, "runs": runs}, indent=1)
    )
    return 0


def report(summary: dict[str, Any], *, rounds: int, seconds: int, skipped: dict[str, str]) -> str:
    lines = [
        f"Router: medians of {rounds} interleaved rounds of {seconds} s; backends on core "
        f"{b.SERVER_CPU}, proxy and wrk on core {b.CLIENT_CPU}.",
        "",
        "| path | c | req/s | p50 (ms) | p99 (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, by_c in summary.items():
        for c, m in by_c.items():
            lines.append(
                f"| {name} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} |"
            )
    direct = summary.get("direct", {})
    lines.append("")
    for name in ("nginx", "router"):
        if name in summary and direct:
            added = summary[name][1]["p50_ms"] - direct[1]["p50_ms"]
            lines.append(f"- {name} adds {added:.3f} ms to the p50 at concurrency 1")
    if "nginx" in summary and "router" in summary:
        ratio = summary["router"][16]["rps"] / summary["nginx"][16]["rps"]
        lines.append(f"- router ÷ nginx requests/s at concurrency 16: {ratio:.2f}x")
    if "router" in summary and "router+shadow" in summary:
        for c in b.CONCURRENCIES:
            rise = summary["router+shadow"][c]["p99_ms"] / summary["router"][c]["p99_ms"] - 1
            lines.append(
                f"- a 100% shadow changes the primary's p99 at concurrency {c} by {rise:+.0%}"
            )
    for name, reason in skipped.items():
        lines.append(f"- {name} skipped: {reason}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

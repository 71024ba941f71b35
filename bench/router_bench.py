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
÷ nginx, also per round: the two run within a minute), and what a 100% shadow does
to the primary's p99. On a shared machine requests/s move with whatever else runs, so each
run also records the proxy's CPU time per request (nginx runs as one process, so that its
CPU time is the worker's) and how much of each bench core other processes took.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b  # the serve bench's process and wrk plumbing

CONFIGS = ("direct", "nginx", "router", "router+shadow")
NGINX_CONF = """
master_process off;
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


def measure_once(
    running: b.Running, tag: str, c: int, seconds: int, *, backends: list[b.Running]
) -> dict[str, Any]:
    """One wrk run, plus what run_wrk cannot know here: the proxy runs on the client core
    beside wrk, and the backends on the server core."""
    backend_before = sum(x.cpu_seconds() for x in backends)
    cores_before = b._core_busy_seconds()
    started = time.monotonic()
    result = b.run_wrk(running, c, seconds, tag)
    wall = time.monotonic() - started
    cores = b._core_busy_seconds()
    busy_server = (cores.get(b.SERVER_CPU, 0.0) - cores_before.get(b.SERVER_CPU, 0.0)) / wall
    busy_client = (cores.get(b.CLIENT_CPU, 0.0) - cores_before.get(b.CLIENT_CPU, 0.0)) / wall
    backend_util = (sum(x.cpu_seconds() for x in backends) - backend_before) / wall
    proxy_util = 0.0 if running in backends else result["server_cpu_util"]
    result["backend_cpu_util"] = round(backend_util, 3)
    result["proxy_cpu_util"] = round(proxy_util, 3)
    if proxy_util:
        result["proxy_cpu_us_per_request"] = round(proxy_util / result["rps"] * 1e6, 2)
    other_server = busy_server - backend_util
    other_client = busy_client - result["client_cpu_util"] - proxy_util
    result["other_on_server_core"] = round(max(0.0, other_server), 3)
    result["other_on_client_core"] = round(max(0.0, other_client), 3)
    return result


def measure(
    running: b.Running,
    name: str,
    tag: str,
    *,
    round_no: int,
    rounds: int,
    seconds: int,
    backends: list[b.Running],
) -> dict[int, dict[str, Any]]:
    """Each concurrency; a run that other processes disturbed is measured again (as the
    serve bench does: BENCH_MAX_OTHER_PCT, BENCH_RETRIES)."""
    retries = b.env_int("BENCH_RETRIES", 2)
    max_other = b.env_int("BENCH_MAX_OTHER_PCT", 5) / 100
    b.check_response(running)
    b.run_wrk(running, 16, 1, f"{tag}-warmup")
    results = {}
    for c in b.CONCURRENCIES:
        for attempt in range(1, retries + 2):
            result = measure_once(running, f"{tag}-c{c}", c, seconds, backends=backends)
            result["round"], result["attempt"] = round_no, attempt
            result["disturbed"] = b.disturbed(result, max_other)
            cpu = result.get("proxy_cpu_us_per_request")
            b.log(
                f"  round {round_no}/{rounds} {name:14} c={c:<3} "
                f"{result['rps']:9,.0f} req/s  p50 {result['p50_us'] / 1000:6.3f} ms"
                f"  p99 {result['p99_us'] / 1000:6.3f} ms"
                + (f"  proxy {cpu:5.1f} us/req" if cpu else "")
                + f"  others: {result['other_on_client_core']:.0%} of the proxy"
                f" core, {result['other_on_server_core']:.0%} of the backend core"
                + ("  DISTURBED" if result["disturbed"] else "")
            )
            if not result["disturbed"]:
                break
            if attempt <= retries:
                time.sleep(b.RETRY_PAUSE)
        results[c] = result
    return results


def main() -> int:
    rounds = b.env_int("BENCH_ROUNDS", 3)
    seconds = b.env_int("BENCH_SECONDS", 5)
    b.LOGS.mkdir(parents=True, exist_ok=True)
    b.build_model()
    machine = b.machine_notes(["floor"])
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
                    if name in skipped:
                        continue
                    with contextlib.ExitStack() as stack:
                        if name == "direct":
                            target = back_a
                        else:
                            target = stack.enter_context(b.started(specs[name], tag))
                            target.wait_ready()
                        results = measure(target, name, tag, round_no=round_no, rounds=rounds,
                                          seconds=seconds, backends=[back_a, back_b])  # fmt: skip
                    for c, result in results.items():
                        runs[name][c].append(result)
    finally:
        b.Running.stop_all()
    machine["loadavg_at_end"] = os.getloadavg()
    summary = {
        name: {c: summarize(results) for c, results in by_c.items() if results}
        for name, by_c in runs.items()
        if any(by_c.values())
    }
    print(report(summary, runs, rounds=rounds, seconds=seconds, skipped=skipped, machine=machine))
    (b.OUT / "router-results.json").write_text(
        json.dumps({"summary": summary, "runs": runs, "machine": machine}, indent=1)
    )
    return 0


def summarize(measured: list[dict[str, Any]]) -> dict[str, Any]:
    # Runs disturbed by other processes stay out of the median when there are clean ones.
    results = [r for r in measured if not r["disturbed"]] or measured

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    out = {
        "disturbed_in_median": sum(1 for r in results if r["disturbed"]),
        "rps": median("rps"),
        "p50_ms": median("p50_us") / 1000,
        "p99_ms": median("p99_us") / 1000,
        "other_on_client_core": median("other_on_client_core"),
        "other_on_server_core": median("other_on_server_core"),
    }
    if all("proxy_cpu_us_per_request" in r for r in results):
        out["proxy_cpu_us_per_request"] = median("proxy_cpu_us_per_request")
    return out


def round_ratios(
    runs: dict[str, dict[int, list[dict[str, Any]]]], c: int
) -> list[tuple[float, bool]]:
    """router ÷ nginx requests/s of each round (runs close in time share their noise), and
    whether either run was disturbed."""
    nginx = {r["round"]: r for r in runs.get("nginx", {}).get(c, [])}
    return [
        (r["rps"] / nginx[r["round"]]["rps"], r["disturbed"] or nginx[r["round"]]["disturbed"])
        for r in runs.get("router", {}).get(c, [])
        if r["round"] in nginx
    ]


def report(
    summary: dict[str, Any],
    runs: dict[str, dict[int, list[dict[str, Any]]]],
    *,
    rounds: int,
    seconds: int,
    skipped: dict[str, str],
    machine: dict[str, Any],
) -> str:
    git = machine["git"]
    wrk = machine["wrk"].split(" Copyright")[0]
    load = ", ".join(
        f"{when} {' '.join(f'{x:.2f}' for x in machine[key])}"
        for when, key in (("start", "loadavg_at_start"), ("end", "loadavg_at_end"))
    )
    lines = [
        f"Router: medians of {rounds} interleaved rounds of {seconds} s; backends on core "
        f"{b.SERVER_CPU}, proxy and wrk on core {b.CLIENT_CPU}.",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Linux {machine['kernel']}, "
        f"Python {machine['python']}, {wrk}; commit {(git['commit'] or '?')[:10]}"
        f"{' + uncommitted serving/' if git['serving_dirty'] else ''}; load average {load}.",
        "",
        "| path | c | req/s | p50 (ms) | p99 (ms) | proxy CPU (µs/req) | others on proxy core |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_c in summary.items():
        for c, m in by_c.items():
            cpu = m.get("proxy_cpu_us_per_request")
            lines.append(
                f"| {name} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | "
                f"{f'{cpu:.1f}' if cpu else '-'} | {m['other_on_client_core']:.0%} |"
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
        per_round = round_ratios(runs, 16)
        if per_round:
            clean = [x for x, disturbed in per_round if not disturbed]
            among_clean = (
                f"; of rounds where neither was disturbed: {statistics.median(clean):.2f}x"
                if clean
                else ""
            )
            lines.append(
                "- the same, round by round: "
                + ", ".join(f"{x:.2f}{'*' if disturbed else ''}" for x, disturbed in per_round)
                + f" (median {statistics.median(x for x, _ in per_round):.2f}x{among_clean}; "
                f"* = other processes took over {b.env_int('BENCH_MAX_OTHER_PCT', 5)}% of a "
                "bench core during either run)"
            )
        cpu = {n: summary[n][16].get("proxy_cpu_us_per_request") for n in ("router", "nginx")}
        if cpu["router"] and cpu["nginx"]:
            lines.append(
                f"- CPU time per request at concurrency 16: router {cpu['router']:.1f} µs, "
                f"nginx {cpu['nginx']:.1f} µs ({cpu['router'] / cpu['nginx']:.1f}x)"
            )
    if "router" in summary and "router+shadow" in summary:
        for c in b.CONCURRENCIES:
            rise = summary["router+shadow"][c]["p99_ms"] / summary["router"][c]["p99_ms"] - 1
            lines.append(
                f"- a 100% shadow changes the primary's p99 at concurrency {c} by {rise:+.0%}"
            )
    disturbed = sum(m["disturbed_in_median"] for by_c in summary.values() for m in by_c.values())
    if disturbed:
        lines.append(
            f"- WARNING: {disturbed} runs in the medians ran while other processes took a "
            "bench core (no clean run after retries): compare within rounds"
        )
    for name, reason in skipped.items():
        lines.append(f"- {name} skipped: {reason}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

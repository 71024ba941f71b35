"""`make bench`, router part 2: what a 100% shadow does to the primary's latency at a fixed
request rate.

wrk drives a closed loop as fast as it can, so a 100% shadow there measures saturation,
not the router. Here ``bench/openloop.c`` (compiled on first use) sends requests at fixed
due times (Poisson arrivals, the same sequence in every run) and counts each latency from
its due time, so a stall anywhere shows in full. The router runs alone on the client core
(its shadow worker inherits that core); backends and the load generator share the server
core. Each round runs three arms in a rotating order, each with a fresh router:

- ``router``: no shadow;
- ``router+shadow``: a 100% shadow copy of every request to the second backend;
- ``router again``: no shadow again, the A/A control: how far two identical arms differ on
  this machine, i.e. the resolution of the comparison above.

Two kinds of backends (``BENCH_SHADOW_BACKENDS``):

- ``static``: nginx answering the model's recorded response. The backends cost next to
  nothing, as when the shadow revision runs on its own nodes; what remains is the router;
- ``model``: the bare ASGI app with the real ONNX model; the shadow's backend runs under
  ``SCHED_IDLE``, standing in for a shadow revision with CPU of its own (there is no third
  core here);
- ``shared``: the same at equal priority: the shadow revision's inference competes with the
  primary's on one core, as on an overcommitted node. What this adds over ``model`` is
  the backends' contention, not the router's.

Reported per kind and arm: p50/p99/p99.9 over all rounds pooled, the p99 rise against
``router`` (pooled and per round), and CPU time per request of the router and of its
shadow worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b
import router_bench as rb

RATE = b.env_int("BENCH_SHADOW_RPS", 1000)
SECONDS = b.env_int("BENCH_SHADOW_SECONDS", 3)
ROUNDS = b.env_int("BENCH_SHADOW_ROUNDS", 12)
WARMUP_SECONDS = 0.5  # of each segment, not measured: a router idle for a while is cold
CONNECTIONS = 32
KINDS = [k for k in os.environ.get("BENCH_SHADOW_BACKENDS", "static,model,shared").split(",") if k]
ARMS = ("router", "router+shadow", "router again")
OPENLOOP_SOURCE = b.BENCH / "openloop.c"
OPENLOOP = b.OUT / "bin" / "openloop"
RESULTS = b.OUT / "shadow.json"

STATIC_CONF = """
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir}/body;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '@ANSWER@'; }}
  }}
}}
"""


def build_openloop() -> Path:
    if OPENLOOP.exists() and OPENLOOP.stat().st_mtime >= OPENLOOP_SOURCE.stat().st_mtime:
        return OPENLOOP
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise b.BenchError("the open-loop load generator needs a C compiler (apt-get install gcc)")
    OPENLOOP.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(OPENLOOP), str(OPENLOOP_SOURCE), "-lm"], check=True
    )
    return OPENLOOP


def static_spec(name: str, answer: bytes) -> b.ServerSpec:
    """nginx answering every request, POST included, with the model's recorded response."""

    def build(port: int, workdir: Path) -> b.Launch:
        conf = workdir / "nginx.conf"
        text = STATIC_CONF.format(workdir=workdir, port=port)
        conf.write_text(text.replace("@ANSWER@", answer.decode()))
        return b.Launch(["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"])

    def unavailable() -> str | None:
        return (
            None
            if shutil.which("nginx")
            else "nginx is not installed (apt-get install nginx-light)"
        )

    return b.ServerSpec(name, "nginx, a recorded answer", build, unavailable)


def _at_idle(build: Callable[[int, Path], b.Launch]) -> Callable[[int, Path], b.Launch]:
    """The same server under SCHED_IDLE: on two cores, the stand-in for a shadow revision
    with CPU of its own, which never delays the primary's backend."""

    def idle(port: int, workdir: Path) -> b.Launch:
        launch = build(port, workdir)
        return b.Launch(["chrt", "--idle", "0", *launch.argv], launch.env, launch.cwd)

    return idle


def open_loop(port: int, body_file: Path, out: Path) -> list[int]:
    """Latencies in µs of the measured requests; raises on any non-200."""
    argv = [
        "taskset", "-c", b.SERVER_CPU, str(OPENLOOP), b.HOST, str(port), b.infer_path(),
        str(body_file), str(RATE), str(SECONDS), str(CONNECTIONS), str(WARMUP_SECONDS), str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise b.BenchError(f"openloop failed ({done.returncode}): {done.stderr.strip()}")
    latencies = []
    for line in out.read_text().splitlines():
        micros, status = line.split()
        if status != "200":
            raise b.BenchError(f"a request through the router answered {status}")
        latencies.append(int(micros))
    return latencies


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


def _router_pid(running: b.Running) -> int:
    """`Running` starts ``taskset -c … taskset -c … serinus router``; taskset execs, so the
    process is the router itself."""
    return running.proc.pid


def measure_segment(router: b.Running, body_file: Path, tag: str) -> dict[str, Any]:
    pid = _router_pid(router)
    workers = _children(pid)
    before = b.process_cpu_seconds(pid), sum(b.process_cpu_seconds(w) for w in workers)
    latencies = open_loop(router.port, body_file, b.OUT / "run" / f"{tag}.latencies")
    after = b.process_cpu_seconds(pid), sum(b.process_cpu_seconds(w) for w in workers)
    sent = RATE * (SECONDS + WARMUP_SECONDS)
    return {
        "latencies_us": latencies,
        "router_cpu_us_per_request": (after[0] - before[0]) / sent * 1e6,
        "worker_cpu_us_per_copy": (after[1] - before[1]) / sent * 1e6,
    }


def compared_copies(router: b.Running) -> float:
    metrics = httpx.get(router.base_url + "/metrics", timeout=5, trust_env=False).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("serinus_shadow_requests_total{") and 'result="agree"' in line
    )


def quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def run_kind(kind: str, answer: bytes, body_file: Path) -> dict[str, list[dict[str, Any]]]:
    """All three routers stay up; short segments cycle through them, so whatever else the
    machine does meanwhile falls on every arm alike."""
    if kind == "static":
        spec_a, spec_b = static_spec("static-a", answer), static_spec("static-b", answer)
    elif kind in ("model", "shared"):
        spec_a = b.ServerSpec("floor", "bare ASGI app", b._floor, lambda: None)
        shadow_build = _at_idle(b._floor) if kind == "model" else b._floor
        spec_b = b.ServerSpec("floor-b", "bare ASGI app (shadow)", shadow_build, lambda: None)
    else:
        raise b.BenchError(f"BENCH_SHADOW_BACKENDS: unknown kind {kind!r} (static, model, shared)")
    reason = spec_a.unavailable()
    if reason:
        raise b.BenchError(reason)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with contextlib.ExitStack() as stack:
        back_a = stack.enter_context(b.started(spec_a, f"shadow-{kind}-a"))
        back_b = stack.enter_context(b.started(spec_b, f"shadow-{kind}-b"))
        back_a.wait_ready()
        back_b.wait_ready()
        routers = {}
        for arm in ARMS:
            spec = rb.router_spec(back_a.port, back_b.port, mirror=arm == "router+shadow")
            name = f"shadow-{kind}-{arm.replace('+', '-').replace(' ', '-')}"
            routers[arm] = stack.enter_context(b.started(spec, name))
            routers[arm].wait_ready()
        for round_no in range(1, ROUNDS + 1):
            shift = (round_no - 1) % len(ARMS)
            for arm in ARMS[shift:] + ARMS[:shift]:
                tag = f"shadow-{kind}-r{round_no}-{arm.replace('+', '-').replace(' ', '-')}"
                result = measure_segment(routers[arm], body_file, tag)
                runs[arm].append(result)
                lat = result["latencies_us"]
                b.log(
                    f"  {kind} round {round_no}/{ROUNDS} {arm:14} p50 {quantile(lat, 0.5):.3f} ms"
                    f"  p99 {quantile(lat, 0.99):.3f} ms  router "
                    f"{result['router_cpu_us_per_request']:.0f} us/req"
                    + (
                        f"  worker {result['worker_cpu_us_per_copy']:.0f} us/copy"
                        if arm == "router+shadow"
                        else ""
                    )
                )
        sent = ROUNDS * RATE * (SECONDS + WARMUP_SECONDS)
        compared = compared_copies(routers["router+shadow"])
        if compared < 0.9 * sent:
            raise b.BenchError(f"only {compared:.0f} of about {sent} copies were compared")
    return runs


def record_answer() -> bytes:
    """The model's real response to the bench request, for the static backends."""
    floor = b.ServerSpec("floor", "bare ASGI app", b._floor, lambda: None)
    with b.started(floor, "shadow-record") as server:
        server.wait_ready()
        response = httpx.post(
            server.base_url + b.infer_path(),
            content=(b.MODEL_DIR / "request.json").read_bytes(),
            headers={"content-type": "application/json"},
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
        return response.content


def main() -> int:
    b.LOGS.mkdir(parents=True, exist_ok=True)
    (b.OUT / "run").mkdir(parents=True, exist_ok=True)
    build_openloop()
    b.build_model()
    body_file = b.MODEL_DIR / "request.json"
    results: dict[str, Any] = {}
    try:
        answer = record_answer()
        for kind in KINDS:
            b.log(f"shadow bench: {kind} backends, {RATE}/s, {ROUNDS} rounds x {SECONDS} s")
            results[kind] = run_kind(kind, answer, body_file)
    finally:
        b.Running.stop_all()
    summary = {kind: summarize(runs) for kind, runs in results.items()}
    RESULTS.write_text(
        json.dumps(
            {
                "rate": RATE,
                "seconds": SECONDS,
                "rounds": ROUNDS,
                "summary": summary,
                "machine": b.machine_notes(["floor"]),
                "when": time.strftime("%Y-%m-%d %H:%M"),
            },
            indent=2,
        )
    )
    print(report(summary))
    return 0


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pooled = {arm: [x for r in runs[arm] for x in r["latencies_us"]] for arm in ARMS}
    for arm in ARMS:
        out[arm] = {
            "p50_ms": quantile(pooled[arm], 0.5),
            "p99_ms": quantile(pooled[arm], 0.99),
            "p999_ms": quantile(pooled[arm], 0.999),
            "router_cpu_us_per_request": _median(
                [r["router_cpu_us_per_request"] for r in runs[arm]]
            ),
            "worker_cpu_us_per_copy": _median([r["worker_cpu_us_per_copy"] for r in runs[arm]]),
            "p99_per_round_ms": [quantile(r["latencies_us"], 0.99) for r in runs[arm]],
        }
    base = out["router"]
    for arm in ARMS[1:]:
        out[arm]["p99_rise"] = out[arm]["p99_ms"] / base["p99_ms"] - 1
        out[arm]["p99_rise_per_round"] = [
            x / y - 1
            for x, y in zip(out[arm]["p99_per_round_ms"], base["p99_per_round_ms"], strict=True)
        ]
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"### 100% shadow at a fixed rate ({RATE} requests/s, open loop, {ROUNDS} rounds x "
        f"{SECONDS} s segments per arm, interleaved, pooled)",
    ]
    for kind, arms in summary.items():
        lines += [
            "",
            f"{kind} backends:",
            "",
            "| arm | p50 (ms) | p99 (ms) | p99.9 (ms) | p99 vs router | router CPU (µs/req) | "
            "worker CPU (µs/copy) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for arm, s in arms.items():
            rise = f"{s['p99_rise']:+.1%}" if "p99_rise" in s else "-"
            worker = f"{s['worker_cpu_us_per_copy']:.0f}" if arm == "router+shadow" else "-"
            lines.append(
                f"| {arm} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['p999_ms']:.3f} | {rise} | "
                f"{s['router_cpu_us_per_request']:.0f} | {worker} |"
            )
        for arm in ARMS[1:]:
            rises = arms[arm]["p99_rise_per_round"]
            per_round = ", ".join(f"{x:+.0%}" for x in rises)
            lines.append(
                f"\n- {arm}: p99 against `router`, median of the rounds "
                f"{statistics.median(rises):+.0%}; per round {per_round}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

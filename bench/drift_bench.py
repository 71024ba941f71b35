"""`make bench`, drift part: what `serinus serve --profile` costs per request.

The serve bench's model and request (one row, OIP v2 JSON) go to two `serinus serve`
processes with their defaults, one with a drift profile built by `serinus profile` from data
of the model's training distribution. Both are scraped once a second during every
measurement (Prometheus scrapes every 15-30 s; once a second is the pessimistic case), so
the drift statistics computed at scrape time are in the bill, not only the per-request
append. Rounds start both servers afresh and measure them back to back at each
concurrency, alternating which goes first; reported are medians and the ratio
drift / plain requests/s (goal: above 0.95, i.e. under 5% cost at batch 1).

Knobs: BENCH_ROUNDS (5), BENCH_SECONDS (5), BENCH_RETRIES, BENCH_MAX_OTHER_PCT, and the
cores, as in bench.py. Writes .bench/drift-results.json; prints a markdown table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b  # the serve bench's process and wrk plumbing

PLAIN, DRIFT = "serinus", "serinus+profile"
# Its own copy of the serve bench's model, so that a serve bench running meanwhile cannot
# swap the model under the profile (a profile is bound to its model's sha256).
b.MODEL_DIR = b.OUT / "drift-model"
PROFILE = b.MODEL_DIR / "profile.json"
SCRAPE_EVERY = 1.0


def build_profile() -> None:
    """Training-distribution data (make_model.py trains on standard normal features), then
    `serinus profile` on it, as a user would."""
    data = b.MODEL_DIR / "train.npy"
    features = int(b.meta()["n_features"])
    np.save(data, np.random.default_rng(1).normal(size=(20_000, features)).astype(np.float32))
    subprocess.run(
        [str(b.SERINUS), "profile", "--model", str(b.MODEL_DIR / "model.onnx"),
         "--data", str(data), "-o", str(PROFILE)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def spec(name: str, *extra: str) -> b.ServerSpec:
    plain = b._serinus(False)

    def build(port: int, workdir: Path) -> b.Launch:
        launch = plain(port, workdir)
        launch.argv += list(extra)
        return launch

    return b.ServerSpec(name, f"serinus serve {' '.join(extra)}".strip(), build, lambda: None)


@contextlib.contextmanager
def scraping(running: b.Running) -> Iterator[list[float]]:
    """GET /metrics every second until the block ends; yields the scrape durations."""
    stop = threading.Event()
    durations: list[float] = []

    failures: list[str] = []

    def loop() -> None:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while not stop.wait(SCRAPE_EVERY):
                started = time.perf_counter()
                try:
                    response = client.get(running.base_url + "/metrics")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                durations.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield durations
    finally:
        stop.set()
        thread.join()
    if failures:
        raise b.BenchError(f"scraping {running.spec.name} failed: {failures[:3]}")


def check_drift_metrics(running: b.Running) -> None:
    text = httpx.get(running.base_url + "/metrics", timeout=10, trust_env=False).text
    if "serinus_drift_window_samples" not in text:
        raise b.BenchError(f"{running.spec.name} exports no drift metrics: is --profile on?")


def measure(
    running: b.Running, conc: int, seconds: int, tag: str, *, retries: int, max_other: float
) -> dict[str, Any]:
    for attempt in range(1, retries + 2):
        with scraping(running) as scrapes:
            result = b.run_wrk(running, conc, seconds, tag)
        result["attempt"] = attempt
        result["scrapes"] = len(scrapes)
        result["scrape_ms_max"] = round(max(scrapes, default=0.0) * 1000, 2)
        result["disturbed"] = b.disturbed(result, max_other)
        b.log(
            f"  {running.spec.name:<16} c={conc:<3} {result['rps']:9,.0f} req/s  "
            f"p50 {result['p50_us'] / 1000:6.3f} ms  p99 {result['p99_us'] / 1000:6.3f} ms  "
            f"scrape max {result['scrape_ms_max']:.1f} ms  other "
            f"{result['other_on_server_core']:.2f}/{result['other_on_client_core']:.2f}"
            + ("  DISTURBED" if result["disturbed"] else "")
        )
        if not result["disturbed"]:
            break
        time.sleep(b.RETRY_PAUSE)
    return result


def run() -> int:
    rounds = b.env_int("BENCH_ROUNDS", 5)
    seconds = b.env_int("BENCH_SECONDS", 5)
    retries = b.env_int("BENCH_RETRIES", 2)
    max_other = b.env_int("BENCH_MAX_OTHER_PCT", 5) / 100
    b.LOGS.mkdir(parents=True, exist_ok=True)
    (b.OUT / "run").mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError, AttributeError):  # the scraper stays off the server core
        os.sched_setaffinity(0, {int(b.CLIENT_CPU)})
    b.build_model()
    build_profile()
    specs = {PLAIN: spec(PLAIN), DRIFT: spec(DRIFT, "--profile", str(PROFILE))}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {c: [] for c in b.CONCURRENCIES} for name in specs
    }
    b.log(f"drift bench: {rounds} rounds x c={b.CONCURRENCIES} x {seconds}s, scraped every 1s")
    for rnd in range(rounds):
        order = [PLAIN, DRIFT] if rnd % 2 == 0 else [DRIFT, PLAIN]
        with contextlib.ExitStack() as stack:
            servers = {
                n: stack.enter_context(b.started(specs[n], f"drift-r{rnd + 1}-{n}")) for n in order
            }
            for name in order:
                servers[name].wait_ready()
                b.check_response(servers[name])
                b.run_wrk(servers[name], 16, 1, f"drift-r{rnd + 1}-{name}-warmup")
            check_drift_metrics(servers[DRIFT])
            b.log(f"round {rnd + 1}/{rounds}")
            for conc in b.CONCURRENCIES:
                for name in order:
                    tag = f"drift-r{rnd + 1}-{name.replace('+', '-')}-c{conc}"
                    result = measure(
                        servers[name], conc, seconds, tag, retries=retries, max_other=max_other
                    )
                    result["round"] = rnd + 1
                    runs[name][conc].append(result)
    summary = summarize(runs)
    (b.OUT / "drift-results.json").write_text(
        json.dumps(
            {"summary": summary, "runs": runs, "rounds": rounds, "seconds": seconds}, indent=1
        )
    )
    print(report(summary, rounds=rounds, seconds=seconds))
    return 0


def summarize(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, by_c in runs.items():
        out[name] = {}
        for c, results in by_c.items():
            clean = [r for r in results if not r["disturbed"]] or results
            out[name][c] = {
                "rps": statistics.median(r["rps"] for r in clean),
                "p50_ms": statistics.median(r["p50_us"] for r in clean) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in clean) / 1000,
                "scrape_ms_max": max(r["scrape_ms_max"] for r in results),
                "measurements": len(clean),
                "disturbed_dropped": len(results) - len(clean),
            }
    # Ratios of the back-to-back pairs of each round: the noise of the shared machine moves
    # both members of a pair alike.
    out["pair_ratios"] = {
        c: [d["rps"] / p["rps"] for p, d in zip(runs[PLAIN][c], runs[DRIFT][c], strict=True)]
        for c in b.CONCURRENCIES
    }
    return out


def report(summary: dict[str, Any], *, rounds: int, seconds: int) -> str:
    lines = [
        f"Drift: medians of {rounds} rounds of {seconds} s (server on core {b.SERVER_CPU}, wrk "
        f"on core {b.CLIENT_CPU}); both servers scraped every {SCRAPE_EVERY:g} s.",
        "",
        "| server | c | req/s | p50 (ms) | p99 (ms) | slowest scrape (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in (PLAIN, DRIFT):
        for c, m in summary[name].items():
            lines.append(
                f"| {name} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} "
                f"| {m['scrape_ms_max']:.1f} |"
            )
    lines.append("")
    for c in b.CONCURRENCIES:
        ratio = summary[DRIFT][c]["rps"] / summary[PLAIN][c]["rps"]
        pairs = summary["pair_ratios"][c]
        lines.append(
            f"- with ÷ without --profile, requests/s at concurrency {c}: {ratio:.3f} "
            f"(cost {1 - ratio:+.1%}; median of the per-round pairs "
            f"{statistics.median(pairs):.3f}, range {min(pairs):.3f}-{max(pairs):.3f})"
        )
    return "\n".join(lines)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, b._on_signal)
    try:
        return run()
    except b.BenchError as exc:
        b.log(f"drift bench FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        b.log("drift bench interrupted")
        return 130
    finally:
        b.Running.stop_all()


if __name__ == "__main__":
    sys.exit(main())

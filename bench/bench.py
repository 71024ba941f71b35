"""Benchmark ``serinus serve`` against MLServer, KServe and a bare ASGI floor.

Every server gets the same ONNX model (bench/make_model.py) and the same OIP v2 JSON
request, runs on core 0 (taskset) with ONNX Runtime on one intra-op and one inter-op
thread, and is loaded by wrk on core 1 at concurrency 1 and 16. Rounds are interleaved
(each round starts every server afresh, in a rotated order, and measures both
concurrencies) and the median of the rounds is reported per server and concurrency.
Two models, each its own run: ``logreg`` (a small logistic regression) and ``mlp`` (an
MLP of 0.9 M parameters, where one runtime call for many rows is far cheaper than one call
per row). For ``mlp`` MLServer runs with its own adaptive batching on.

Run through ``make bench`` (bench/run.sh installs wrk and the peers' venvs first).
Knobs (environment):
  BENCH_MODEL    comma-separated models, each run in turn: logreg, mlp (default both)
  BENCH_ROUNDS   rounds (default 3)
  BENCH_SECONDS  seconds per wrk run (default 5)
  BENCH_WARMUP   seconds of unmeasured load after each start (default 1)
  BENCH_SERVERS  comma-separated subset of: serinus, serinus-unbatched, mlserver, kserve, floor
  BENCH_MAX_OTHER_PCT  a run is "disturbed" when other work used more than this share (%)
                 of the server's or wrk's core while it ran (default 5) ...
  BENCH_RETRIES  ... and is measured again up to this many times (default 2)
  BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two cores (default 0 and 1)
  BENCH_MLSERVER_MAX_BATCH_SIZE  MLServer's ``max_batch_size`` (default 0, batching off, for
                 logreg; 16, its best case at concurrency 16, for mlp); 0 or 1 turns it off
  BENCH_MLSERVER_MAX_BATCH_TIME_MS  MLServer's ``max_batch_time`` in ms (default 2, as
                 serinus's --max-batch-latency-ms)
Writes .bench/results.json and .bench/results.md (logreg), .bench/results-mlp.json and
.bench/results-mlp.md (mlp); prints each markdown table to stdout and progress to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = ROOT / ".bench"
LOGS = OUT / "logs"
MODEL_DIR = OUT / "model"  # the model being benchmarked (set per model by run())
PIDFILE = OUT / "run" / "servers.pgids"
LUA = BENCH / "infer.lua"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
SERINUS = ROOT / ".venv" / "bin" / "serinus"

SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")
CONCURRENCIES = (1, 16)
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
HOST = "127.0.0.1"
RETRY_PAUSE = 1.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

ALL_SERVERS = ("serinus", "serinus-unbatched", "mlserver", "kserve", "floor")
#: The models of bench/make_model.py, in the order `make bench` runs them.
ALL_MODELS = ("logreg", "mlp")
#: MLServer's adaptive batching per model, unless BENCH_MLSERVER_MAX_BATCH_SIZE says: off
#: for the small model (as in every earlier run), on for the MLP. Its batcher waits until
#: max_batch_size requests are queued or max_batch_time has passed: with 32 (serinus's
#: default) it can never fill at concurrency 16 and waits out every max_batch_time, so it
#: gets 16, the size that is its best case at concurrency 16 (about a third more requests/s
#: than with 32 on this MLP), and serinus's 2 ms as the wait.
MLSERVER_BATCH_DEFAULTS = {"logreg": 0, "mlp": 16}
MLSERVER_BATCH_TIME_MS = 2.0
SERINUS_VARIANTS = ("serinus", "serinus-unbatched")
UNBATCHED_FLAGS = ("--max-batch-size", "0")


class BenchError(RuntimeError):
    """The run cannot produce trustworthy numbers."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BenchError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise BenchError(f"{name} must be >= 0, got {raw}")
    return value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- servers ------------------------------------------------------------------------------


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT


@dataclass
class ServerSpec:
    name: str
    description: str
    build: Callable[[int, Path], Launch]
    #: Why it cannot run here, or None.
    unavailable: Callable[[], str | None]
    #: Runtime calls, rows and seconds in the runtime so far, for a server that batches.
    batch_counters: Callable[[Running], BatchCounters | None] | None = None


@dataclass(frozen=True)
class BatchCounters:
    calls: float
    rows: float
    seconds: float


def _serinus_counters(running: Running) -> BatchCounters | None:
    """From serinus's /metrics: ``serinus_batch_size`` (rows per runtime call) and
    ``serinus_inference_duration_seconds`` (time in the runtime per call)."""
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        response = client.get(running.base_url + "/metrics")
    if response.status_code != 200:
        return None
    found: dict[str, float] = {}
    for match in _SERINUS_SERIES.finditer(response.text):
        found[match.group(1)] = float(match.group(2))
    try:
        return BatchCounters(
            found["batch_size_count"],
            found["batch_size_sum"],
            found["inference_duration_seconds_sum"],
        )
    except KeyError:
        return None


_SERINUS_SERIES = re.compile(
    r"^serinus_(batch_size_(?:sum|count)|inference_duration_seconds_sum)\{[^}]*\} (\S+)$",
    re.MULTILINE,
)


def _mlserver_counters(running: Running) -> BatchCounters | None:
    """From the bench runtime's own ``GET /bench/batch-stats`` (peers/mlserver_runtime.py)."""
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        response = client.get(running.base_url + "/bench/batch-stats")
    if response.status_code != 200:
        return None
    stats = response.json()
    return BatchCounters(float(stats["calls"]), float(stats["rows"]), float(stats["seconds"]))


@functools.cache
def _serinus_help() -> str:
    try:
        proc = subprocess.run(
            [str(SERINUS), "serve", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"!{exc}"
    if proc.returncode != 0:
        return "!" + (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return proc.stdout


def _serinus_unavailable() -> str | None:
    help_text = _serinus_help()
    if help_text.startswith("!"):
        return f"`serinus serve --help` fails: {help_text[1:]}"
    return None


def _serinus(unbatched: bool) -> Callable[[int, Path], Launch]:
    def build(port: int, _workdir: Path) -> Launch:
        help_text = _serinus_help()
        argv = [
            str(SERINUS),
            "serve",
            "--model",
            str(MODEL_DIR / "model.onnx"),
            "--name",
            model_name(),
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        # Optional flags, passed only when this serinus has them.
        optional = {
            "--intra-op-threads": "1",
            "--inter-op-threads": "1",
            "--drain-seconds": "0",  # stop at once between rounds; no traffic is in flight
            "--log-level": "warning",
        }
        for flag, value in optional.items():
            if flag in help_text:
                argv += [flag, value]
        if unbatched:
            argv += UNBATCHED_FLAGS
        return Launch(argv)

    return build


def _floor(port: int, _workdir: Path) -> Launch:
    argv = [
        str(PROJECT_PY),
        "-m",
        "uvicorn",
        "floor_app:app",
        "--app-dir",
        str(BENCH),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {"BENCH_MODEL_PATH": str(MODEL_DIR / "model.onnx"), "BENCH_MODEL_NAME": model_name()}
    return Launch(argv, env)


def _venv_unavailable(venv: Path, label: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if (venv / ".bench-stamp").is_file():
            return None
        failed = venv.with_name(venv.name + ".failed")
        if failed.is_file():
            return f"{label} could not be installed: {failed.read_text().strip()}"
        return f"{label} is not installed in {venv.relative_to(ROOT)} (run bench/run.sh)"

    return check


def mlserver_batching() -> tuple[int, float] | None:
    """MLServer's ``max_batch_size`` and ``max_batch_time`` (seconds) for this model, or None
    when its adaptive batching is off (MLServer turns it on for a size above 1)."""
    size = env_int("BENCH_MLSERVER_MAX_BATCH_SIZE", MLSERVER_BATCH_DEFAULTS[model_kind()])
    raw = os.environ.get("BENCH_MLSERVER_MAX_BATCH_TIME_MS", "").strip()
    try:
        ms = float(raw) if raw else MLSERVER_BATCH_TIME_MS
    except ValueError:
        raise BenchError(
            f"BENCH_MLSERVER_MAX_BATCH_TIME_MS must be a number, got {raw!r}"
        ) from None
    if size <= 1 or ms <= 0:
        return None
    return size, ms / 1000


def _mlserver(port: int, workdir: Path) -> Launch:
    # One process: parallel_workers 0 runs inference in the server process itself (1 would
    # fork one worker process next to it). gRPC cannot be turned off; it gets a free port.
    # debug off turns MLServer's access log off, as in every server here.
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "host": HOST,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "load_models_at_startup": True,
    }
    model_settings: dict[str, Any] = {
        "name": model_name(),
        "implementation": "mlserver_runtime.OnnxRuntimeModel",
        "parameters": {"uri": str(MODEL_DIR / "model.onnx"), "version": "1"},
    }
    batching = mlserver_batching()
    if batching is not None:
        # MLServer's adaptive batching: requests queue until max_batch_size of them are
        # there or max_batch_time has passed since the first; then one merged predict().
        model_settings["max_batch_size"], model_settings["max_batch_time"] = batching
    (workdir / "settings.json").write_text(json.dumps(settings, indent=2))
    (workdir / model_name()).mkdir(exist_ok=True)
    (workdir / model_name() / "model-settings.json").write_text(
        json.dumps(model_settings, indent=2)
    )
    venv = OUT / "venv-mlserver"
    return Launch(
        [str(venv / "bin" / "mlserver"), "start", str(workdir)],
        {"PYTHONPATH": str(BENCH / "peers")},
        workdir,
    )


def _kserve(port: int, _workdir: Path) -> Launch:
    venv = OUT / "venv-kserve"
    argv = [
        str(venv / "bin" / "python"),
        str(BENCH / "peers" / "kserve_server.py"),
        str(MODEL_DIR / "model.onnx"),
        model_name(),
        str(port),
    ]
    return Launch(argv)


def _mlserver_description() -> str:
    text = "MLServer, custom ONNX Runtime MLModel, parallel_workers=0"
    batching = mlserver_batching()
    if batching is None:
        return text + ", adaptive batching off"
    size, seconds = batching
    return (
        f"{text}, adaptive batching ON (max_batch_size {size}, "
        f"max_batch_time {seconds * 1000:g} ms)"
    )


def server_specs() -> dict[str, ServerSpec]:
    mlserver, kserve = OUT / "venv-mlserver", OUT / "venv-kserve"
    return {
        "serinus": ServerSpec(
            "serinus",
            "serinus serve (defaults: adaptive batching up to 32 rows)",
            _serinus(False),
            _serinus_unavailable,
            _serinus_counters,
        ),
        "serinus-unbatched": ServerSpec(
            "serinus-unbatched",
            "serinus serve " + " ".join(UNBATCHED_FLAGS),
            _serinus(True),
            _serinus_unavailable,
        ),
        "mlserver": ServerSpec(
            "mlserver",
            _mlserver_description(),
            _mlserver,
            _venv_unavailable(mlserver, "MLServer"),
            _mlserver_counters,
        ),
        "kserve": ServerSpec(
            "kserve",
            "KServe ModelServer(workers=1), kserve.Model on ONNX Runtime",
            _kserve,
            _venv_unavailable(kserve, "KServe"),
        ),
        "floor": ServerSpec(
            "floor",
            "bare ASGI app: orjson + ONNX Runtime on uvicorn (uvloop, httptools)",
            _floor,
            lambda: None,
        ),
    }


# --- processes ----------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class Running:
    """One started server, in its own process group so it can be stopped whole."""

    live: dict[int, Running] = {}

    def __init__(self, spec: ServerSpec, tag: str) -> None:
        self.spec = spec
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=OUT / "run"))
        launch = spec.build(self.port, self.workdir)
        self.log_path = LOGS / f"{tag}.log"
        env = {**os.environ, **launch.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, *launch.argv],
                cwd=launch.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        Running.live[self.proc.pid] = self
        _write_pidfile()

    def cpu_seconds(self) -> float:
        """CPU time of the server process (all its threads) so far."""
        return process_cpu_seconds(self.proc.pid)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def wait_ready(self) -> float:
        started = time.monotonic()
        deadline = started + READY_TIMEOUT
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.spec.name} exited with {self.proc.returncode} before it was "
                        f"ready; log {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + "/v2/health/ready").status_code == 200:
                        return time.monotonic() - started
                time.sleep(0.1)
        raise BenchError(
            f"{self.spec.name} not ready after {READY_TIMEOUT:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"  {self.spec.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; SIGKILL")
        # Whatever is left in the group (workers, helpers) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        Running.live.pop(self.proc.pid, None)
        _write_pidfile()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @classmethod
    def stop_all(cls) -> None:
        for running in list(cls.live.values()):
            running.stop()


def _write_pidfile() -> None:
    PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text("".join(f"{pid}\n" for pid in Running.live))


@contextlib.contextmanager
def started(spec: ServerSpec, tag: str) -> Iterator[Running]:
    running = Running(spec, tag)
    try:
        yield running
    finally:
        running.stop()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- model, check, load -------------------------------------------------------------------


_META: dict[str, Any] = {}
MODEL_KIND = "logreg"  # the model being benchmarked (set per model by run())


def model_kind() -> str:
    return MODEL_KIND


def model_dir_for(kind: str) -> Path:
    return OUT / "model" if kind == "logreg" else OUT / f"model-{kind}"


def results_stem(kind: str) -> str:
    """``results`` for the small model (the file name every earlier run wrote), else
    ``results-<kind>``."""
    return "results" if kind == "logreg" else f"results-{kind}"


def meta() -> dict[str, Any]:
    if not _META:
        _META.update(json.loads((MODEL_DIR / "meta.json").read_text()))
    return _META


def model_name() -> str:
    return str(meta()["model_name"])


def infer_path() -> str:
    return f"/v2/models/{model_name()}/infer"


def build_model(kind: str = "logreg") -> None:
    """Build ``kind`` into MODEL_DIR (router, shadow and drift benches: the small model)."""
    subprocess.run(
        [str(PROJECT_PY), str(BENCH / "make_model.py"), str(MODEL_DIR), kind],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _META.clear()


def _post_and_check(
    client: httpx.Client, running: Running, body: bytes, label: int, reference: list[float]
) -> None:
    """POST one body; 200 and the label and probabilities ONNX Runtime gave for it."""
    name = running.spec.name
    response = client.post(
        running.base_url + infer_path(),
        content=body,
        headers={"content-type": "application/json"},
    )
    if response.status_code != 200:
        raise BenchError(f"{name} answered {response.status_code}: {response.text[:300]}")
    try:
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        got = int(outputs["label"]["data"][0])
        probabilities = [float(p) for p in outputs["probabilities"]["data"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise BenchError(
            f"{name} gave an unexpected body ({exc!r}): {response.text[:300]}"
        ) from exc
    if got != label:
        raise BenchError(f"{name} says label {got}, ONNX Runtime says {label}")
    if len(probabilities) != len(reference) or any(
        not math.isclose(p, q, abs_tol=1e-5) for p, q in zip(probabilities, reference, strict=False)
    ):
        raise BenchError(f"{name} probabilities {probabilities} differ from {reference}")


def check_response(running: Running) -> None:
    """One request through httpx: 200 and the label ONNX Runtime gives when called directly."""
    body = (MODEL_DIR / "request.json").read_bytes()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        _post_and_check(
            client, running, body, meta()["expected_label"], meta()["expected_probabilities"]
        )


def check_concurrent(running: Running, repeats: int = 3) -> None:
    """Distinct rows (meta's ``check_rows``), one request each, sent at once from as many
    connections: each answer must be its own row's, so a server that merges requests into
    one runtime call must also split the result back right."""
    checks = meta().get("check_rows") or []
    if not checks:
        return
    gate = threading.Barrier(len(checks))
    failures: list[Exception] = []

    def one(check: dict[str, Any]) -> None:
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": meta()["input_name"],
                        "shape": [1, len(check["data"])],
                        "datatype": "FP32",
                        "data": check["data"],
                    }
                ]
            }
        )
        try:
            with httpx.Client(timeout=10.0, trust_env=False) as client:
                for _ in range(repeats):
                    gate.wait(10.0)
                    _post_and_check(client, running, body, check["label"], check["probabilities"])
        except Exception as exc:
            gate.abort()
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in checks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:  # the first real failure, not the broken barrier it left the others
        real = [f for f in failures if not isinstance(f, threading.BrokenBarrierError)]
        raise BenchError(
            f"{running.spec.name}, {len(checks)} distinct rows at once: {(real or failures)[0]}"
        )


_RESULT = re.compile(r"^BENCH_RESULT (\{.*\})$", re.MULTILINE)


def run_wrk(running: Running, concurrency: int, seconds: int, tag: str) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        running.base_url + infer_path(),
    ]
    env = {**os.environ, "BENCH_BODY": str(MODEL_DIR / "request.json")}
    server_before, client_before = running.cpu_seconds(), _children_cpu_seconds()
    cores_before = _core_busy_seconds()
    wall_before = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - wall_before
    server_cpu = running.cpu_seconds() - server_before
    client_cpu = _children_cpu_seconds() - client_before
    cores_after = _core_busy_seconds()
    (LOGS / f"{tag}.wrk.txt").write_text(proc.stdout + proc.stderr)
    match = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise BenchError(
            f"wrk failed against {running.spec.name} (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout)[-500:]}"
        )
    result: dict[str, Any] = json.loads(match.group(1))
    errors = {
        k: result[k]
        for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
        if result[k]
    }
    if errors:
        raise BenchError(
            f"{running.spec.name} at c={concurrency}: wrk counted errors {errors}; "
            f"see {LOGS / (tag + '.wrk.txt')} and {running.log_path}"
        )
    if result["requests"] == 0:
        raise BenchError(f"{running.spec.name} at c={concurrency}: no request completed")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # Share of one core used while wrk ran: the server should be near 1.0 at c=16 and wrk
    # well below it, or the load generator is what is being measured.
    result["server_cpu_util"] = round(server_cpu / wall, 3)
    result["client_cpu_util"] = round(client_cpu / wall, 3)
    # What else ran on the two cores meanwhile (other processes, interrupts): a measurement
    # taken while something else competed for the server's core is not comparable.
    busy_server = cores_after.get(SERVER_CPU, 0.0) - cores_before.get(SERVER_CPU, 0.0)
    busy_client = cores_after.get(CLIENT_CPU, 0.0) - cores_before.get(CLIENT_CPU, 0.0)
    result["other_on_server_core"] = round(max(0.0, busy_server - server_cpu) / wall, 3)
    result["other_on_client_core"] = round(max(0.0, busy_client - client_cpu) / wall, 3)
    return result


def disturbed(result: dict[str, Any], max_other: float) -> bool:
    """Did other work take more than ``max_other`` of either bench core during the run?"""
    other: float = max(result["other_on_server_core"], result["other_on_client_core"])
    return other > max_other


def _core_busy_seconds() -> dict[str, float]:
    """Busy (non-idle, non-iowait) seconds of each CPU since boot, from /proc/stat."""
    busy: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values[:8]]
                # user nice system idle iowait irq softirq steal
                busy[name[3:]] = (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS
    return busy


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- machine notes ------------------------------------------------------------------------

_VERSIONS_SNIPPET = """
import importlib.metadata as m, importlib.util as u, json, sys
names = sys.argv[1:]
out = {"python": sys.version.split()[0]}
for n in names:
    try:
        out[n] = m.version(n)
    except m.PackageNotFoundError:
        out[n] = None
out["uvicorn_http"] = "httptools" if u.find_spec("httptools") else "h11"
out["uvicorn_loop"] = "uvloop" if u.find_spec("uvloop") else "asyncio"
print(json.dumps(out))
"""

_PACKAGES = {
    "project": ["serinus", "onnxruntime", "uvicorn", "uvloop", "httptools", "orjson", "numpy"],
    "mlserver": ["mlserver", "onnxruntime", "uvicorn", "uvloop", "httptools", "fastapi", "numpy"],
    "kserve": ["kserve", "onnxruntime", "uvicorn", "uvloop", "httptools", "fastapi", "numpy"],
}


def venv_versions(python: Path, packages: list[str]) -> dict[str, Any]:
    if not python.exists():
        return {"error": f"{python} missing"}
    proc = subprocess.run(
        [str(python), "-c", _VERSIONS_SNIPPET, *packages],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    parsed: dict[str, Any] = json.loads(proc.stdout)
    return parsed


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "serving_dirty": bool(git("status", "--porcelain", "--", "serving")),
    }


def serving_fingerprint() -> str:
    """Hash of serving/'s Python sources: serinus runs from the work tree (editable install)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "serving").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def machine_notes(selected: list[str]) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    versions: dict[str, Any] = {
        "project": venv_versions(PROJECT_PY, _PACKAGES["project"]),
    }
    if "mlserver" in selected:
        versions["mlserver"] = venv_versions(
            OUT / "venv-mlserver" / "bin" / "python", _PACKAGES["mlserver"]
        )
    if "kserve" in selected:
        versions["kserve"] = venv_versions(
            OUT / "venv-kserve" / "bin" / "python", _PACKAGES["kserve"]
        )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout + wrk.stderr).strip().splitlines()[0] if wrk.stdout + wrk.stderr else "",
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
        "git": git_state(),
    }


# --- report -------------------------------------------------------------------------------


def summarize(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for server, by_conc in runs.items():
        for conc, measured in by_conc.items():
            if not measured:
                continue
            # Rounds measured while other work shared the bench cores are left out of the
            # median when there are undisturbed ones (they are still in "runs").
            rounds = [r for r in measured if not r["disturbed"]] or measured
            batches = [r["batches"] for r in rounds if r.get("batches")]
            summary.setdefault(server, {})[str(conc)] = {
                "rps": statistics.median(r["rps"] for r in rounds),
                "p50_us": statistics.median(r["p50_us"] for r in rounds),
                "p99_us": statistics.median(r["p99_us"] for r in rounds),
                "rps_min": min(r["rps"] for r in rounds),
                "rps_max": max(r["rps"] for r in rounds),
                "server_cpu_util": statistics.median(r["server_cpu_util"] for r in rounds),
                "client_cpu_util": statistics.median(r["client_cpu_util"] for r in rounds),
                # Server CPU per request: what a request costs the server, whatever the
                # machine's noise did to requests/s.
                "server_cpu_us_per_request": statistics.median(
                    r["server_cpu_util"] * 1e6 / r["rps"] for r in rounds
                ),
                "rows_per_call": (
                    statistics.median(b["rows_per_call"] for b in batches) if batches else None
                ),
                "runtime_us_per_call": (
                    statistics.median(b["runtime_us_per_call"] for b in batches)
                    if batches
                    else None
                ),
                "disturbed_in_median": sum(1 for r in rounds if r["disturbed"]),
                "rounds": len(measured),
                "rounds_in_median": len(rounds),
            }
    return summary


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for variant in SERINUS_VARIANTS:
        if variant not in summary:
            continue
        for peer in ("mlserver", "kserve", "floor"):
            if peer not in summary:
                continue
            for conc in map(str, CONCURRENCIES):
                ours, theirs = summary[variant].get(conc), summary[peer].get(conc)
                if not ours or not theirs:
                    continue
                rows.append(
                    {
                        "serinus": variant,
                        "peer": peer,
                        "concurrency": int(conc),
                        "rps": ours["rps"] / theirs["rps"],
                        "p50": ours["p50_us"] / theirs["p50_us"],
                        "p99": ours["p99_us"] / theirs["p99_us"],
                    }
                )
    return rows


def versions_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    versions = m["versions"]
    project = versions["project"]
    git = m["git"]
    commit = (git["commit"] or "?")[:10] + (
        " + uncommitted serving/" if git["serving_dirty"] else ""
    )
    parts = [f"serinus {project.get('serinus')} ({commit})"]
    for peer, label in (("mlserver", "MLServer"), ("kserve", "KServe")):
        if peer in versions and versions[peer].get(peer):
            parts.append(f"{label} {versions[peer][peer]}")
    parts += [
        f"uvicorn {project.get('uvicorn')}",
        f"Python {m['python']}",
        m["wrk"].split(" [")[0],
    ]
    return ", ".join(parts) + "."


#: Issue 16: with adaptive batching on both sides, serinus at least this many times
#: MLServer's requests/s at concurrency 16.
MLSERVER_BATCHED_GOAL = 3.0


def mlserver_goal(result: dict[str, Any]) -> str | None:
    """The issue-16 line: serinus ÷ MLServer (its batching on) requests/s at c=16."""
    if not result["config"].get("mlserver_batching"):
        return None
    for r in result["ratios"]:
        if r["serinus"] == "serinus" and r["peer"] == "mlserver" and r["concurrency"] == 16:
            verdict = "met" if r["rps"] >= MLSERVER_BATCHED_GOAL else "NOT met"
            return (
                f"serinus ÷ MLServer (both batching) at c=16: **{r['rps']:.2f}x** requests/s, "
                f"p99 {r['p99']:.2f}x; goal >= {MLSERVER_BATCHED_GOAL:g}x: {verdict}."
            )
    return None


def markdown(result: dict[str, Any]) -> str:
    summary, specs = result["summary"], result["servers"]
    m = result["machine"]
    ort_version = m["versions"]["project"].get("onnxruntime")
    model = result["model"]
    lines = [
        f"Model `{model['kind']}`: {model['description']}; ONNX Runtime "
        f"{ort_version} with 1 intra-op + 1 inter-op thread in every server. "
        f"Server on core {m['server_cpu']}, wrk on core {m['client_cpu']}; "
        f"{m['nproc']} x {m['cpu_model']}. Median of {result['config']['rounds']} interleaved "
        f"rounds of {result['config']['seconds']} s each.",
        "",
        "Versions: " + versions_line(result),
    ]
    if "mlserver" in result["config"]["servers"]:
        batching = result["config"]["mlserver_batching"]
        lines += [
            "",
            (
                "MLServer's adaptive batching: **on**, "
                f"max_batch_size {batching['max_batch_size']}, "
                f"max_batch_time {batching['max_batch_time'] * 1000:g} ms (model-settings.json)."
                if batching
                else "MLServer's adaptive batching: off."
            ),
        ]
    lines += [
        "",
        "| server | c | req/s | p50 (ms) | p99 (ms) | server CPU (µs/req) | rows/runtime call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in result["config"]["servers"]:
        for conc in map(str, CONCURRENCIES):
            row = summary.get(server, {}).get(conc)
            if row is None:
                continue
            per_call = row.get("rows_per_call")
            lines.append(
                f"| {server} | {conc} | {row['rps']:,.0f} | {row['p50_us'] / 1000:.3f} "
                f"| {row['p99_us'] / 1000:.3f} | {row['server_cpu_us_per_request']:.0f} "
                f"| {'-' if per_call is None else f'{per_call:.1f}'} |"
            )
    if result["ratios"]:
        lines += [
            "",
            "Serinus ÷ peer (req/s above 1 and latency below 1 favour serinus):",
            "",
            "| serinus | vs | c | req/s | p50 | p99 |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in result["ratios"]:
            lines.append(
                f"| {r['serinus']} | {r['peer']} | {r['concurrency']} | {r['rps']:.2f}x "
                f"| {r['p50']:.2f}x | {r['p99']:.2f}x |"
            )
    goal = mlserver_goal(result)
    if goal:
        lines += ["", goal]
    if result["serving_sources"]["changed_during_run"]:
        lines += [
            "",
            "WARNING: serving/ changed during the run (serinus rounds ran different code).",
        ]
    disturbed_runs = sum(
        row["disturbed_in_median"] for by in summary.values() for row in by.values()
    )
    dropped = sum(
        row["rounds"] - row["rounds_in_median"] for by in summary.values() for row in by.values()
    )
    if disturbed_runs:
        lines += [
            "",
            f"WARNING: {disturbed_runs} measurement(s) in the medians ran while other processes "
            f"used more than {result['config']['max_other_pct']}% of a bench core (see "
            "other_on_server_core / other_on_client_core in results.json); rerun on a quiet "
            "machine before quoting these numbers.",
        ]
    elif dropped:
        lines += [
            "",
            f"Note: {dropped} round(s) measured while other processes shared the bench cores "
            "were left out of the medians.",
        ]
    lines += ["", "Servers:", ""]
    for name in result["config"]["servers"]:
        lines.append(f"- {name}: {specs[name]}")
    for name, reason in result["skipped"].items():
        lines.append(f"- {name}: SKIPPED ({reason})")
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def selected_servers() -> list[str]:
    raw = os.environ.get("BENCH_SERVERS", "").replace(",", " ").split()
    if not raw:
        return list(ALL_SERVERS)
    unknown = sorted(set(raw) - set(ALL_SERVERS))
    if unknown:
        raise BenchError(f"BENCH_SERVERS: unknown {unknown}; choose from {', '.join(ALL_SERVERS)}")
    return [s for s in ALL_SERVERS if s in raw]


def selected_models() -> list[str]:
    raw = os.environ.get("BENCH_MODEL", "").replace(",", " ").split()
    if not raw:
        return list(ALL_MODELS)
    unknown = sorted(set(raw) - set(ALL_MODELS))
    if unknown:
        raise BenchError(f"BENCH_MODEL: unknown {unknown}; choose from {', '.join(ALL_MODELS)}")
    return [m for m in ALL_MODELS if m in raw]


@dataclass(frozen=True)
class Config:
    rounds: int
    seconds: int
    warmup: int
    retries: int
    max_other: float


def run() -> int:
    config = Config(
        rounds=env_int("BENCH_ROUNDS", 3),
        seconds=env_int("BENCH_SECONDS", 5),
        warmup=env_int("BENCH_WARMUP", 1),
        retries=env_int("BENCH_RETRIES", 2),
        max_other=env_int("BENCH_MAX_OTHER_PCT", 5) / 100,
    )
    if config.rounds < 1 or config.seconds < 1:
        raise BenchError("BENCH_ROUNDS and BENCH_SECONDS must be at least 1")
    if not (SERVER_CPU.isdigit() and CLIENT_CPU.isdigit()) or SERVER_CPU == CLIENT_CPU:
        raise BenchError("BENCH_SERVER_CPU and BENCH_CLIENT_CPU must be two different CPU numbers")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("the benchmark needs 2 CPUs: one for the server, one for wrk")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found (bench/run.sh installs it)")
    models = selected_models()
    selected_servers()  # unknown names fail before anything runs

    LOGS.mkdir(parents=True, exist_ok=True)
    (OUT / "run").mkdir(parents=True, exist_ok=True)
    for kind in models:
        run_model(kind, config)
    return 0


def measure(running: Running, conc: int, tag: str, config: Config, label: str) -> dict[str, Any]:
    """One wrk run (again while disturbed, up to BENCH_RETRIES times), with the server's
    batch counters read before and after it when it has them."""
    counters = running.spec.batch_counters
    for attempt in range(1, config.retries + 2):
        before = counters(running) if counters else None
        res = run_wrk(running, conc, config.seconds, tag)
        after = counters(running) if counters else None
        res["attempt"] = attempt
        res["disturbed"] = disturbed(res, config.max_other)
        res["batches"] = None
        if before is not None and after is not None and after.calls > before.calls:
            calls = after.calls - before.calls
            res["batches"] = {
                "calls": calls,
                "rows_per_call": (after.rows - before.rows) / calls,
                "runtime_us_per_call": (after.seconds - before.seconds) * 1e6 / calls,
            }
        batches = res["batches"]
        log(
            f"  {label} {running.spec.name:<14} c={conc:<3} "
            f"{res['rps']:9,.0f} req/s  p50 {res['p50_us'] / 1000:7.3f} ms  "
            f"p99 {res['p99_us'] / 1000:7.3f} ms  "
            f"cpu: server {res['server_cpu_util']:.2f} "
            f"wrk {res['client_cpu_util']:.2f} "
            f"other {res['other_on_server_core']:.2f}/"
            f"{res['other_on_client_core']:.2f}"
            + (f"  rows/call {batches['rows_per_call']:.1f}" if batches else "")
            + ("  DISTURBED" if res["disturbed"] else "")
        )
        if not res["disturbed"] or attempt > config.retries:
            return res
        log("    other processes used the bench cores; measuring again")
        time.sleep(RETRY_PAUSE)
    raise AssertionError("unreachable")


def run_model(kind: str, config: Config) -> None:
    """The whole serve bench on one model; writes .bench/<results stem>.json and .md."""
    global MODEL_DIR, MODEL_KIND
    MODEL_KIND, MODEL_DIR = kind, model_dir_for(kind)
    build_model(kind)
    stem = results_stem(kind)
    rounds, seconds, warmup = config.rounds, config.seconds, config.warmup

    specs = server_specs()
    selected, skipped = [], {}
    for name in selected_servers():
        reason = specs[name].unavailable()
        if reason is None:
            selected.append(name)
        else:
            skipped[name] = reason
            log(f"SKIPPING {name}: {reason}")
    if not selected:
        raise BenchError("no server can run")

    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        s: {c: [] for c in CONCURRENCIES} for s in selected
    }
    startup: dict[str, list[float]] = {s: [] for s in selected}
    estimate = rounds * len(selected) * (warmup + seconds * len(CONCURRENCIES) + 3)
    log(
        f"bench ({kind}: {meta()['description']}): {', '.join(selected)}; {rounds} rounds x "
        f"c={CONCURRENCIES} x {seconds}s (about {estimate / 60:.1f} min)"
    )
    began = time.monotonic()
    fingerprint = serving_fingerprint()
    prefix = "" if kind == "logreg" else f"{kind}-"
    for rnd in range(rounds):
        shift = rnd % len(selected)
        for name in selected[shift:] + selected[:shift]:
            tag = f"{prefix}r{rnd + 1}-{name}"
            with started(specs[name], tag) as running:
                startup[name].append(running.wait_ready())
                check_response(running)
                check_concurrent(running)
                if warmup:
                    run_wrk(running, max(CONCURRENCIES), warmup, tag + "-warmup")
                for conc in CONCURRENCIES:
                    label = f"round {rnd + 1}/{rounds}"
                    res = measure(running, conc, f"{tag}-c{conc}", config, label)
                    res["round"] = rnd + 1
                    runs[name][conc].append(res)

    summary = summarize(runs)
    serving_changed = serving_fingerprint() != fingerprint
    if serving_changed:
        log("WARNING: serving/ changed during the run; serinus rounds ran different code")
    mlserver_batch = mlserver_batching()
    result: dict[str, Any] = {
        "status": "ok",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - began, 1),
        "model": {
            "kind": kind,
            "description": meta()["description"],
            "parameters": meta()["parameters"],
            "model_bytes": meta()["model_bytes"],
        },
        "config": {
            "rounds": rounds,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "retries": config.retries,
            "max_other_pct": round(config.max_other * 100),
            "concurrencies": list(CONCURRENCIES),
            "servers": selected,
            "wrk": "wrk -t1 -c{c} -d{seconds}s --latency --timeout 10s -s bench/infer.lua",
            "request": json.loads((MODEL_DIR / "request.json").read_text()),
            "path": infer_path(),
            "mlserver_batching": (
                {"max_batch_size": mlserver_batch[0], "max_batch_time": mlserver_batch[1]}
                if mlserver_batch
                else None
            ),
        },
        "servers": {name: specs[name].description for name in selected},
        "skipped": skipped,
        "machine": machine_notes(selected),
        "serving_sources": {"sha256_16": fingerprint, "changed_during_run": serving_changed},
        "startup_s": {k: [round(v, 2) for v in vs] for k, vs in startup.items()},
        "summary": summary,
        "ratios": ratios(summary),
        "runs": {s: {str(c): rs for c, rs in by.items()} for s, by in runs.items()},
    }
    json_path, md_path = OUT / f"{stem}.json", OUT / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    md_path.write_text(table)
    log(f"\nwrote {json_path} and {md_path}\n")
    sys.stdout.write(table)
    sys.stdout.flush()


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        return run()
    except BenchError as exc:
        log(f"bench FAILED: {exc}")
        with contextlib.suppress(OSError):
            (OUT / f"{results_stem(model_kind())}.json").write_text(
                json.dumps({"status": "failed", "error": str(exc)}, indent=2) + "\n"
            )
        return 1
    except KeyboardInterrupt:
        log("bench interrupted")
        return 130
    finally:
        # Signals again now would only interrupt the cleanup.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        Running.stop_all()


if __name__ == "__main__":
    sys.exit(main())

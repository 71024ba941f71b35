"""`make bench-fetch`: downloading a big model file, obstore against fsspec (s3fs, gcsfs),
and Serinus's fetch in parts against one stream (issue 20).

One file of random bytes (``BENCH_FETCH_MIB``, 512 MiB by default, made once under
``.bench/fetch/data/``) is served on 127.0.0.1 by fast servers on the server core:

- nginx (one process, ``sendfile``, ranges, ETag and ``If-Match`` on static files) as a
  plain HTTP server, and also as the data plane of S3: a path-style ``GET /BUCKET/KEY`` is
  an ordinary GET, and nginx answers it without looking at the signature. A ``HEAD`` works
  the same way; listing does not (nginx has no ListObjects), so the fsspec client is called
  with ``get_file``, which needs none;
- fake-gcs-server (Go, in-memory backend; ``hack/servers/install.sh`` builds it) for the
  GCS JSON API;
- nginx again on a second port where every connection is capped (``limit_rate``,
  ``BENCH_FETCH_CAP_MIB``, 128 MiB/s), as links that cap a connection do: the store
  ``s3-capped``.

Each fetch runs in a process of its own (``bench/fetch_client.py``) on the client core and
writes to tmpfs (``/dev/shm``), so the disk is not measured. Clients, for each store:

- ``serinus parts``: the source ``serinus fetch`` / ``fetch_model`` uses (``HttpSource``
  or ``ObjectStoreSource``) with the default ``Limits``: 16 MiB parts, 4 at once;
- ``serinus 1 stream``: the same with ``Limits(workers=1)``;
- ``obstore``: ``obstore.get(store, key).stream()`` written to a file (one stream);
- ``fsspec``: ``fsspec.filesystem(...).get_file(path, out)`` with s3fs, gcsfs, or fsspec's
  own HTTP filesystem, all with their defaults (s3fs and gcsfs fetch big files in
  concurrent ranges themselves; fsspec's HTTP does not). They live in a side venv,
  ``.bench/venv-fsspec``, never in the project's. gcsfs runs with
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``: its default first asks Google's gRPC
  storage-control API for the bucket's layout, which an emulator does not serve (60 s
  timeouts per call, retried, before it falls back).

Rounds are interleaved (every case once per round, in a rotated order); reported are
medians of MiB/s, the client's CPU seconds per GiB, its peak RSS, and per-round ratios
(parts ÷ one stream, obstore ÷ fsspec). Every output is checked against the source
(sha256 in the first round, size and sampled blocks after). The libraries' installed
size, dependency count and import time come from ``pip install --target`` directories
under ``.bench/fetch/libs/``.

Knobs: BENCH_FETCH_MIB (512), BENCH_FETCH_ROUNDS (7), BENCH_FETCH_STORES
(http,s3,gcs,s3-capped), BENCH_FETCH_CAP_MIB (128), BENCH_FETCH_PIP (the side venv's
requirements), BENCH_SERVER_CPU / BENCH_CLIENT_CPU (0, 1).
Writes .bench/fetch-results.json and .bench/fetch-results.md; prints the markdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as b  # process plumbing, core accounting, machine notes

WORK = b.OUT / "fetch"
DATA = WORK / "data"  # nginx's root and fake-gcs-server's -data: each folder a bucket
BUCKET, KEY = "models", "big.bin"
SIDE = b.OUT / "venv-fsspec"
SIDE_PY = SIDE / "bin" / "python"
SIDE_PIP = os.environ.get("BENCH_FETCH_PIP", "fsspec gcsfs s3fs adlfs")
CLIENT = b.BENCH / "fetch_client.py"
STORES = ("http", "s3", "gcs", "s3-capped")
CLIENT_TIMEOUT = 300.0
IMPORT_RUNS = 5
MIB = 1 << 20

NGINX_CONF = """
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {workdir}/body;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ }}
  }}
  server {{
    listen 127.0.0.1:{limited_port};
    root {root};
    limit_rate {limit_mib}m;
    location / {{ }}
  }}
}}
"""

#: The libraries compared, each ``pip install --target``-ed alone: what one costs.
LIBRARIES = {
    "obstore": ("obstore", "import obstore, obstore.store"),
    "s3fs": ("s3fs", "import s3fs"),
    "gcsfs": ("gcsfs", "import gcsfs"),
    "adlfs": ("adlfs", "import adlfs"),
    "s3fs+gcsfs+adlfs": ("s3fs gcsfs adlfs", "import s3fs, gcsfs, adlfs"),
}


@dataclass(frozen=True)
class Case:
    store: str
    client: str  # label
    python: Path
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.store}/{self.client}"


# --- setup --------------------------------------------------------------------------------


def ensure_side_venv() -> None:
    """.bench/venv-fsspec with BENCH_FETCH_PIP installed (reused while the spec is the same)."""
    stamp = SIDE / ".bench-stamp"
    if stamp.is_file() and stamp.read_text() == SIDE_PIP:
        return
    logfile = b.LOGS / "install-fsspec.log"
    b.log(f"installing {SIDE_PIP} into {SIDE.relative_to(b.ROOT)}; log: {logfile}")
    shutil.rmtree(SIDE, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    with logfile.open("wb") as out:
        for argv in (
            [base, "-m", "venv", str(SIDE)],
            [str(SIDE_PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(SIDE_PY), "-m", "pip", "install", *SIDE_PIP.split()],
        ):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise b.BenchError(f"`{' '.join(argv)}` failed; see {logfile}")
    stamp.write_text(SIDE_PIP)


def make_file(size: int) -> tuple[Path, str]:
    """The served file (random bytes, made once per size) and its sha256."""
    path = DATA / BUCKET / KEY
    digest_file = WORK / f"{KEY}.sha256"
    if path.is_file() and path.stat().st_size == size and digest_file.is_file():
        return path, digest_file.read_text().strip()
    b.log(f"writing {size // MIB} MiB of random bytes to {path.relative_to(b.ROOT)}")
    shutil.rmtree(DATA, ignore_errors=True)
    path.parent.mkdir(parents=True)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MIB))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    digest_file.write_text(digest.hexdigest())
    return path, digest.hexdigest()


def side_versions() -> dict[str, Any]:
    packages = ["fsspec", "s3fs", "gcsfs", "adlfs", "aiohttp", "aiobotocore", "botocore"]
    return b.venv_versions(SIDE_PY, packages)


# --- the libraries: size, dependencies, import time ---------------------------------------


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _import_seconds(python: str, path: Path | None, statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    proc = subprocess.run(
        ["taskset", "-c", b.CLIENT_CPU, python, "-s", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise b.BenchError(f"{statement!r} failed: {proc.stderr.strip()[-400:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def library_facts(pins: dict[str, str]) -> dict[str, Any]:
    """For each library alone: installed bytes and distributions of a ``pip install
    --target`` (the library and everything it pulls), and the median seconds to import it
    in a fresh interpreter (after one run that warms the page cache)."""
    base = getattr(sys, "_base_executable", sys.executable)
    facts: dict[str, Any] = {}
    for name, (requirements, statement) in LIBRARIES.items():
        spec = [f"{r}=={pins[r]}" if pins.get(r) else r for r in requirements.split()]
        target = WORK / "libs" / name
        stamp = target / ".bench-stamp"
        if not (stamp.is_file() and stamp.read_text() == " ".join(spec)):
            b.log(f"pip install --target {target.relative_to(b.ROOT)} {' '.join(spec)}")
            shutil.rmtree(target, ignore_errors=True)
            proc = subprocess.run(
                [str(SIDE_PY), "-m", "pip", "install", "--quiet", "--target", str(target), *spec],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise b.BenchError(f"pip install --target {name} failed: {proc.stderr[-400:]}")
            stamp.write_text(" ".join(spec))
        installed = _tree_bytes(target)
        dists = sorted(p.name.rsplit("-", 1)[0] for p in target.glob("*.dist-info"))
        _import_seconds(base, target, statement)  # warm
        times = [_import_seconds(base, target, statement) for _ in range(IMPORT_RUNS)]
        facts[name] = {
            "requirements": spec,
            "installed_mib": installed / MIB,
            "distributions": len(dists),
            "distribution_names": dists,
            "import_s_median": statistics.median(times),
            "import_s": times,
        }
        b.log(
            f"  {name:<17} {installed / MIB:6.1f} MiB  {len(dists):3d} distributions  "
            f"import {statistics.median(times) * 1000:6.0f} ms"
        )
    return facts


# --- servers ------------------------------------------------------------------------------


def fake_gcs_binary() -> Path:
    proc = subprocess.run(
        ["bash", str(b.ROOT / "hack" / "servers" / "install.sh")],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise b.BenchError(f"hack/servers/install.sh failed:\n{proc.stderr[-800:]}")
    binary = Path(proc.stdout.strip().splitlines()[-1]) / "fake-gcs-server" / "fake-gcs-server"
    if not binary.is_file():
        raise b.BenchError(f"{binary} is missing (make system-deps)")
    return binary


def nginx_spec(limited_port: int, limit_mib: int) -> b.ServerSpec:
    """nginx on its own port, and on ``limited_port`` with each connection held to
    ``limit_mib`` MiB/s (``limit_rate``), as links that cap a connection do."""

    def build(port: int, workdir: Path) -> b.Launch:
        conf = workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workdir=workdir,
                port=port,
                root=DATA,
                limited_port=limited_port,
                limit_mib=limit_mib,
            )
        )
        return b.Launch(["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"])

    return b.ServerSpec("nginx", "nginx, one process, sendfile", build, lambda: None)


def fake_gcs_spec(binary: Path) -> b.ServerSpec:
    def build(port: int, _workdir: Path) -> b.Launch:
        argv = [
            str(binary), "-scheme", "http", "-host", b.HOST, "-port", str(port),
            "-public-host", f"{b.HOST}:{port}", "-backend", "memory", "-data", str(DATA),
            "-log-level", "warn",
        ]  # fmt: skip
        return b.Launch(argv)

    return b.ServerSpec("fake-gcs", "fake-gcs-server, memory backend", build, lambda: None)


def wait_for(running: b.Running, path: str) -> None:
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if running.proc.poll() is not None:
                raise b.BenchError(f"{running.spec.name} exited:\n{running.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.head(running.base_url + path).status_code == 200:
                    return
            time.sleep(0.2)
    raise b.BenchError(f"{running.spec.name} did not serve {path}:\n{running.log_tail()}")


# --- cases --------------------------------------------------------------------------------


def _s3_clients(store: str, endpoint: str) -> list[Case]:
    return [
        Case(store, "obstore", b.PROJECT_PY, {
            "client": "obstore", "store": f"s3://{BUCKET}", "key": KEY,
            "options": {"config": {"endpoint": endpoint, "virtual_hosted_style_request": False},
                        "client_options": {"allow_http": True}}}),
        Case(store, "fsspec", SIDE_PY, {
            "client": "fsspec", "protocol": "s3", "path": f"{BUCKET}/{KEY}",
            "options": {"endpoint_url": endpoint}}),
    ]  # fmt: skip


def cases(stores: list[str], nginx: str, limited: str, gcs: str) -> list[Case]:
    project = b.PROJECT_PY
    http_uri = f"{nginx}/{BUCKET}/{KEY}"
    gs_uri = f"gs://{BUCKET}/{KEY}?endpoint={gcs}"
    allow_http = {"client_options": {"allow_http": True}}
    by_store: dict[str, list[Case]] = {
        "http": [
            Case("http", "obstore", project, {
                "client": "obstore", "store": f"{nginx}/{BUCKET}", "key": KEY,
                "options": allow_http}),
            Case("http", "fsspec", SIDE_PY, {
                "client": "fsspec", "protocol": "http", "path": http_uri}),
        ],
        "s3": _s3_clients("s3", nginx),
        "s3-capped": _s3_clients("s3-capped", limited),
        "gcs": [
            Case("gcs", "obstore", project, {
                "client": "obstore", "store": f"gs://{BUCKET}", "key": KEY,
                "options": {"config": {"base_url": gcs}, **allow_http}}),
            Case("gcs", "fsspec", SIDE_PY, {
                "client": "fsspec", "protocol": "gcs", "path": f"{BUCKET}/{KEY}",
                "options": {"endpoint_url": gcs, "token": "anon"}}),
        ],
    }  # fmt: skip
    uris = {
        "http": http_uri,
        "s3": f"s3://{BUCKET}/{KEY}?endpoint={nginx}&path_style=true",
        "s3-capped": f"s3://{BUCKET}/{KEY}?endpoint={limited}&path_style=true",
        "gcs": gs_uri,
    }
    out: list[Case] = []
    for store in stores:
        serinus = {"client": "serinus", "uri": uris[store]}
        out += [
            Case(store, "serinus parts", project, {**serinus, "workers": 4}),
            Case(store, "serinus 1 stream", project, {**serinus, "workers": 1}),
            *by_store[store],
        ]
    return out


def client_env(key_file: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and k != "PYTHONPATH"
    }
    env.update(
        {
            # nginx ignores the signature; obstore and botocore still sign every request.
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # A key for emulators: obstore asks for no OAuth token (tests/support/stores.py).
            "GOOGLE_SERVICE_ACCOUNT": str(key_file),
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return env


# --- one fetch ----------------------------------------------------------------------------


def core_seconds() -> tuple[dict[str, float], float]:
    """Per CPU, seconds spent in user, nice, system, irq and steal since boot, and all CPUs'
    steal. Unlike bench.py's count, softirq is left out: on loopback the receiving side's
    TCP work runs as softirq on either core and is charged to no process, so it would
    look like someone else's load."""
    busy: dict[str, float] = {}
    steal = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                user, nice, system, _idle, _iowait, irq, _softirq, st = map(int, values[:8])
                busy[name[3:]] = (user + nice + system + irq + st) / b._CLOCK_TICKS
                steal += st / b._CLOCK_TICKS
    return busy, steal


def verify(out: Path, source: Path, digest: str, *, full: bool) -> None:
    size = source.stat().st_size
    if out.stat().st_size != size:
        raise b.BenchError(f"{out}: {out.stat().st_size} bytes, expected {size}")
    if full:
        with out.open("rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
        if got != digest:
            raise b.BenchError(f"{out}: sha256 {got}, expected {digest}")
        return
    rng = random.Random(size)
    offsets = [0, size - 65536, *(rng.randrange(0, size - 65536) for _ in range(16))]
    with out.open("rb") as f, source.open("rb") as g:
        for offset in offsets:
            f.seek(offset)
            g.seek(offset)
            if f.read(65536) != g.read(65536):
                raise b.BenchError(f"{out}: bytes at {offset} differ from the source")


def fetch_once(
    case: Case,
    *,
    env: dict[str, str],
    servers: list[b.Running],
    source: Path,
    digest: str,
    scratch: Path,
    full_check: bool,
    tag: str,
) -> dict[str, Any]:
    out_dir = scratch / tag
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    out = out_dir / "out.bin"
    spec = {**case.spec, "out": str(out)}
    log_path = b.LOGS / f"fetch-{tag}.log"
    cores_before, steal_before = core_seconds()
    servers_before = sum(s.cpu_seconds() for s in servers)
    children_before = b._children_cpu_seconds()
    began = time.monotonic()
    with log_path.open("wb") as err:
        proc = subprocess.run(
            ["taskset", "-c", b.CLIENT_CPU, str(case.python), str(CLIENT), json.dumps(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=CLIENT_TIMEOUT,
        )
    wall = time.monotonic() - began
    client_cpu = b._children_cpu_seconds() - children_before
    server_cpu = sum(s.cpu_seconds() for s in servers) - servers_before
    cores_after, steal_after = core_seconds()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise b.BenchError(f"{case.name} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    verify(out, source, digest, full=full_check)
    shutil.rmtree(out_dir, ignore_errors=True)

    def busy(core: str) -> float:
        return cores_after.get(core, 0.0) - cores_before.get(core, 0.0)

    result.update(
        {
            "mib_s": result["bytes"] / MIB / result["fetch_s"],
            "cpu_s_per_gib": result["fetch_cpu_s"] / (result["bytes"] / (1 << 30)),
            "process_wall_s": wall,
            "client_cpu_s": client_cpu,
            "server_cpu_s": server_cpu,
            "other_on_server_core": max(0.0, busy(b.SERVER_CPU) - server_cpu) / wall,
            "steal_s": steal_after - steal_before,
            "other_on_client_core": max(0.0, busy(b.CLIENT_CPU) - client_cpu) / wall,
            "sha256_checked": full_check,
        }
    )
    return result


# --- report -------------------------------------------------------------------------------


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        if not results:
            continue
        med = statistics.median
        summary[name] = {
            "runs": len(results),
            "mib_s": med(r["mib_s"] for r in results),
            "mib_s_min": min(r["mib_s"] for r in results),
            "mib_s_max": max(r["mib_s"] for r in results),
            "cpu_s_per_gib": med(r["cpu_s_per_gib"] for r in results),
            "maxrss_mib": med(r["maxrss_kib"] for r in results) / 1024,
            "rss_growth_mib": med(r["maxrss_kib"] - r["maxrss_after_import_kib"] for r in results)
            / 1024,
            "import_s": med(r["import_s"] for r in results),
            "other_on_server_core": med(r["other_on_server_core"] for r in results),
            "other_on_client_core": med(r["other_on_client_core"] for r in results),
        }
    return summary


RATIOS = (
    ("serinus parts", "serinus 1 stream", "parts ÷ 1 stream"),
    ("obstore", "fsspec", "obstore ÷ fsspec"),
    ("serinus parts", "fsspec", "serinus parts ÷ fsspec"),
)


def ratios(runs: dict[str, list[dict[str, Any]]], stores: list[str]) -> list[dict[str, Any]]:
    """MiB/s ratios of runs in the same round (close in time, so they share the noise)."""
    rows = []
    for store in stores:
        for a, c, label in RATIOS:
            ours = {r["round"]: r for r in runs.get(f"{store}/{a}", [])}
            theirs = {r["round"]: r for r in runs.get(f"{store}/{c}", [])}
            per_round = [ours[k]["mib_s"] / theirs[k]["mib_s"] for k in sorted(ours) if k in theirs]
            if per_round:
                rows.append(
                    {
                        "store": store,
                        "ratio": label,
                        "median": statistics.median(per_round),
                        "per_round": per_round,
                    }
                )
    return rows


STORE_LABELS = {
    "http": "HTTP (nginx)",
    "s3": "S3 API (nginx)",
    "gcs": "GCS JSON API (fake-gcs-server)",
    "s3-capped": "S3 API (nginx), each connection capped",
}
FSSPEC_LABELS = {"http": "fsspec HTTP (aiohttp)", "s3": "s3fs", "gcs": "gcsfs", "s3-capped": "s3fs"}


def store_label(store: str, cfg: dict[str, Any]) -> str:
    label = STORE_LABELS[store]
    return f"{label} at {cfg['cap_mib_per_connection']} MiB/s" if store == "s3-capped" else label


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"{cfg['mib']} MiB file; server on core {m['server_cpu']}, client on core "
        f"{m['client_cpu']} (taskset); {m['nproc']} x {m['cpu_model']}; load average at "
        f"start {m['loadavg_at_start'][0]:.2f}. Median of {cfg['rounds']} interleaved rounds.",
        "",
        "| store | client | MiB/s (min-max) | client CPU s/GiB | peak RSS MiB (growth) "
        "| other load server/client core |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["summary"].items():
        store, client = name.split("/", 1)
        label = FSSPEC_LABELS[store] if client == "fsspec" else client
        lines.append(
            f"| {store_label(store, cfg)} | {label} | {row['mib_s']:,.0f} "
            f"({row['mib_s_min']:,.0f}-{row['mib_s_max']:,.0f}) | {row['cpu_s_per_gib']:.2f} "
            f"| {row['maxrss_mib']:.0f} ({row['rss_growth_mib']:+.0f}) "
            f"| {row['other_on_server_core']:.0%} / {row['other_on_client_core']:.0%} |"
        )
    lines += [
        "",
        "Ratios of MiB/s within each round (median, and per round):",
        "",
        "| store | ratio | median | per round |",
        "| --- | --- | ---: | --- |",
    ]
    for r in result["ratios"]:
        lines.append(
            f"| {store_label(r['store'], cfg)} | {r['ratio']} | {r['median']:.2f}x "
            f"| {', '.join(f'{x:.2f}' for x in r['per_round'])} |"
        )
    lines += [
        "",
        "| library | installed MiB | distributions | import (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, facts in result["libraries"].items():
        lines.append(
            f"| {name} | {facts['installed_mib']:.1f} | {facts['distributions']} "
            f"| {facts['import_s_median'] * 1000:.0f} |"
        )
    project, side = m["versions"]["project"], m["versions"]["side"]
    lines += [
        "",
        f"Versions: obstore {project.get('obstore')}, httpx {project.get('httpx')}; "
        + ", ".join(f"{k} {side.get(k)}" for k in ("fsspec", "s3fs", "gcsfs", "adlfs", "aiohttp"))
        + f"; nginx {m['nginx']}; {m['fake_gcs']}; Python {m['python']}.",
    ]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def selected_stores() -> list[str]:
    raw = os.environ.get("BENCH_FETCH_STORES", "").replace(",", " ").split()
    unknown = sorted(set(raw) - set(STORES))
    if unknown:
        raise b.BenchError(f"BENCH_FETCH_STORES: unknown {unknown}; choose from {STORES}")
    return [s for s in STORES if s in raw] if raw else list(STORES)


def scratch_dir() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"serinus-fetch-bench-{os.getpid()}"
    return WORK / "out"  # no tmpfs: the disk is in the numbers


def run() -> int:
    mib = b.env_int("BENCH_FETCH_MIB", 512)
    rounds = b.env_int("BENCH_FETCH_ROUNDS", 7)
    cap = b.env_int("BENCH_FETCH_CAP_MIB", 128)
    if mib < 128 or rounds < 1 or cap < 1:
        raise b.BenchError(
            "BENCH_FETCH_MIB must be at least 128, BENCH_FETCH_ROUNDS and BENCH_FETCH_CAP_MIB >= 1"
        )
    stores = selected_stores()
    for tool in ("nginx", "taskset"):
        if shutil.which(tool) is None:
            raise b.BenchError(f"{tool} not found (apt-get install nginx-light util-linux)")
    if (os.cpu_count() or 1) < 2 or b.SERVER_CPU == b.CLIENT_CPU:
        raise b.BenchError("needs two different cores (BENCH_SERVER_CPU, BENCH_CLIENT_CPU)")
    b.LOGS.mkdir(parents=True, exist_ok=True)
    (b.OUT / "run").mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)

    ensure_side_venv()
    gcs_binary = fake_gcs_binary()
    source, digest = make_file(mib * MIB)
    side = side_versions()
    project = b.venv_versions(b.PROJECT_PY, ["serinus", "obstore", "httpx"])
    pins = {k: side.get(k) or "" for k in ("s3fs", "gcsfs", "adlfs")}
    pins["obstore"] = project.get("obstore") or ""
    b.log("libraries (pip install --target, each alone):")
    libraries = library_facts(pins)

    key_file = WORK / "service-account.json"
    key_file.write_text(
        json.dumps({"disable_oauth": True, "client_email": "", "private_key": "",
                    "private_key_id": ""})
    )  # fmt: skip
    env = client_env(key_file)
    scratch = scratch_dir()
    runs: dict[str, list[dict[str, Any]]] = {}
    machine = {
        "nproc": os.cpu_count(),
        "cpu_model": b.cpu_model(),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "server_cpu": b.SERVER_CPU,
        "client_cpu": b.CLIENT_CPU,
        "loadavg_at_start": os.getloadavg(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        .stderr.strip()
        .split("/")[-1],
        "fake_gcs": "fake-gcs-server " + gcs_binary.parent.parent.name,
        "versions": {"project": project, "side": side},
        "git": b.git_state(),
        "scratch": str(scratch.parent),
    }
    with contextlib.suppress(OSError):
        stamp = (gcs_binary.parent / ".complete").read_text().strip()
        machine["fake_gcs"] = stamp.rsplit("/", 1)[-1]
    limited_port = b.free_port()
    began = time.monotonic()
    try:
        with (
            b.started(nginx_spec(limited_port, cap), "fetch-nginx") as nginx,
            b.started(fake_gcs_spec(gcs_binary), "fetch-fake-gcs") as gcs,
        ):
            wait_for(nginx, f"/{BUCKET}/{KEY}")
            wait_for(gcs, f"/storage/v1/b/{BUCKET}/o/{KEY}")
            limited = f"http://{b.HOST}:{limited_port}"
            all_cases = cases(stores, nginx.base_url, limited, gcs.base_url)
            runs = {case.name: [] for case in all_cases}
            common = {"env": env, "servers": [nginx, gcs], "source": source, "digest": digest}
            b.log(f"warming up: one unmeasured fetch per store ({', '.join(stores)})")
            for case in all_cases:
                if case.client == "obstore":
                    fetch_once(case, **common, scratch=scratch, full_check=False,
                               tag=f"warmup-{case.store}")  # fmt: skip
            for rnd in range(1, rounds + 1):
                shift = (rnd - 1) % len(all_cases)
                for case in all_cases[shift:] + all_cases[:shift]:
                    tag = f"r{rnd}-{case.store}-{case.client.replace(' ', '-')}"
                    res = fetch_once(case, **common, scratch=scratch, full_check=rnd == 1, tag=tag)
                    res["round"] = rnd
                    runs[case.name].append(res)
                    b.log(
                        f"  round {rnd}/{rounds} {case.name:<24} {res['mib_s']:7,.0f} MiB/s  "
                        f"cpu {res['cpu_s_per_gib']:.2f} s/GiB  "
                        f"peak RSS {res['maxrss_kib'] / 1024:5.0f} MiB  other "
                        f"{res['other_on_server_core']:.0%}/{res['other_on_client_core']:.0%}"
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        b.Running.stop_all()
    machine["loadavg_at_end"] = os.getloadavg()
    result = {
        "status": "ok",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - began, 1),
        "config": {
            "mib": mib,
            "rounds": rounds,
            "stores": stores,
            "cap_mib_per_connection": cap,
            "side_pip": SIDE_PIP,
        },
        "machine": machine,
        "libraries": libraries,
        "summary": summarize(runs),
        "ratios": ratios(runs, stores),
        "runs": runs,
    }
    (b.OUT / "fetch-results.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (b.OUT / "fetch-results.md").write_text(table)
    b.log(f"\nwrote {b.OUT / 'fetch-results.json'} and {b.OUT / 'fetch-results.md'}\n")
    sys.stdout.write(table)
    return 0


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, b._on_signal)
    try:
        return run()
    except b.BenchError as exc:
        b.log(f"bench-fetch FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        b.log("bench-fetch interrupted")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        b.Running.stop_all()


if __name__ == "__main__":
    sys.exit(main())

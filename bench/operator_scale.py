"""``make bench-operator``: the real ``serinus operator`` with N ModelDeployments on a real
control plane (kube-apiserver, kube-controller-manager and etcd built from source; the
tests' stand-in kubelet marks pods Ready).

For each N: create N simple canaries (router provider, one replica) in one burst against a
running operator and time how long until every one is Stable; let it settle; then, over an
idle window, the operator's CPU and RSS and the requests it sent (from the API server's
audit log, which names the user: only the operator's ServiceAccount is counted, and open
watches are not requests); then change ``--changes`` models at once and measure, from the
audit log's timestamps, the time from each change to the operator creating that model's
candidate Deployment. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster import Operator, md  # noqa: E402
from support.real_cluster import RealCluster, build_binaries, wait_for  # noqa: E402
from support.real_kube import CRDS, OPERATOR_NAMESPACE, OPERATOR_SA, RealKube  # noqa: E402

MD = ("serinus.dev/v1alpha1", "modeldeployments")
OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    n: int
    stable_s: float
    last_write_s: float
    burst_requests: int
    burst_cpu_s: float
    control_plane_cpu_s: float
    idle_rss_mb: float
    idle_cpu_pct: float
    idle_requests_per_md_min: float
    idle_reads: int
    cache_mb: float
    change_p50_ms: float
    change_p99_ms: float
    abort_ms: float
    burst_mix: dict[str, float]
    idle_seen: list[str]


def manifest(name: str, version: str) -> dict[str, Any]:
    """A simple canary that holds at 50% (the tests' manifest), one replica."""
    return md(version, name=name, replicas=1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def plane_cpu(cluster: RealCluster) -> float:
    """CPU seconds of etcd, the API server and the controller manager, and of this process
    (the stand-in kubelet's thread and the bench's polling)."""
    procs = cluster._procs.values()
    return sum(cpu_seconds(p.popen.pid) for p in procs) + time.process_time()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00")).timestamp()


def operator_requests(cluster: RealCluster, namespace: str, since: float, until: float) -> list:
    return [
        e
        for e in cluster.audit(user=OPERATOR, namespace=namespace)
        if e["verb"] != "watch" and e["stage"] == "ResponseComplete" and since <= stamp(e) < until
    ]


def phases(kube: RealKube, namespace: str) -> list[str]:
    return [(m.get("status") or {}).get("phase", "") for m in kube.list(*MD, namespace)]


def burst(kube: RealKube, namespace: str, n: int) -> None:
    def create(i: int) -> None:
        kube.create(
            {
                **manifest(f"m{i:05d}", "v1"),
                "metadata": {"name": f"m{i:05d}", "namespace": namespace},
            },
            "modeldeployments",
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(n)))


def change(kube: RealKube, cluster: RealCluster, namespace: str, n: int, count: int) -> list[float]:
    """Change ``count`` models at once; seconds from each change to its candidate's
    Deployment being created, from the audit log."""
    names = [f"m{i:05d}" for i in range(0, n, max(1, n // count))][:count]
    changed: dict[str, float] = {}
    for name in names:
        kube.patch(*MD, namespace, name, {"spec": manifest(name, "v2")["spec"]})
    deadline = time.time() + 120

    def created() -> dict[str, float]:
        found: dict[str, float] = {}
        for e in cluster.audit(user=None, namespace=namespace):
            ref = e.get("objectRef") or {}
            user = (e.get("user") or {}).get("username")
            if e["stage"] != "ResponseComplete":
                continue
            if (
                ref.get("resource") == "modeldeployments"
                and e["verb"] == "patch"
                and user != OPERATOR
                and ref.get("name") in names
                and not ref.get("subresource")
            ):
                changed[ref["name"]] = stamp(e)
            if (
                ref.get("resource") == "deployments"
                and user == OPERATOR
                and (e.get("responseStatus") or {}).get("code") == 201
            ):
                model = str(ref.get("name", ""))[:6]
                if model in names and model in changed and stamp(e) >= changed[model]:
                    found.setdefault(model, stamp(e))
        return found

    while time.time() < deadline:
        found = created()
        if len(found) == len(names):
            return sorted(found[m] - changed[m] for m in names)
        time.sleep(1)
    raise RuntimeError(f"only {len(created())} of {len(names)} candidates were created")


def abort(kube: RealKube, cluster: RealCluster, namespace: str, name: str) -> float:
    """Abort ``name``'s canary (at 50%) as a person would; seconds from the request to the
    operator writing the routing table that sends 100% to stable (the rollback's first
    effect), from the audit log."""
    wait_for(
        lambda: (
            ((kube.get(*MD, namespace, name) or {}).get("status") or {})
            .get("traffic", {})
            .get("candidate")
            == 50
        ),
        timeout=120,
        what=f"{name} at 50%",
    )
    time.sleep(2)  # let it sit idle at the pause
    kube.patch(
        *MD, namespace, name, {"metadata": {"annotations": {"serinus.dev/action": "abort:b1"}}}
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        asked = written = None
        for e in cluster.audit(user=None, namespace=namespace):
            ref = e.get("objectRef") or {}
            if e["stage"] != "ResponseComplete" or e["verb"] != "patch":
                continue
            user = (e.get("user") or {}).get("username")
            if (
                ref.get("resource") == "modeldeployments"
                and ref.get("name") == name
                and user != OPERATOR
                and not ref.get("subresource")
            ):
                asked = stamp(e)
            if (
                asked
                and ref.get("resource") == "configmaps"
                and ref.get("name") == f"{name}-routes"
                and user == OPERATOR
                and stamp(e) >= asked
            ):
                written = stamp(e)
                break
        if asked and written:
            return written - asked
        time.sleep(1)
    raise RuntimeError(f"{name}: no rollback within 60 s")


def metric_sum(operator: Operator, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for f in text_string_to_metric_families(operator.metrics())
        for s in f.samples
        if s.name == name
    )


def run_size(kube: RealKube, workdir: Path, n: int, args: argparse.Namespace) -> Result:
    cluster = kube.cluster
    namespace = kube.new_namespace(f"scale{n}")
    operator = Operator(
        kube=kube,
        workdir=workdir,
        namespace=namespace,
        name=f"operator-{n}",
        extra_args=[
            "--resync-seconds",
            str(args.resync),
            "--kube-api-qps",
            str(args.qps),
            "--kube-api-burst",
            str(args.burst),
        ],
    )
    operator.start()
    assert operator.process is not None
    pid = operator.process.pid
    try:
        t0, cpu0, plane0 = time.time(), cpu_seconds(pid), plane_cpu(cluster)
        burst(kube, namespace, n)
        wait_for(
            lambda: phases(kube, namespace).count("Stable") == n or None,
            timeout=args.timeout,
            what=f"{n} Stable",
            why=lambda: f"{phases(kube, namespace).count('Stable')} Stable",
        )
        stable_s = time.time() - t0
        burst_cpu = cpu_seconds(pid) - cpu0
        plane = plane_cpu(cluster) - plane0
        sent = operator_requests(cluster, namespace, t0, time.time())
        burst_requests = len(sent)
        last_write = max((stamp(e) for e in sent if e["verb"] != "get"), default=t0) - t0
        mix = collections.Counter(f"{e['verb']} {e['objectRef'].get('resource')}" for e in sent)
        print(f"N={n}: all Stable after {stable_s:.1f} s", file=sys.stderr)
        time.sleep(args.settle)
        w0, c0 = time.time(), cpu_seconds(pid)
        time.sleep(args.window)
        w1, c1 = time.time(), cpu_seconds(pid)
        idle = operator_requests(cluster, namespace, w0, w1)
        reads = [e for e in idle if e["verb"] in ("get", "list")]
        rss = rss_mb(pid)
        cache = metric_sum(operator, "serinus_watch_cache_bytes") / 2**20
        delays = change(kube, cluster, namespace, n, args.changes)
        aborted = abort(kube, cluster, namespace, "m00000")
        return Result(
            n=n,
            stable_s=stable_s,
            last_write_s=last_write,
            burst_requests=burst_requests,
            burst_cpu_s=burst_cpu,
            control_plane_cpu_s=plane,
            idle_rss_mb=rss,
            idle_cpu_pct=100 * (c1 - c0) / (w1 - w0),
            idle_requests_per_md_min=len(idle) / n / ((w1 - w0) / 60),
            idle_reads=len(reads),
            cache_mb=cache,
            change_p50_ms=1000 * statistics.median(delays),
            change_p99_ms=1000 * delays[min(len(delays) - 1, int(0.99 * len(delays)))],
            abort_ms=1000 * aborted,
            burst_mix={k: round(v / n, 2) for k, v in mix.most_common()},
            idle_seen=[f"{e['verb']} {e['requestURI']}" for e in idle],
        )
    finally:
        operator.stop()


def table(results: list[Result]) -> str:
    head = [
        "N",
        "all Stable after (s)",
        "operator's last write after (s)",
        "operator requests in the burst",
        "operator CPU in the burst (CPU-s)",
        "etcd, API server, controllers, stand-in kubelet CPU (CPU-s)",
        "RSS idle (MB)",
        "watch caches (MB)",
        "idle CPU (% of a core)",
        "idle requests per MD per minute",
        "idle reads",
        "change → candidate Deployment p50 / p99 (ms)",
        "abort → routes at 100% stable (ms)",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for r in results:
        rows.append(
            f"| {r.n:,} | {r.stable_s:.1f} | {r.last_write_s:.1f} | {r.burst_requests:,} | "
            f"{r.burst_cpu_s:.1f} | {r.control_plane_cpu_s:.0f} | "
            f"{r.idle_rss_mb:.0f} | {r.cache_mb:.1f} | {r.idle_cpu_pct:.1f} | "
            f"{r.idle_requests_per_md_min:.3f} | {r.idle_reads} | "
            f"{r.change_p50_ms:.0f} / {r.change_p99_ms:.0f} | {r.abort_ms:.0f} |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,1000", help="comma-separated N (default: 100,1000)")
    p.add_argument("--qps", type=float, default=50.0, help="the operator's --kube-api-qps")
    p.add_argument("--burst", type=int, default=100, help="the operator's --kube-api-burst")
    p.add_argument("--resync", type=float, default=600.0, help="the operator's --resync-seconds")
    p.add_argument("--settle", type=float, default=20.0, help="seconds before the idle window")
    p.add_argument("--window", type=float, default=60.0, help="the idle window, seconds")
    p.add_argument("--changes", type=int, default=20, help="models changed at once")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds to reach Stable")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--logs", type=Path, help="copy the operator's logs here")
    args = p.parse_args()
    build_binaries()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="serinus-scale-") as tmp,
        RealCluster(crds=CRDS) as cluster,
    ):
        kube = RealKube(cluster)
        kube.install()
        for n in (int(s) for s in args.sizes.split(",")):
            results.append(run_size(kube, Path(tmp), n, args))
        kube.close()
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in Path(tmp).glob("operator-*.log"):
                shutil.copy(log, args.logs / log.name)
    print(table(results))
    for r in results:
        print(f"\nN={r.n}: requests per ModelDeployment in the burst: {r.burst_mix}")
        print(f"N={r.n}: requests in the idle window: {r.idle_seen}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The containers of the stand-in kubelet's pods, run as processes on this machine.

tests/support/real_cluster.py's stand-in kubelet only writes pod statuses: nothing runs in
a pod. :class:`ContainerRunner` fills that gap for the pods of the Serinus images, the way
a kubelet would: for each pod bound to the node it starts the container's own ``command``
and ``args`` (``serinus`` from this virtualenv for the image's entrypoint), listening on the
pod's IP (the stand-in gives each pod a distinct 127.0.0.N) and the container's declared
port, with the container's env; it holds the pod unready until the container's own
``readinessProbe`` (an HTTP GET) answers 200, and sends SIGTERM (then SIGKILL) when the pod
goes away. Only what a container runtime and the cluster's network provide is substituted,
and nothing else:

- the listen address (``--host`` for ``serinus serve``/``router``, ``--metrics-host`` for
  the operator) is the pod's IP, where a pod's network namespace would make 0.0.0.0 mean it;
- ``emptyDir`` volumes (the model directory, ``HOME``) are folders under the work dir;
- the operator's in-cluster credentials (a projected ServiceAccount token bound to the pod,
  the CA, the API server's address) come as a kubeconfig holding such a token;
- cluster DNS and kube-proxy: the router's ``--routes configmap:NS/NAME`` becomes a file
  that this runner keeps equal to that ConfigMap's ``routes.json``, with each Service URL
  (``http://<svc>.<ns>.svc:<port>``) replaced by the address of a ready pod its selector
  picks (``podIP:targetPort``), as the Service's endpoints would be. The real API server
  refuses loopback addresses in Endpoints, so no Service has endpoints here.

What it lacks: liveness and startup probes, restarts (a container that exits is recorded
in :attr:`ContainerRunner.exits` and stays down), ``preStop`` hooks, resource limits,
read-only root filesystems and the pod's security context.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from support.real_cluster import RealCluster

SERINUS = str(Path(sys.executable).with_name("serinus"))
#: The images' entrypoint (./Dockerfile, both targets).
ENTRYPOINT = ["serinus"]
#: The longest a terminating container is given before SIGKILL (pods ask for up to a minute;
#: nothing here waits on a drain).
MAX_GRACE = 10.0


@dataclass
class Container:
    """One pod's one container, running as a process."""

    namespace: str
    pod: str
    uid: str
    ip: str
    name: str
    args: list[str]
    process: subprocess.Popen[bytes]
    log: Path
    ready_url: str | None
    routes: tuple[str, str, Path] | None = None  # router: ConfigMap namespace, name, file
    ready: bool = False
    kill_at: float | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@dataclass
class ContainerRunner:
    """Runs the containers of the pods in ``namespaces``; see the module's docstring."""

    cluster: RealCluster
    workdir: Path
    namespaces: tuple[str, ...]
    containers: dict[str, Container] = field(default_factory=dict)  # by pod uid
    exits: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _held: set[tuple[str, str]] = field(default_factory=set)
    _done: set[str] = field(default_factory=set)  # pods whose container is not (re)started
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> ContainerRunner:
        self._thread = threading.Thread(target=self._run, name="containers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        with self._lock:
            for c in self.containers.values():
                _signal(c.process, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.process.wait(5)

    def hold(self, namespace: str, prefix: str) -> None:
        """Pods named ``prefix…`` start unready, as under a readiness probe, and turn ready
        once their container's probe passes. Call it before the pods exist: the stand-in
        kubelet marks a new pod Ready at once otherwise."""
        self.cluster.kubelet.keep_unready(namespace, prefix)
        with self._lock:
            self._held.add((namespace, prefix))

    def running(self, namespace: str, prefix: str) -> list[Container]:
        with self._lock:
            return [
                c
                for c in self.containers.values()
                if c.namespace == namespace and c.pod.startswith(prefix) and c.kill_at is None
            ]

    def logs(self) -> str:
        """Every container's log tail, for a failure message."""
        with self._lock:
            found = list(self.containers.values())
        return "\n".join(f"--- {c.namespace}/{c.pod} ({c.name})\n{c.log_tail()}" for c in found)

    def endpoints(self, namespace: str, service: str, port: int | str) -> list[str]:
        """``ip:port`` of the ready pods behind Service ``service``'s ``port`` (its number
        or name): what its Endpoints would list."""
        with self.cluster.client(timeout=10) as api:
            return self._endpoints(api, namespace, service, port)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        with self.cluster.client(timeout=10) as api:
            while not self._stop.is_set():
                try:
                    self._sync(api)
                except httpx.HTTPError as exc:  # an API hiccup: try again next turn
                    self.errors.append(repr(exc))
                except Exception as exc:  # a bug here: recorded for the test to see
                    self.errors.append(repr(exc))
                self._stop.wait(0.1)

    def _sync(self, api: httpx.Client) -> None:
        pods = [
            pod
            for ns in self.namespaces
            for pod in api.get(f"/api/v1/namespaces/{ns}/pods").raise_for_status().json()["items"]
        ]
        live = {
            p["metadata"]["uid"]: p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("podIP")
            and (p.get("status") or {}).get("phase") == "Running"
        }
        for uid, pod in live.items():
            if uid not in self.containers and uid not in self._done:
                self._start(api, pod)
        now = time.monotonic()
        with self._lock:
            for uid, c in list(self.containers.items()):
                if uid not in live and c.kill_at is None:
                    _signal(c.process, signal.SIGTERM)  # the pod is going: stop its container
                    c.kill_at = now + MAX_GRACE
                if c.kill_at is not None:
                    if c.process.poll() is None and now >= c.kill_at:
                        _signal(c.process, signal.SIGKILL)
                    if c.process.poll() is not None:
                        del self.containers[uid]
                elif c.process.poll() is not None:  # no restarts: the test sees it
                    self.exits.append(
                        f"{c.namespace}/{c.pod} exited {c.process.returncode}:\n{c.log_tail()}"
                    )
                    self._done.add(uid)
                    c.kill_at = now
            current = [c for c in self.containers.values() if c.kill_at is None]
        for c in current:
            if not c.ready:
                c.ready = _probe(c.ready_url)
            if c.routes is not None:
                self._write_routes(api, c.routes)
        self._release(current)

    def _release(self, current: list[Container]) -> None:
        """Lift the hold on every prefix whose pods all run a ready container."""
        with self._lock:
            held = list(self._held)
        for namespace, prefix in held:
            mine = [c for c in current if c.namespace == namespace and c.pod.startswith(prefix)]
            if mine and all(c.ready for c in mine):
                self.cluster.kubelet.heal(namespace, prefix)
                with self._lock:
                    self._held.discard((namespace, prefix))

    # ------------------------------------------------------------------ one container
    def _start(self, api: httpx.Client, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        (container,) = spec["containers"]  # the Serinus pods have one container each
        command = list(container.get("command") or ENTRYPOINT)
        if command != ENTRYPOINT:
            self.errors.append(f"{meta['name']}: not a Serinus image's command: {command}")
            self._done.add(meta["uid"])
            return
        ip = pod["status"]["podIP"]
        home = self.workdir / meta["namespace"] / meta["name"]
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        args = list(container.get("args") or [])
        routes: tuple[str, str, Path] | None = None
        if args[0] in ("serve", "router"):
            args = _replace(args, "--host", ip)
        if args[0] == "serve":
            (home / "models").mkdir(exist_ok=True)
            args = _replace(args, "--model-dir", str(home / "models"))
        if args[0] == "router":
            source = _value(args, "--routes")
            if source.startswith("configmap:"):
                namespace, name = source.removeprefix("configmap:").split("/")
                routes = (namespace, name, home / "routes.json")
                self._write_routes(api, routes)
                args = _replace(args, "--routes", str(routes[2]))
        if args[0] == "operator":
            kubeconfig = home / "kubeconfig.yaml"
            kubeconfig.write_text(yaml.safe_dump(self._pod_kubeconfig(api, pod)))
            args += ["--metrics-host", ip, "--kubeconfig", str(kubeconfig)]
        env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
        if env.get("HOME") == "/tmp":  # the pod's tmp emptyDir
            env["HOME"] = str(home / "tmp")
        base = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        log = home / f"{container['name']}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [SERINUS, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**base, **env},
                start_new_session=True,
            )
        with self._lock:
            self.containers[meta["uid"]] = Container(
                namespace=meta["namespace"],
                pod=meta["name"],
                uid=meta["uid"],
                ip=ip,
                name=container["name"],
                args=args,
                process=process,
                log=log,
                ready_url=_probe_url(container, ip),
                routes=routes,
            )

    def _pod_kubeconfig(self, api: httpx.Client, pod: dict[str, Any]) -> dict[str, Any]:
        """What the pod's projected ServiceAccount token volume gives it, as a kubeconfig:
        a token of its ServiceAccount bound to the pod (the TokenRequest the kubelet makes)
        and the cluster's CA."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        token = api.post(path, json=request).raise_for_status().json()["status"]["token"]
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {
                        "server": self.cluster.server,
                        "certificate-authority": str(self.cluster.ca_path),
                    },
                }
            ],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {
                        "cluster": "in-cluster",
                        "user": account,
                        "namespace": meta["namespace"],
                    },
                }
            ],
            "current-context": "in-cluster",
        }

    # ------------------------------------------------------------------ Services
    def _write_routes(self, api: httpx.Client, routes: tuple[str, str, Path]) -> None:
        namespace, name, path = routes
        found = api.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if found.status_code == 404:
            return
        raw = (found.raise_for_status().json().get("data") or {}).get("routes.json")
        if raw is None:
            return
        table = json.loads(raw)
        for entry in (table.get("revisions") or {}).values():
            entry["url"] = self._resolve(api, entry["url"])
        text = json.dumps(table, indent=1, sort_keys=True)
        if path.exists() and path.read_text() == text:
            return
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(path)  # atomically, as the router asks

    def _resolve(self, api: httpx.Client, url: str) -> str:
        """``http://<svc>.<ns>.svc:<port>`` -> ``http://<pod ip>:<target port>`` of a ready
        pod behind it (the first by name); unchanged when there is none (the router then
        cannot connect, as to a Service without endpoints)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        labels = host.split(".")
        if len(labels) < 3 or labels[2] != "svc" or parts.port is None:
            return url
        found = self._endpoints(api, labels[1], labels[0], parts.port)
        return f"{parts.scheme}://{found[0]}" if found else url

    def _endpoints(
        self, api: httpx.Client, namespace: str, service: str, port: int | str
    ) -> list[str]:
        got = api.get(f"/api/v1/namespaces/{namespace}/services/{service}")
        if got.status_code == 404:
            return []
        spec = got.raise_for_status().json()["spec"]
        ports = [p for p in spec.get("ports") or [] if port in (p.get("port"), p.get("name"))]
        selector = spec.get("selector") or {}
        if not ports or not selector:
            return []
        target = ports[0].get("targetPort", ports[0]["port"])
        query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = api.get(
            f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": query}
        ).raise_for_status()
        out = []
        for pod in sorted(pods.json()["items"], key=lambda p: p["metadata"]["name"]):
            status = pod.get("status") or {}
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in status.get("conditions") or []
            )
            if not ready or pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
                continue
            number = _container_port(pod["spec"]["containers"], target)
            if number is not None:
                out.append(f"{status['podIP']}:{number}")
        return out


# ---------------------------------------------------------------------- helpers
def _value(args: list[str], flag: str) -> str:
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise ValueError(f"no {flag} in {args}")


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        if arg == flag:
            out[i + 1] = value
            return out
        if arg.startswith(f"{flag}="):
            out[i] = f"{flag}={value}"
            return out
    raise ValueError(f"no {flag} in {args}")


def _container_port(containers: list[dict[str, Any]], target: int | str) -> int | None:
    for c in containers:
        for p in c.get("ports") or []:
            if target in (p.get("name"), p["containerPort"]):
                return int(p["containerPort"])
    return None


def _probe_url(container: dict[str, Any], ip: str) -> str | None:
    get = (container.get("readinessProbe") or {}).get("httpGet")
    if not get:
        return None
    port = _container_port([container], get["port"])
    return f"http://{ip}:{port}{get.get('path', '/')}"


def _probe(url: str | None) -> bool:
    if url is None:
        return True
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)

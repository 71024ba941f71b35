"""A real Kubernetes control plane on 127.0.0.1, built from source, for integration tests.

:class:`RealCluster` runs Kubernetes' own etcd, kube-apiserver and kube-controller-manager
(built once by ``hack/kube/build.sh`` and cached outside the repo) as child processes in a
temporary folder: its own CA, serving and client certificates, service-account keys,
loopback ports only. The API is the real one: validation, defaulting, admission, RBAC,
resourceVersions, watches, 410 Gone, server-side apply, and real Deployment, ReplicaSet,
garbage-collector, namespace, service-account, endpoints and horizontal-pod-autoscaler
controllers.

No scheduler, kubelet or container runtime runs here, so :class:`StandinKubelet` plays the
one node; see its docstring for what it emulates and what it lacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.serve import free_port

BUILD = Path(__file__).resolve().parents[2] / "hack" / "kube" / "build.sh"
GATEWAY_API = BUILD.with_name("gateway-api.sh")
NODE = "standin-node"
CONTROLLERS = ",".join(
    [
        "clusterrole-aggregation-controller",
        "deployment-controller",
        "replicaset-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "root-ca-certificate-publisher-controller",
        "endpoints-controller",
        "endpointslice-controller",
        # Reads a ModelDeployment's scale subresource like any scale target; no metrics
        # server runs, so it can enforce min/max replicas but compute no utilisation.
        "horizontal-pod-autoscaler-controller",
    ]
)
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    why: Any = "",
) -> T:
    """``probe()`` once it is truthy; fails after ``timeout`` saying ``what`` and ``why``
    (a string, or a callable that explains, called only then)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    detail = why() if callable(why) else why
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
        + (f"\n{detail}" if detail else "")
    )


class NoGo(RuntimeError):
    """No Go toolchain: the control plane cannot be built here."""


def build_binaries() -> Path:
    """The folder holding etcd, kube-apiserver and kube-controller-manager (built if needed)."""
    done = subprocess.run(["bash", str(BUILD)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode == 3:
        raise NoGo(
            "no Go toolchain, so no real Kubernetes control plane: install Go >= 1.26 "
            "(https://go.dev/dl/, into /usr/local/go) and run make test again"
        )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD} failed with exit code {done.returncode} (see its stderr)")
    return Path(done.stdout.strip().splitlines()[-1])


def gateway_api_crds() -> tuple[Path, ...]:
    """The Gateway API's HTTPRoute CRD (fetched from the Go module proxy if needed), so that
    the GatewayAPI provider writes real HTTPRoutes, validated by the real schema."""
    done = subprocess.run(
        ["bash", str(GATEWAY_API)], stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode == 3:
        raise NoGo("no Go toolchain, so no Gateway API CRDs (see build_binaries)")
    if done.returncode != 0:
        raise RuntimeError(f"{GATEWAY_API} failed with exit code {done.returncode}")
    return (Path(done.stdout.strip().splitlines()[-1]),)


class _Process:
    """A child in its own process group, with its output in ``log``."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, and SIGKILL after ``timeout`` (at once when 0)."""
        steps = [(signal.SIGTERM, timeout)] if timeout else []
        for sig, wait in [*steps, (signal.SIGKILL, 5.0)]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
                return


class RealCluster:
    """etcd + kube-apiserver + kube-controller-manager + a stand-in kubelet.

    ``start()`` takes a few seconds once the binaries are built; ``stop()`` ends every
    process (by process group) and removes the folder it made. ``stop_apiserver()`` and
    ``start_apiserver()`` play an API server outage: same port, same etcd, same data. After
    a restart the real controllers lag a few seconds (about 5 s for a new Deployment's pods
    here): their watches reconnect with backoff, and the ReplicaSet controller waits until
    its cache has seen its own last writes ("read version ... is not as new as written").

    Once started: ``server`` (https://127.0.0.1:PORT), ``ca_path``, ``kubeconfig`` (the
    admin's, group system:masters) and :meth:`client` (an httpx client as the admin);
    ``logs(name)`` has each process's output.
    """

    def __init__(self, workdir: Path | None = None, *, crds: Sequence[Path] = ()) -> None:
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="serinus-kube-")) if workdir is None else workdir
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.ca_path = self.dir / "ca.crt"
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.kubelet = StandinKubelet(self)
        self.startup_seconds = 0.0
        self.bins = Path()
        self._etcd_url = ""
        self._procs: dict[str, _Process] = {}
        self.crds = tuple(crds)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RealCluster:
        self.bins = build_binaries()
        began = time.monotonic()
        try:
            self._write_pki()
            self._start_etcd()
            self.start_apiserver()
            self._install_crds()
            self._start_controller_manager()
            with self.client() as api:
                # The serviceaccount controller has run: pods can be created in "default".
                sa = "/api/v1/namespaces/default/serviceaccounts/default"
                wait_for(lambda: self._ok(api, sa, "kube-controller-manager"), what=sa)
            self.kubelet.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        self.kubelet.stop()
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                proc.stop(timeout=0)  # SIGKILL: nothing here outlives the cluster
        self.kubelet.join()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """SIGTERM (a graceful stop, about 1 s) or, with ``kill``, SIGKILL (a crash)."""
        self._procs.pop("kube-apiserver").stop(timeout=0 if kill else 10)

    def start_apiserver(self) -> None:
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={self._etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.dir / 'apiserver.crt'}",
            f"--tls-private-key-file={self.dir / 'apiserver.key'}",
            f"--client-ca-file={self.ca_path}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # The "kubernetes" Service's endpoint would be 127.0.0.1, which Endpoints reject.
            "--endpoint-reconciler-type=none",
            # Close open watches after 1 s on SIGTERM, not when they time out (minutes).
            "--shutdown-watch-termination-grace-period=1s",
            # Who did what, as the API server saw and authorized it (see audit()).
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.dir / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=4096",  # MB; rotated at 100 MB by default, which audit()'s
            # readers would not see (make bench-operator writes far more)
        )
        with self.client() as api:
            wait_for(lambda: self._ok(api, "/readyz", "kube-apiserver"), what="/readyz")

    def restart_controller_manager(self) -> None:
        """A new kube-controller-manager on the same data (SIGKILL, then started again): its
        informers list everything afresh, with none of the old process's watch back-off."""
        self._procs.pop("kube-controller-manager").stop(timeout=0)
        self._start_controller_manager()

    def settle(self, timeout: float = 120.0) -> None:
        """Bring the controllers back after an API server restart, for the tests that follow.

        Left alone they would come back by themselves (``test_real_cluster_smoke.py`` shows
        it), but late: each informer's watch backs off on its own during an outage, up to
        30 s with as much again of jitter, and client-go resets that back-off only after 2
        minutes without a failure, so even a short restart soon after an outage waits it
        out (about 50 s either way here). So kube-controller-manager is restarted, which
        lists everything afresh. A Deployment made now becoming available then shows that
        the Deployment, ReplicaSet and service-account controllers and the stand-in kubelet
        all watch again."""
        self.restart_controller_manager()
        with self.client(timeout=10) as api:
            ns = f"settle-{time.monotonic_ns()}"
            api.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
            sa = f"/api/v1/namespaces/{ns}/serviceaccounts/default"
            wait_for(lambda: api.get(sa).is_success, timeout=timeout, what="controllers back")
            labels = {"app": "settle"}
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "settle"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "c", "image": "settle"}]},
                    },
                },
            }
            path = f"/apis/apps/v1/namespaces/{ns}/deployments"
            api.post(path, json=deployment).raise_for_status()

            def available() -> bool:
                found = api.get(f"{path}/settle").json()
                return bool((found.get("status") or {}).get("availableReplicas"))

            wait_for(available, timeout=timeout, what="a Deployment available again")
            api.delete(f"/api/v1/namespaces/{ns}")

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (what a cluster does every 5 minutes): a watch
        resumed from an older resourceVersion is then answered 410 Gone. Returns the
        revision compacted to."""
        with httpx.Client(base_url=self._etcd_url, timeout=10) as etcd:
            head = etcd.post("/v3/kv/range", json={"key": "AA=="}).raise_for_status().json()
            revision = int(head["header"]["revision"])
            body = {"revision": str(revision), "physical": True}
            etcd.post("/v3/kv/compaction", json=body).raise_for_status()
        return revision

    def _audit_policy(self) -> Path:
        path = self.dir / "audit-policy.yaml"
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        path.write_text(yaml.safe_dump(policy))
        return path

    def audit(self, *, user: str | None, namespace: str | None = None) -> list[dict[str, Any]]:
        """The API server's audit events of ``user`` (None: anyone's; in ``namespace`` if
        given): what it
        asked and what it was answered. A request appears once when complete; a watch, which
        completes only when it ends, also when its response started."""
        out = []
        for line in (self.dir / "audit.log").read_text().splitlines():
            event = json.loads(line)
            if event.get("stage") not in ("ResponseStarted", "ResponseComplete", "Panic"):
                continue
            if user is not None and (event.get("user") or {}).get("username") != user:
                continue
            if (
                namespace is not None
                and (event.get("objectRef") or {}).get("namespace") != namespace
            ):
                continue
            out.append(event)
        return out

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for the API server, authenticated as the admin (system:masters)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.dir / "admin.crt", self.dir / "admin.key")
        return httpx.Client(base_url=self.server, verify=ctx, **kwargs)

    def logs(self, name: str) -> str:
        """Everything ``name`` (etcd, kube-apiserver, kube-controller-manager) printed."""
        return (self.dir / f"{name}.log").read_text(errors="replace")

    # -- pieces ------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        ca = trustme.CA(organization_name="serinus-test")
        ca.cert_pem.write_to_path(self.ca_path)
        hosts = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"]
        # Each client certificate names a host too: trustme would otherwise write an empty
        # critical subjectAltName, which Go's x509 rejects ("unhandled critical extension").
        for name, cert in {
            "apiserver": ca.issue_cert(*hosts, common_name="kube-apiserver"),
            "admin": ca.issue_cert(
                "admin", common_name="admin", organization_name="system:masters"
            ),
            "controller-manager": ca.issue_cert(
                "kube-controller-manager", common_name="system:kube-controller-manager"
            ),
        }.items():
            cert.private_key_pem.write_to_path(self.dir / f"{name}.key")
            cert.cert_chain_pems[0].write_to_path(self.dir / f"{name}.crt")
            self._write_kubeconfig(self.dir / f"{name}.kubeconfig", name)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = serialization.Encoding.PEM
        (self.dir / "sa.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        (self.dir / "sa.pub").write_bytes(
            key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def _write_kubeconfig(self, path: Path, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(self.dir / f"{user}.crt"),
                        "client-key": str(self.dir / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user}}],
            "current-context": "real",
        }
        path.write_text(yaml.safe_dump(config))

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            "--name=serinus",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={self._etcd_url}",
            f"--advertise-client-urls={self._etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=serinus=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        with httpx.Client(base_url=self._etcd_url) as etcd:
            wait_for(lambda: self._ok(etcd, "/health", "etcd"), what="etcd /health")

    def _install_crds(self) -> None:
        """CRDs go in before the controllers start: the garbage collector learns new resource
        types by rediscovery every 30 s, so owners of a CRD installed later are not seen
        deleted (and their children not collected) until then, as on any cluster."""
        with self.client() as api:
            names = []
            for path in self.crds:
                for doc in yaml.safe_load_all(path.read_text()):
                    if not doc:
                        continue
                    name = doc["metadata"]["name"]
                    response = api.patch(
                        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                        content=yaml.safe_dump(doc).encode(),
                        params={"fieldManager": "serinus-tests", "force": "true"},
                        headers={"content-type": "application/apply-patch+yaml"},
                    )
                    response.raise_for_status()
                    names.append(name)

            def established(name: str) -> bool:
                crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = (crd.json().get("status") or {}).get("conditions") or []
                return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

            for name in names:
                wait_for(lambda name=name: established(name), what=f"CRD {name} Established")

    def _start_controller_manager(self) -> None:
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
            f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--root-ca-file={self.ca_path}",
            "--leader-elect=false",
            "--horizontal-pod-autoscaler-sync-period=2s",
            # Sized for make bench-operator's thousands of Deployments: with the defaults
            # (20 requests/s per controller, 5 Deployments synced at once) the controllers,
            # not the operator, would set the pace.
            "--kube-api-qps=300",
            "--kube-api-burst=600",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        )

    def _spawn(self, name: str, *args: str) -> None:
        self._procs[name] = _Process(name, [str(self.bins / name), *args], self.dir / f"{name}.log")

    def _ok(self, client: httpx.Client, path: str, name: str) -> bool:
        """``path`` answers 2xx; raises if ``name``, the process that should make it so, died."""
        self._procs[name].check()
        try:
            return client.get(path, timeout=2).is_success
        except httpx.HTTPError:
            return False


class StandinKubelet(threading.Thread):
    """One node's kubelet, played in a thread: no container runtime runs on this machine.

    What it emulates, over the real API with the admin's certificate:

    - registers Node ``standin-node``: Ready, 8 CPUs, 32 GiB, 110 pods, address 127.0.0.1;
    - plays the scheduler too: every pod without ``spec.nodeName`` is bound to that node
      through the ``binding`` subresource;
    - writes each bound pod's status as a kubelet whose containers started at once: phase
      Running, PodScheduled/Initialized/ContainersReady/Ready, one ``containerStatuses``
      entry per container (running, ready, started), ``podIP`` 127.0.0.N (a distinct N per
      pod), ``hostIP`` 127.0.0.1;
    - finishes graceful deletion: a pod with a ``deletionTimestamp`` is deleted with grace 0
      (what the kubelet does once its containers are gone), so garbage collection completes;
    - per-pod faults, chosen by namespace and pod-name prefix: :meth:`keep_unready` (running,
      never ready), :meth:`crash_loop` (container waiting in CrashLoopBackOff after
      exiting 1, restartCount 5) and :meth:`fail_init` (phase Pending, the first init
      container in CrashLoopBackOff after exiting 1 with a termination message, restartCount
      3, the containers waiting in PodInitializing); :meth:`heal` lifts them.

    What it lacks: no process runs, so nothing listens on a pod IP; probes, init containers
    (unless failing by :meth:`fail_init`: they are not reported),
    volumes, resource limits, ephemeral containers, logs, exec and port-forward do nothing;
    no node heartbeat (the node-lifecycle controller is not run, so the node never turns
    NotReady); pods of Jobs never complete; taints, affinity and resources are not checked
    when binding. Pods bound to other nodes are left alone. The real API refuses loopback
    addresses in Endpoints and EndpointSlices, so a Service that selects these pods gets
    none: the endpoint controllers log the refusal and retry.
    """

    def __init__(self, cluster: RealCluster) -> None:
        super().__init__(daemon=True, name="standin-kubelet")
        self.cluster = cluster
        self.faults: dict[tuple[str, str], str] = {}
        #: The termination message of :meth:`fail_init`'s init container, by fault key.
        self.init_messages: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []
        self._stopping = threading.Event()
        self._ips: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- faults ------------------------------------------------------------------------------

    def keep_unready(self, namespace: str, prefix: str) -> None:
        self._set_fault(namespace, prefix, "unready")

    def crash_loop(self, namespace: str, prefix: str) -> None:
        self._set_fault(namespace, prefix, "crashloop")

    def fail_init(self, namespace: str, prefix: str, message: str) -> None:
        with self._lock:
            self.init_messages[(namespace, prefix)] = message
        self._set_fault(namespace, prefix, "initfail")

    def heal(self, namespace: str, prefix: str) -> None:
        self._set_fault(namespace, prefix, None)

    def _set_fault(self, namespace: str, prefix: str, fault: str | None) -> None:
        with self._lock:
            if fault is None:
                self.faults.pop((namespace, prefix), None)
            else:
                self.faults[(namespace, prefix)] = fault
        with self.cluster.client() as api:
            pods = api.get(f"/api/v1/namespaces/{namespace}/pods").raise_for_status().json()
            for pod in pods["items"]:
                self._sync(api, pod)

    def _fault(self, pod: dict[str, Any]) -> str | None:
        meta = pod["metadata"]
        with self._lock:
            for (namespace, prefix), fault in self.faults.items():
                if meta["namespace"] == namespace and meta["name"].startswith(prefix):
                    return fault
        return None

    def _init_message(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        with self._lock:
            for (namespace, prefix), message in self.init_messages.items():
                if meta["namespace"] == namespace and meta["name"].startswith(prefix):
                    return message
        return "exited with 1"

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float | None = 15.0) -> None:
        if self.is_alive():
            super().join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.cluster.client(timeout=httpx.Timeout(5.0, read=None)) as api:
                    self._register(api)
                    self._watch(api)
            except httpx.TransportError:
                pass  # the API server is down or restarting: an outage, not an error
            except httpx.HTTPStatusError as e:
                if e.response.status_code < 500:
                    self.errors.append(f"{e.request.url}: {e.response.text}")
            except Exception as e:  # a bug here: recorded for the test to see
                self.errors.append(repr(e))
            self._stopping.wait(0.5)

    def _register(self, api: httpx.Client) -> None:
        resources = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": ""}
                ],
                "nodeInfo": {"kubeletVersion": "standin", "operatingSystem": "linux"},
            },
        }
        created = api.post("/api/v1/nodes", json=node)
        if created.status_code != 409:
            created.raise_for_status()

    def _watch(self, api: httpx.Client) -> None:
        pods = api.get("/api/v1/pods").raise_for_status().json()
        for pod in pods["items"]:
            self._sync(api, pod)
        rv = pods["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "300"}
        with api.stream("GET", "/api/v1/pods", params=params) as events:
            events.raise_for_status()
            for line in events.iter_lines():
                if self._stopping.is_set():
                    return
                event = json.loads(line) if line else None
                if not event or event["type"] == "ERROR":  # 410 Gone: list again
                    return
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._sync(api, event["object"])

    def _sync(self, api: httpx.Client, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        node = spec.get("nodeName")
        if node not in (None, NODE):
            return
        if meta.get("deletionTimestamp"):
            if node:
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
                self._check(api.request("DELETE", path, json=body))
            return
        if node is None:
            target = {"apiVersion": "v1", "kind": "Node", "name": NODE}
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": meta["name"]},
                "target": target,
            }
            self._check(api.post(f"{path}/binding", json=binding))
            return  # the MODIFIED event of the binding brings it back
        status = self._status(pod)
        current = pod.get("status") or {}
        if _summary(current) == _summary(status):
            return
        smp = {"Content-Type": "application/strategic-merge-patch+json"}
        self._check(api.patch(f"{path}/status", json={"status": status}, headers=smp))

    def _check(self, response: httpx.Response) -> None:
        """Record a refusal; 404 and 409 only mean the pod changed or went meanwhile."""
        if not response.is_success and response.status_code not in (404, 409):
            where = f"{response.request.method} {response.request.url.path}"
            self.errors.append(f"{where}: {response.status_code} {response.text}")

    def _status(self, pod: dict[str, Any]) -> dict[str, Any]:
        meta, current = pod["metadata"], pod.get("status") or {}
        fault = self._fault(pod)
        ready = "True" if fault is None else "False"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            ip = self._ips.setdefault(meta["uid"], f"127.0.0.{len(self._ips) % 250 + 2}")
        old = {c["type"]: c for c in current.get("conditions") or []}

        def condition(kind: str, status: str) -> dict[str, Any]:
            before = old.get(kind) or {}
            since = before.get("lastTransitionTime") if before.get("status") == status else None
            return {"type": kind, "status": status, "lastTransitionTime": since or now}

        started = current.get("startTime") or now
        if fault == "initfail":
            return self._init_failed(pod, started=started, now=now, condition=condition)
        containers = []
        for c in pod["spec"]["containers"]:
            state: dict[str, Any] = {"running": {"startedAt": started}}
            extra: dict[str, Any] = {"restartCount": 0}
            if fault == "crashloop":
                state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
                last = {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}
                extra = {"restartCount": 5, "lastState": {"terminated": last}}
            containers.append(
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "containerID": f"standin://{meta['uid']}/{c['name']}",
                    "ready": fault is None,
                    "started": fault != "crashloop",
                    "state": state,
                    **extra,
                }
            )
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started,
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "True"),
                condition("ContainersReady", ready),
                condition("Ready", ready),
                condition("PodScheduled", "True"),
            ],
            "containerStatuses": containers,
        }

    def _init_failed(
        self,
        pod: dict[str, Any],
        *,
        started: str,
        now: str,
        condition: Callable[[str, str], dict[str, Any]],
    ) -> dict[str, Any]:
        """A pod whose first init container keeps failing: what a kubelet reports."""
        uid, inits = pod["metadata"]["uid"], pod["spec"].get("initContainers") or []
        last = {"exitCode": 1, "reason": "Error", "message": self._init_message(pod),
                "startedAt": now, "finishedAt": now}  # fmt: skip
        init_statuses = [
            {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
             "containerID": f"standin://{uid}/{c['name']}", "restartCount": 3,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
             "lastState": {"terminated": last}}
            for c in inits[:1]
        ]  # fmt: skip
        waiting = {"waiting": {"reason": "PodInitializing"}}
        containers = [
            {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
             "started": False, "restartCount": 0, "state": waiting}
            for c in pod["spec"]["containers"]
        ]  # fmt: skip
        return {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": started,
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "False"),
                condition("ContainersReady", "False"),
                condition("Ready", "False"),
                condition("PodScheduled", "True"),
            ],
            "initContainerStatuses": init_statuses,
            "containerStatuses": containers,
        }


def _summary(status: dict[str, Any]) -> tuple[Any, ...]:
    """What the stand-in decides on: a status it would not change is not written again."""
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    containers = [
        (c["name"], c.get("ready"), sorted(c.get("state") or {}))
        for c in status.get("containerStatuses") or []
    ]
    inits = [
        (c["name"], sorted(c.get("state") or {})) for c in status.get("initContainerStatuses") or []
    ]
    phase, ip, ready = status.get("phase"), status.get("podIP"), conditions.get("Ready")
    return phase, ip, ready, containers, inits

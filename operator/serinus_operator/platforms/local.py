"""The local platform: the engine's actions become processes on this machine.

A revision is one supervised ``serinus serve`` process on a free loopback port (whatever
``spec.replicas`` says: it stands for all of them, ready or not); traffic is one ``serinus
router`` on the public port, reading the routing table the Router provider renders, with
each revision's Service URL replaced by its loopback address, from a file written
atomically (the router picks a change up within 200 ms); a local Prometheus scrapes them
all through file-based service discovery. Every traffic provider is realised by the router
here: there is no Service or Gateway to switch. Status and Events live in the state
directory (:mod:`.local_state`). Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from serinus_operator.api import ModelDeployment
from serinus_operator.platforms.base import ObjectRef
from serinus_operator.platforms.local_prometheus import Target, argv, config, file_sd
from serinus_operator.platforms.local_state import StateDir, write_json
from serinus_operator.platforms.local_store import ObjectStore
from serinus_operator.platforms.processes import Backoff, Ports, ProcessSpec, Supervised
from serinus_operator.resources.meta import COMPONENT_ROUTER, COMPONENT_SERVER
from serinus_operator.rollout.actions import EnsureRevision, Notify
from serinus_operator.rollout.observed import RevisionObservation
from serinus_operator.rollout.status import RevisionRef
from serinus_operator.traffic.base import Routes
from serinus_operator.traffic.router import RouterProvider

log = logging.getLogger("serinus.local")

#: ``serinus`` as this interpreter runs it (no dependence on PATH).
SERINUS = (sys.executable, "-m", "serinus_operator.cli")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class LocalOptions:
    """``public_port`` is the router's; ``prometheus_port`` None picks a free one;
    ``telemetry_port`` is where the loop serves its own metrics (scraped too)."""

    public_port: int
    prometheus_bin: str
    prometheus_port: int | None = None
    telemetry_port: int | None = None
    scrape_interval: float = 1.0
    backoff: Backoff = field(default_factory=Backoff)
    stop_timeout: float = 10.0


@dataclass
class _Revision:
    ref: RevisionRef
    port: int
    replicas: int
    process: Supervised | None = None


class LocalPlatform:
    """Implements :class:`~serinus_operator.platforms.base.Platform` with processes."""

    def __init__(
        self,
        state: StateDir,
        store: ObjectStore,
        options: LocalOptions,
        *,
        on_event: Callable[[Mapping[str, Any]], None] = lambda _: None,
    ) -> None:
        self.state = state
        self.store = store
        self.options = options
        self.on_event = on_event
        self.ports = Ports(HOST)
        self._autoscaling_said = False
        try:
            self.ports.claim(options.public_port)
        except OSError as exc:
            raise OSError(f"{exc}: choose another with --port") from None
        self.changed = asyncio.Event()
        self._posted: set[str] | None = None  # names of the Events recorded, loaded once
        self.revisions: dict[str, _Revision] = {}
        self.router: Supervised | None = None
        self.prometheus: Supervised | None = None
        self.namespace = ""
        self.name = ""
        self._table: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def router_url(self) -> str:
        return f"http://{HOST}:{self.options.public_port}"

    @property
    def prometheus_url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    async def start(self, namespace: str, name: str, *, ready_timeout: float = 60.0) -> None:
        """Start Prometheus and wait until it answers."""
        self.namespace, self.name = namespace, name
        pdir = self.state.prometheus_dir
        pdir.mkdir(parents=True, exist_ok=True)
        targets_file = pdir / "targets.json"
        self._write_targets()
        config_file = pdir / "prometheus.yml"
        cfg = config(targets_file=targets_file, scrape_interval=self.options.scrape_interval)
        config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        port = self.options.prometheus_port
        if port:
            try:
                self.ports.claim(port)
            except OSError as exc:
                raise OSError(f"{exc}: choose another with --prometheus-port") from None
        spec = ProcessSpec(
            name="prometheus",
            command=lambda p: argv(
                self.options.prometheus_bin,
                config_file=config_file,
                data_dir=pdir / "data",
                port=p,
            ),
            log=self.state.logs_dir / "prometheus.log",
            ready_path="/-/ready",
            fixed_port=bool(port),
        )
        self.prometheus = self._supervise(spec, port or self.ports.allocate())
        self.prometheus.start()
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while not self.prometheus.ready:
            if self.prometheus.restarts >= 2 or asyncio.get_running_loop().time() > deadline:
                tail = spec.log.read_text(errors="replace")[-1500:] if spec.log.exists() else ""
                raise RuntimeError(f"prometheus did not start; {spec.log} ends with:\n{tail}")
            await asyncio.sleep(0.1)
        self._sync()

    async def close(self, *, force: bool = False) -> None:
        """Stop every process (router first, then revisions, then Prometheus)."""
        sig = signal.SIGKILL if force else signal.SIGTERM
        grace = 0.0 if force else self.options.stop_timeout
        if self.router is not None:
            await self.router.stop(grace=grace, sig=sig)
        await asyncio.gather(
            *(
                r.process.stop(grace=grace, sig=sig)
                for r in self.revisions.values()
                if r.process is not None
            )
        )
        if self.prometheus is not None:
            await self.prometheus.stop(grace=grace, sig=sig)
        self._sync()

    def kill_now(self) -> None:
        for proc in self._processes():
            proc.kill_now()

    def _supervise(self, spec: ProcessSpec, port: int) -> Supervised:
        return Supervised(
            spec, port=port, ports=self.ports, on_change=self._changed, backoff=self.options.backoff
        )

    def _changed(self) -> None:
        for rev in self.revisions.values():
            if rev.process is not None:
                rev.port = rev.process.port  # moved if its port was taken meanwhile
        self._sync()
        self.changed.set()

    def _processes(self) -> list[Supervised]:
        procs = [r.process for r in self.revisions.values() if r.process is not None]
        return [p for p in (self.router, *procs, self.prometheus) if p is not None]

    # ------------------------------------------------------------------ Platform
    async def observe(
        self, ref: ObjectRef, md: ModelDeployment | None
    ) -> Mapping[str, RevisionObservation]:
        out = {}
        for revision, rev in self.revisions.items():
            ready = rev.replicas > 0 and rev.process is not None and rev.process.ready
            out[revision] = RevisionObservation(
                replicas=rev.replicas,
                ready_replicas=rev.replicas if ready else 0,
                available=ready,
            )
        return out

    async def ensure_revision(
        self, ref: ObjectRef, md: ModelDeployment, action: EnsureRevision
    ) -> None:
        rev = self.revisions.get(action.ref.revision) or self._add(action.ref)
        rev.replicas = action.replicas
        if action.replicas > 0 and rev.process is None:
            rev.process = self._supervise(self._serve_spec(md.name, rev), rev.port)
            rev.process.start()
            log.info("started revision %s on port %d", rev.ref.revision, rev.port)
        self._sync()

    async def scale_down(self, ref: ObjectRef, revision: str) -> None:
        rev = self.revisions.get(revision)
        if rev is None:
            return
        rev.replicas = 0
        if rev.process is not None:
            await rev.process.stop(grace=self.options.stop_timeout)
            rev.process = None
            log.info("scaled down revision %s", revision)
        self._sync()

    async def remove_revision(self, ref: ObjectRef, revision: str) -> None:
        rev = self.revisions.pop(revision, None)
        if rev is None:
            return
        if rev.process is not None:
            await rev.process.stop(grace=self.options.stop_timeout)
        self.ports.release(rev.port)
        log.info("removed revision %s", revision)
        self._sync()

    async def model_env(self, md: ModelDeployment) -> Mapping[str, str]:
        """What the serving processes get: this process's environment and
        ``spec.serving.env`` (a Secret has no meaning here)."""
        return {**os.environ, **md.spec.serving.env}

    async def autoscale(self, ref: ObjectRef, md: ModelDeployment) -> None:
        """``serinus local`` runs a fixed number of processes: autoscaling is a cluster's."""
        if md.spec.autoscaling is not None and not self._autoscaling_said:
            self._autoscaling_said = True
            log.info("spec.autoscaling is ignored locally: %d replicas", md.spec.replicas)

    async def set_traffic(self, ref: ObjectRef, md: ModelDeployment, routes: Routes) -> None:
        table = RouterProvider().table(md, routes)
        for revision in table["revisions"]:
            if revision not in self.revisions:
                log.warning("routing to revision %s, which is not running", revision)
        self._table = table
        self._write_routes()
        if self.router is None:
            spec = ProcessSpec(
                name="router",
                command=self._router_command,
                log=self.state.logs_dir / "router.log",
                ready_path="/-/ready",
                fixed_port=True,
            )
            self.router = self._supervise(spec, self.options.public_port)
            self.router.start()
        self._sync()

    async def notify(self, ref: ObjectRef, notify: Notify, *, name: str) -> bool:
        if self._posted is None:  # what an earlier run of this machine already recorded
            self._posted = {str((e.get("metadata") or {}).get("name")) for e in self.state.events()}
        if name in self._posted:
            return True
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": {
                "kind": "ModelDeployment",
                "namespace": ref.namespace,
                "name": ref.name,
            },
            "reason": notify.reason.value,
            "message": notify.message,
            "type": notify.type.value,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "serinus-local"},
        }
        try:
            self.state.append_event(event)
        except OSError as exc:
            log.warning("could not record event %s (kept pending): %s", notify.reason, exc)
            return False
        self._posted.add(name)
        self.on_event(event)
        return True

    async def write_status(
        self, ref: ObjectRef, patch: Mapping[str, Any], *, resource_version: str | None
    ) -> Mapping[str, Any]:
        return self.store.write_status(patch, resource_version=resource_version)

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.store.snapshot()

    # ------------------------------------------------------------------ helpers
    def _add(self, ref: RevisionRef) -> _Revision:
        rev = _Revision(ref=ref, port=self.ports.allocate(), replicas=0)
        self.revisions[ref.revision] = rev
        return rev

    def _router_command(self, port: int) -> list[str]:
        routes = str(self.state.routes_file)
        args = [*SERINUS, "router", "--routes", routes, "--host", HOST, "--port", str(port)]
        return [*args, "--log-level", "warning"]

    def _serve_spec(self, md_name: str, rev: _Revision) -> ProcessSpec:
        ref = rev.ref
        model, batching = ref.model, ref.serving.batching
        models_dir = self.state.models_dir / ref.revision

        def command(port: int) -> list[str]:
            args = [*SERINUS, "serve", "--model", model.uri, "--name", md_name]
            args += ["--version", ref.version, "--revision", ref.revision]
            if model.sha256 is not None:
                args += ["--sha256", model.sha256]
            if model.profile is not None:
                args += ["--profile", model.profile]
            args += ["--host", HOST, "--port", str(port), "--model-dir", str(models_dir)]
            args += ["--max-batch-size", str(batching.max_batch_size)]
            args += ["--max-batch-latency-ms", format(batching.max_latency_ms, "g")]
            # Traffic left this revision at least 10 s ago (the engine's grace): no drain.
            args += ["--drain-seconds", "0", "--shutdown-timeout", "5", "--log-level", "warning"]
            return args

        return ProcessSpec(
            name=f"{md_name}-{ref.revision}",
            command=command,
            log=self.state.logs_dir / f"{md_name}-{ref.revision}.log",
            env=dict(ref.serving.env),
            ready_path="/v2/health/ready",
        )

    def _local_table(self) -> dict[str, Any] | None:
        if self._table is None:
            return None
        table = dict(self._table)
        revisions = {}
        for revision, entry in self._table["revisions"].items():
            rev = self.revisions.get(revision)
            local = dict(entry)
            if rev is not None:
                local["url"] = f"http://{HOST}:{rev.port}"
                local["version"] = rev.ref.version
            revisions[revision] = local
        table["revisions"] = revisions
        return table

    def _write_routes(self) -> None:
        table = self._local_table()
        if table is not None:
            write_json(self.state.routes_file, table)

    def targets(self) -> list[Target]:
        base = {"namespace": self.namespace, "model": self.name}
        out = []
        for revision, rev in self.revisions.items():
            if rev.process is not None and rev.process.pid is not None:
                labels = base | {
                    "revision": revision,
                    "version": rev.ref.version,
                    "component": COMPONENT_SERVER,
                    "pod": f"{self.name}-{revision}",
                }
                out.append(Target(f"{HOST}:{rev.process.port}", labels))
        if self.router is not None:
            labels = base | {"component": COMPONENT_ROUTER, "pod": f"{self.name}-router"}
            out.append(Target(f"{HOST}:{self.router.port}", labels))
        if self.options.telemetry_port is not None:
            labels = {"namespace": self.namespace, "component": "operator", "pod": "operator"}
            out.append(Target(f"{HOST}:{self.options.telemetry_port}", labels))
        return out

    def _write_targets(self) -> None:
        write_json(self.state.prometheus_dir / "targets.json", file_sd(self.targets()))

    def process_rows(self) -> list[dict[str, Any]]:
        rows = []
        for revision, rev in self.revisions.items():
            proc = rev.process
            rows.append(
                {
                    "name": f"{self.name}-{revision}",
                    "role": "revision",
                    "revision": revision,
                    "version": rev.ref.version,
                    "replicas": rev.replicas,
                    "port": rev.port,
                    "pid": proc.pid if proc else None,
                    "state": proc.state.value if proc else "ScaledDown",
                    "restarts": proc.restarts if proc else 0,
                    "log": str(proc.spec.log) if proc else None,
                }
            )
        for role, proc in (("router", self.router), ("prometheus", self.prometheus)):
            if proc is not None:
                rows.append(
                    {
                        "name": role,
                        "role": role,
                        "port": proc.port,
                        "pid": proc.pid,
                        "state": proc.state.value,
                        "restarts": proc.restarts,
                        "log": str(proc.spec.log),
                    }
                )
        return rows

    def info(self) -> dict[str, Any]:
        """What ``processes.json`` holds: every process and where to reach things."""
        info: dict[str, Any] = {"processes": self.process_rows(), "router": self.router_url}
        if self.prometheus is not None:
            info["prometheus"] = self.prometheus.url
        if self.options.telemetry_port is not None:
            info["operatorMetrics"] = f"http://{HOST}:{self.options.telemetry_port}/metrics"
        return info

    def _sync(self) -> None:
        """Rewrite what depends on the processes: routes (ports), targets, processes.json."""
        try:
            self._write_routes()
            self._write_targets()
            self.state.save_processes(self.info())
        except OSError as exc:
            log.warning("could not write the state directory: %s", exc)

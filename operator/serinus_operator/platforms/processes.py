"""Supervised child processes for the local platform: what a kubelet does for a pod.

Each child runs in its own session and process group, so a terminal's Ctrl-C reaches only
``serinus local``, which then stops its children itself, and a stop takes any grandchildren
along. A child that exits is restarted with exponential back-off, as a crash-looping
container is; readiness is polled over HTTP, as a readiness probe does, and a child that
exits is unready at once (a failed pod). Ports come from :class:`Ports`, which never hands
out a port in use or already given to another child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

log = logging.getLogger("serinus.local")


class State(StrEnum):
    STARTING = "Starting"  # running, not (yet) ready
    READY = "Ready"
    BACKOFF = "CrashLoopBackOff"  # exited; waiting to be restarted
    STOPPED = "Stopped"


# --- ports -----------------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (as servers do, with
    SO_REUSEADDR: connections of an earlier listener in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class Ports:
    """Free loopback ports, each handed to one child at a time."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.taken: set[int] = set()

    def allocate(self) -> int:
        for _ in range(100):
            with socket.socket() as s:
                s.bind((self.host, 0))
                port: int = s.getsockname()[1]
            if port not in self.taken:
                self.taken.add(port)
                return port
        raise RuntimeError("no free loopback port found")  # pragma: no cover

    def claim(self, port: int) -> None:
        """Reserve a port given by the user (``--port``); raises if it is in use."""
        if port in self.taken or not port_free(port, self.host):
            raise OSError(f"port {port} on {self.host} is already in use")
        self.taken.add(port)

    def release(self, port: int) -> None:
        self.taken.discard(port)


# --- back-off --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` doubling up to ``maximum``; a child that stayed up for
    ``reset_after`` seconds starts from ``initial`` again (the kubelet's rule, shorter)."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 30.0

    def delay(self, restarts: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, restarts - 1)))


# --- one supervised child --------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSpec:
    """What to run. ``command(port)`` builds the argument vector for the child's port;
    ``ready_path`` is polled on that port (None: ready while running)."""

    name: str
    command: Callable[[int], Sequence[str]]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str | None = None
    fixed_port: bool = False  # the user's port: never moved, the start fails instead


@dataclass
class Probe:
    period: float = 0.5
    timeout: float = 1.0
    failure_threshold: int = 2


class Supervised:
    """One child process, kept running on ``port`` until :meth:`stop`.

    ``on_change`` is called (on the event loop) whenever the state, readiness or port
    changes; the platform uses it to wake its reconcile loop and rewrite what depends on
    ports. Before each (re)start the port is checked: if something else took it meanwhile,
    a new one is allocated from ``ports`` and ``on_change`` tells the platform.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        port: int,
        ports: Ports,
        on_change: Callable[[], None] = lambda: None,
        backoff: Backoff | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.spec = spec
        self.port = port
        self.ports = ports
        self.on_change = on_change
        self.backoff = backoff or Backoff()
        self.probe = probe or Probe()
        self.state = State.STOPPED
        self.restarts = 0
        self.pid: int | None = None
        self.last_exit: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._exited = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.state == State.READY

    @property
    def url(self) -> str:
        return f"http://{self.ports.host}:{self.port}"

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"supervise {self.spec.name}")

    def _set(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.on_change()

    async def _spawn(self) -> asyncio.subprocess.Process:
        if not port_free(self.port, self.ports.host):
            if self.spec.fixed_port:
                raise OSError(f"port {self.port} is in use by another program")
            old, self.port = self.port, self.ports.allocate()
            self.ports.release(old)
            log.warning("%s: port %d is taken; moving to %d", self.spec.name, old, self.port)
            self.on_change()
        self.spec.log.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *self.spec.command(self.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.spec.env},
                start_new_session=True,
            )

    async def _supervise(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                process = await self._spawn()
            except OSError as exc:
                log.error("%s: cannot start: %s", self.spec.name, exc)
                rc: int | None = None
            else:
                self._process, self.pid = process, process.pid
                self._exited.clear()
                self._set(State.STARTING)
                prober = asyncio.create_task(self._probe(process))
                rc = await process.wait()
                self._exited.set()
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
                _kill_group(process.pid)  # anything it left behind in its group
            self.last_exit = rc
            if self._stopping:
                break
            if time.monotonic() - started >= self.backoff.reset_after:
                self.restarts = 0
            self.restarts += 1
            delay = self.backoff.delay(self.restarts)
            log.warning(
                "%s exited (%s); restart %d in %.1f s",
                self.spec.name,
                rc,
                self.restarts,
                delay,
            )
            self._set(State.BACKOFF)
            await asyncio.sleep(delay)
        self.pid = None
        self._set(State.STOPPED)

    async def _probe(self, process: asyncio.subprocess.Process) -> None:
        if self.spec.ready_path is None:
            self._set(State.READY)
            return
        failures = 0
        async with httpx.AsyncClient(timeout=self.probe.timeout) as client:
            while process.returncode is None:
                try:
                    response = await client.get(self.url + self.spec.ready_path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    failures = 0
                    self._set(State.READY)
                else:
                    failures += 1
                    if self.state != State.READY or failures >= self.probe.failure_threshold:
                        self._set(State.STARTING)
                await asyncio.sleep(self.probe.period)

    async def stop(self, *, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the child's process group, wait up to ``grace`` seconds, then kill the
        group."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, sig)
            try:
                await asyncio.wait_for(self._exited.wait(), grace)
            except TimeoutError:
                if sig != signal.SIGKILL:
                    log.warning("%s did not stop in %.0f s; killing it", self.spec.name, grace)
                _kill_group(process.pid)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        process = self._process  # a restart may have begun while this stop waited
        if process is not None:
            if process.returncode is None:
                _kill_group(process.pid)
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
            _kill_group(process.pid)
        self.pid = None
        self._set(State.STOPPED)

    def kill_now(self) -> None:
        """SIGKILL the group at once (a second Ctrl-C)."""
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            _kill_group(self._process.pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def reap_leftovers(pids: Sequence[int], *, marker: str) -> list[int]:
    """Kill the process groups of ``pids`` whose command line contains ``marker`` (the
    state directory): children of an earlier ``serinus local`` that was itself killed
    with SIGKILL and could not stop them. Returns the pids killed.

    A process still in its exec has an empty command line here, so it is left alone, and
    a spawn can return before the kernel has laid out the new program's arguments. Not a
    race for the pids this is given: the earlier run recorded each after its spawn
    returned, with only that layout left, and has died since. A caller reaping what it
    has just spawned must first know that the child runs (as the tests do)."""
    killed = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            _kill_group(pid)
            killed.append(pid)
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)  # until they are gone and their ports free
    return killed


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: exists and is not a zombie whose threads are all gone
    (a multi-threaded process keeps its sockets until its last thread exits, after its
    main thread already shows as a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False

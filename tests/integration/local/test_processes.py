"""Supervision as the local platform does it: real child processes on 127.0.0.1.

A crashed child is unready at once and restarted with back-off; a stop takes the child's
whole process group (grandchildren included); a port taken by someone else is avoided.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serinus_operator.platforms.processes import (
    Backoff,
    Ports,
    Probe,
    ProcessSpec,
    State,
    Supervised,
    port_free,
    reap_leftovers,
)

pytestmark = pytest.mark.integration

# A child that serves GET /ready and starts a grandchild in its own process group.
CHILD = """
import http.server, subprocess, sys
subprocess.Popen(["sleep", "300"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def ignores(pid: int, sig: signal.Signals) -> bool:
    """Whether ``pid`` ignores ``sig`` now, as the kernel has it (``SigIgn``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def child_spec(tmp_path: Path, *, ready_path: str | None = "/ready") -> ProcessSpec:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return ProcessSpec(
        name="child",
        command=lambda port: [sys.executable, str(script), str(port)],
        log=tmp_path / "child.log",
        ready_path=ready_path,
    )


def test_a_crashed_child_is_unready_at_once_then_restarted(tmp_path: Path) -> None:
    async def run() -> None:
        ports = Ports()
        changes: list[State] = []
        child = Supervised(
            child_spec(tmp_path),
            port=ports.allocate(),
            ports=ports,
            backoff=Backoff(initial=0.5, maximum=2),
            probe=Probe(period=0.1),
        )
        child.on_change = lambda: changes.append(child.state)
        child.start()
        try:
            await crash_and_restart(child, changes)
        finally:
            await child.stop(grace=1)

    asyncio.run(run())


async def crash_and_restart(child: Supervised, changes: list[State]) -> None:
    await until(lambda: child.ready)
    first = child.pid
    assert first is not None
    members = group_members(first)
    assert len(members) == 2  # the server and its sleep
    os.kill(first, signal.SIGKILL)
    await until(lambda: not child.ready, within=2)
    await until(lambda: State.BACKOFF in changes, within=2)
    assert not any(alive(p) for p in members)  # its group went with it
    await until(lambda: child.ready)
    assert child.pid != first
    assert child.restarts == 1
    assert changes[:2] == [State.STARTING, State.READY]
    assert changes[-1] == State.READY
    pid = child.pid
    assert pid is not None
    members = group_members(pid)
    await child.stop(grace=5)
    assert child.state == State.STOPPED
    assert not any(alive(p) for p in members)


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "time.sleep(300)\n")  # fmt: skip
    spec = ProcessSpec("stubborn", lambda _: [sys.executable, str(script)], tmp_path / "s.log")

    async def run() -> None:
        ports = Ports()
        child = Supervised(spec, port=ports.allocate(), ports=ports)
        child.start()
        try:
            await until(lambda: child.ready)  # no probe: ready while running
            pid = child.pid
            assert pid is not None
            # Running is not ignoring yet: the script does that once Python has started.
            await until(lambda: ignores(pid, signal.SIGTERM))
            started = time.monotonic()
            await child.stop(grace=0.5)
            assert 0.5 <= time.monotonic() - started < 5  # the SIGTERM did not do it
            assert not alive(pid)
        finally:
            await child.stop(grace=0)

    asyncio.run(run())


def test_a_child_whose_port_was_taken_moves_to_a_free_one(tmp_path: Path) -> None:
    async def run() -> None:
        ports = Ports()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        moved: list[int] = []
        child = Supervised(child_spec(tmp_path), port=taken, ports=ports, probe=Probe(period=0.1))
        child.on_change = lambda: moved.append(child.port)
        child.start()
        try:
            await until(lambda: child.ready)
            assert child.port != taken
            assert moved[0] == child.port
        finally:
            await child.stop()
            squatter.close()

    asyncio.run(run())


def test_ports_are_handed_out_once_and_a_used_port_cannot_be_claimed() -> None:
    ports = Ports()
    given = {ports.allocate() for _ in range(20)}
    assert len(given) == 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        used = s.getsockname()[1]
        assert not port_free(used)
        with pytest.raises(OSError, match=f"port {used}"):
            ports.claim(used)
    free = ports.allocate()
    ports.release(free)
    ports.claim(free)
    with pytest.raises(OSError, match="already in use"):
        ports.claim(free)  # ours already


# Says so once it runs, then idles.
IDLER = "import time; print('running', flush=True); time.sleep(300)"


@contextlib.contextmanager
def started(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A Python child in its own session, given once its program runs; killed after.

    ``Popen`` returns as soon as the kernel has committed to the exec, which is before it
    has laid out the new program's arguments: until then ``/proc/PID/cmdline`` reads empty,
    so a marker in them cannot be seen yet. The child's first line is printed by the new
    program itself, so once it is read the exec, and with it the command line, is complete:
    a condition, where a sleep would only make the race rarer.
    """
    command = [sys.executable, "-c", IDLER, *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"running\n", "the child exited before running"
            yield child
        finally:
            child.kill()  # then Popen's exit waits for it


def test_leftovers_of_a_killed_run_are_reaped_by_their_marker(tmp_path: Path) -> None:
    """The reaper reads the command lines of children that an earlier run started, which
    have long finished their exec by the time a later run looks; ``started`` waits for the
    same, since a child still in its exec would be skipped as if it were someone else's."""
    marker = f"{tmp_path / 'state'}/"
    with (
        started(f"{marker}routes.json") as ours,
        started(f"{tmp_path / 'stated'}/routes.json") as other,  # the marker but for its "/"
    ):
        assert reap_leftovers([ours.pid, other.pid, 999_999_999], marker=marker) == [ours.pid]
        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None

"""Start real ``serinus serve`` processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

SERINUS = str(Path(sys.executable).with_name("serinus"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, path: str, status: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.logs()}")
            try:
                last = httpx.get(self.url + path, timeout=2).status_code
                if last == status:
                    return
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status} (last: {last}):\n{self.logs()}")


@contextlib.contextmanager
def _running(
    command: str,
    *args: str,
    log_dir: Path,
    wait_for: str,
    env: dict[str, str] | None = None,
) -> Iterator[ServeProcess]:
    """Run ``serinus COMMAND ARGS`` on a free loopback port until the block ends, once
    ``wait_for`` answers 200; stop it with SIGINT (no drain window), then kill if stuck."""
    port = free_port()
    log = log_dir / f"{command}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SERINUS, command, *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = ServeProcess(process, port, log)
    try:
        server.wait_until(wait_for, 200)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(
    *args: str, log_dir: Path, ready: bool = True, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[ServeProcess]:
    """``serinus serve ARGS``, once ready (or only live, with ``ready=False``)."""
    health = "/v2/health/ready" if ready else "/v2/health/live"
    return _running("serve", *args, log_dir=log_dir, wait_for=health, env=env)


def router(
    routes: Path, *args: str, log_dir: Path
) -> contextlib.AbstractContextManager[ServeProcess]:
    """``serinus router --routes ROUTES ARGS``, once it has a routing table."""
    return _running("router", "--routes", str(routes), *args, log_dir=log_dir, wait_for="/-/ready")

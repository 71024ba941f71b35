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
def serve(
    *args: str, log_dir: Path, ready: bool = True, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    """Run ``serinus serve ARGS --port P`` until the block ends; wait for readiness first."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SERINUS, "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = ServeProcess(process, port, log)
    try:
        if ready:
            server.wait_until("/v2/health/ready", 200)
        else:
            server.wait_until("/v2/health/live", 200)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def router(routes: Path, *, log_dir: Path) -> Iterator[ServeProcess]:
    """Run ``serinus router --routes ROUTES`` until the block ends; wait until it has a table."""
    port = free_port()
    log = log_dir / f"router-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                SERINUS,
                "router",
                "--routes",
                str(routes),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServeProcess(process, port, log)
    try:
        server.wait_until("/-/ready", 200)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

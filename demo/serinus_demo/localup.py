"""Drive ``serinus local up`` as a user would: write the YAML, start it, edit the YAML, read
what ``serinus local status`` reads (the state directory), and stop it with Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

SERINUS = [sys.executable, "-m", "serinus_operator.cli"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def processes_under(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (a state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if marker.encode() in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


class LocalUp:
    """One ``serinus local up FILE`` process and its state directory."""

    def __init__(
        self, manifest: Path, *, state_dir: Path, port: int, namespace: str, name: str
    ) -> None:
        self.manifest = manifest
        self.state_dir = state_dir.resolve()
        self.port = port
        self.instance = self.state_dir / f"{namespace}-{name}"
        self.log = manifest.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, text: str) -> None:
        """Replace the YAML as an editor would (the loop notices within half a second)."""
        tmp = self.manifest.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.manifest)

    def start(self) -> None:
        command = [*SERINUS, "local", "up", str(self.manifest), "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir), "--plain", "--fresh"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is forwarded by stop(), once
            )

    def check_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"serinus local up exited; its output:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def object(self) -> dict[str, Any]:
        found = _read_json(self.instance / "object.json")
        return found if isinstance(found, dict) else {}

    def status(self) -> dict[str, Any]:
        status = self.object().get("status")
        return status if isinstance(status, dict) else {}

    def info(self) -> dict[str, Any]:
        found = _read_json(self.instance / "processes.json")
        return found if isinstance(found, dict) else {}

    def events(self) -> list[dict[str, Any]]:
        path = self.instance / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.info().get("processes") or [] if p.get("pid")]

    def stop(self, *, timeout: float = 30.0) -> list[int]:
        """Ctrl-C, then wait; returns the pids still running afterwards (none, we hope)."""
        if self.process is None:
            return []
        children = self.pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        left = [pid for pid in children if alive(pid)]
        return sorted(set(left) | set(processes_under(str(self.state_dir))))

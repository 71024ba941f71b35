"""The local platform's state directory: what the API server keeps for a cluster.

``<base>/<namespace>-<name>/`` holds the stored object (``object.json``: metadata, spec and
status, as ``kubectl get -o json`` shows them), its Events (``events.jsonl``), the running
processes (``processes.json``: pids, ports, states), the router's routing table, the
Prometheus configuration and data, and logs. Every file is replaced atomically, so
``serinus local status`` in another terminal never reads half a file. A lock file held for
the life of ``serinus local up`` makes a second one on the same name refuse clearly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: ``serinus local`` keeps its state here unless told otherwise (``--state-dir``).
DEFAULT_BASE = Path(".serinus/local")
#: Events kept in ``events.jsonl``; older ones are dropped when it is rewritten.
MAX_EVENTS = 500


class AlreadyRunning(RuntimeError):
    """Another ``serinus local up`` holds this ModelDeployment's state directory."""


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class StateDir:
    path: Path

    @classmethod
    def of(cls, base: Path, namespace: str, name: str) -> StateDir:
        return cls(base / f"{namespace}-{name}")

    # --- paths -------------------------------------------------------------------------------
    @property
    def object_file(self) -> Path:
        return self.path / "object.json"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def processes_file(self) -> Path:
        return self.path / "processes.json"

    @property
    def routes_file(self) -> Path:
        return self.path / "routes.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    @property
    def prometheus_dir(self) -> Path:
        return self.path / "prometheus"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def models_dir(self) -> Path:
        return self.path / "models"

    # --- the lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state directory for this process; raises :class:`AlreadyRunning`."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = self.lock_file.open("a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                pid = handle.read().strip() or "?"
                raise AlreadyRunning(
                    f"serinus local is already running for {self.path.name} (pid {pid}, state "
                    f"in {self.path}): stop it first (Ctrl-C in its terminal, or kill -INT "
                    f"{pid}), or use another --state-dir"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the lock

    def running(self) -> bool:
        """Whether a ``serinus local up`` holds the lock now."""
        if not self.lock_file.exists():
            return False
        with self.lock_file.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # --- the object and its events -----------------------------------------------------------
    def load_object(self) -> dict[str, Any] | None:
        found = read_json(self.object_file)
        return found if isinstance(found, dict) else None

    def save_object(self, obj: Mapping[str, Any]) -> None:
        write_json(self.object_file, obj)

    def append_event(self, event: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.events_file.open("a") as out:
            out.write(json.dumps(event, sort_keys=True) + "\n")

    def events(self, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
        try:
            lines = self.events_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-limit:]:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def trim_events(self) -> None:
        """Keep the last :data:`MAX_EVENTS` (called at start, never while appending)."""
        events = self.events()
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        atomic_write(self.events_file, lines)

    # --- processes ---------------------------------------------------------------------------
    def save_processes(self, info: Mapping[str, Any]) -> None:
        write_json(self.processes_file, info)

    def load_processes(self) -> dict[str, Any]:
        found = read_json(self.processes_file)
        return found if isinstance(found, dict) else {}

    def recorded_pids(self) -> list[int]:
        rows: Sequence[Any] = self.load_processes().get("processes") or []
        return [int(r["pid"]) for r in rows if isinstance(r, dict) and r.get("pid")]


def instances(base: Path) -> list[StateDir]:
    """Every state directory under ``base`` that has a stored object."""
    if not base.is_dir():
        return []
    return sorted(
        (StateDir(p) for p in base.iterdir() if (p / "object.json").is_file()),
        key=lambda s: s.path.name,
    )

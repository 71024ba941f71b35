"""``serinus local up`` killed with SIGKILL cannot stop its children; the next one on the
same name finds them by their command line, stops them, and resumes from the stored status."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support import models

pytestmark = pytest.mark.integration

SERINUS = [sys.executable, "-m", "serinus_operator.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes(state: Path) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = json.loads((state / "processes.json").read_text())["processes"]
    except (FileNotFoundError, ValueError, KeyError):
        return []
    return rows


def up(tmp_path: Path, port: int, log: str) -> subprocess.Popen[bytes]:
    with (tmp_path / log).open("wb") as out:
        return subprocess.Popen(
            [*SERINUS, "local", "up", "md.yaml", "--port", str(port), "--plain"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_all_ready(
    state: Path, proc: subprocess.Popen[bytes], log: Path, *, not_these: list[int] | None = None
) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        rows = processes(state)
        if (
            len(rows) == 3
            and all(r["state"] == "Ready" for r in rows)
            and not {r["pid"] for r in rows} & set(not_these or [])
        ):
            return [int(r["pid"]) for r in rows]
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


def test_children_of_a_killed_run_are_stopped_by_the_next_one(tmp_path: Path) -> None:
    model = models.threshold_classifier(tmp_path / "model.onnx", threshold=0.0)
    (tmp_path / "md.yaml").write_text(
        "apiVersion: serinus.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        f"spec:\n  model: {{uri: {model.name}, version: v1}}\n"
        "  strategy: {type: Canary, canary: {steps: [{setWeight: 50}]}}\n"
    )
    state = tmp_path / ".serinus" / "local" / "default-tiny"
    port = free_port()
    first = up(tmp_path, port, "first.log")
    orphans: list[int] = []
    try:
        orphans = wait_all_ready(state, first, tmp_path / "first.log")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert all(alive(pid) for pid in orphans)  # nobody could stop them

    second = up(tmp_path, port, "second.log")
    children: list[int] = []
    try:
        children = wait_all_ready(state, second, tmp_path / "second.log", not_these=orphans)
        assert not any(alive(pid) for pid in orphans)
        output = (tmp_path / "second.log").read_text()
        assert "stopped 3 process(es) left behind by an earlier run" in output
        status = json.loads((state / "object.json").read_text())["status"]
        assert status["phase"] == "Stable"
        assert [h["version"] for h in status["history"]] == ["v1"]  # resumed, not redone
    finally:
        second.send_signal(signal.SIGINT)
        code = second.wait(timeout=30)
        for pid in orphans + children:  # whatever happened above, leave nothing behind
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
    assert code == 0
    assert children
    assert not any(alive(pid) for pid in children)

"""``serinus local up`` refuses clearly and fast: no Prometheus, a second run on the same
name, a port in use, an unreadable file; ``serinus local status`` with nothing to show."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serinus_operator.platforms.local_state import StateDir

pytestmark = pytest.mark.integration

SERINUS = [sys.executable, "-m", "serinus_operator.cli"]
MANIFEST = """
apiVersion: serinus.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fraud, namespace: ml}
spec:
  model: {uri: model.onnx, version: v1}
  strategy: {type: Canary, canary: {steps: [{setWeight: 50}]}}
"""


def local(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "md.yaml"
    if not manifest.exists():
        manifest.write_text(MANIFEST)
    started = time.monotonic()
    done = subprocess.run(
        [*SERINUS, "local", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert time.monotonic() - started < 30, "a refusal must be fast"
    return done


def test_without_prometheus_it_fails_fast_with_the_install_hint(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = local(tmp_path, "up", "md.yaml", env={"PATH": str(empty)})
    assert done.returncode == 1
    assert "apt-get install prometheus" in done.stderr
    assert not (tmp_path / ".serinus").exists()  # nothing started, nothing written


def test_a_second_up_on_the_same_name_refuses_and_names_the_first(tmp_path: Path) -> None:
    state = StateDir.of((tmp_path / ".serinus/local").resolve(), "ml", "fraud")
    with state.lock():
        done = local(tmp_path, "up", "md.yaml")
    assert done.returncode == 1
    assert f"already running for ml-fraud (pid {os.getpid()}" in done.stderr
    assert "Ctrl-C" in done.stderr


def test_a_port_in_use_is_refused_with_the_option_to_change_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = local(tmp_path, "up", "md.yaml", "--port", str(port))
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use: choose another with --port" in (
        done.stderr
    )


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "md.yaml").write_text("kind: Deployment\n")
    done = local(tmp_path, "up", "md.yaml")
    assert done.returncode == 2
    assert "no document of kind ModelDeployment" in done.stderr


def test_status_with_nothing_run_says_how_to_start(tmp_path: Path) -> None:
    done = local(tmp_path, "status")
    assert done.returncode == 1
    assert "serinus local up FILE.yaml" in done.stderr


def test_a_prometheus_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\necho 'error parsing config file' >&2\nexit 1\n")
    fake.chmod(0o755)
    done = local(tmp_path, "up", "md.yaml", "--prometheus-bin", str(fake))
    assert done.returncode == 1
    assert "prometheus did not start" in done.stderr
    assert "error parsing config file" in done.stderr

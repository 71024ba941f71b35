"""The routing table from a polled file: a file that cannot be read or does not parse is
logged and counted once per change of state, not once per poll, and the last good table
stays in force."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from serinus_serving.router.sources import FileSource
from serinus_serving.router.table import RoutingTable

pytestmark = pytest.mark.unit

POLLS = 25  # 5 s of polling at the default 0.2 s


def table(weight_a: int) -> bytes:
    return json.dumps(
        {
            "model": "m",
            "revisions": {
                "a": {"url": "http://127.0.0.1:9001", "weight": weight_a},
                "b": {"url": "http://127.0.0.1:9002", "weight": 100 - weight_a},
            },
        }
    ).encode()


class Recorder:
    def __init__(self, path: Path) -> None:
        self.applied: list[RoutingTable] = []
        self.rejected: list[str] = []
        self.source = FileSource(path, self.applied.append, rejected=self.rejected.append)

    def poll(self, times: int = POLLS) -> list[bool]:
        return [self.source.load() for _ in range(times)]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_deleted_file_is_reported_once_and_its_return_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serinus_serving.router.sources")
    path = tmp_path / "routes.json"
    path.write_bytes(table(90))
    r = Recorder(path)
    assert r.poll(1) == [True]
    caplog.clear()

    path.unlink()
    assert r.poll() == [False] * POLLS  # the last good table stays: nothing applied
    assert len(r.applied) == 1
    assert len(r.rejected) == 1 and "does not exist" in r.rejected[0]
    [missing] = problems(caplog)
    assert str(path) in missing and "keeping the last good one" in missing

    caplog.clear()
    path.write_bytes(table(50))
    assert r.poll() == [True] + [False] * (POLLS - 1)
    assert [t.weights for t in r.applied] == [{"a": 90, "b": 10}, {"a": 50, "b": 50}]
    assert problems(caplog) == []
    back = [m for m in messages(caplog, logging.INFO) if "readable again" in m]
    assert len(back) == 1 and str(path) in back[0]
    assert len(r.rejected) == 1


def test_a_file_missing_from_the_start_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routes.json"
    r = Recorder(path)
    assert r.poll() == [False] * POLLS
    assert len(r.rejected) == 1 and len(problems(caplog)) == 1
    path.write_bytes(table(100))
    assert r.poll(2) == [True, False]
    assert len(r.rejected) == 1 and len(problems(caplog)) == 1


def test_every_persistent_failure_is_reported_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid JSON, a path that cannot be read (a directory: unreadable even as root),
    missing, and back to the same invalid JSON: each state once, however long it lasts."""
    path = tmp_path / "routes.json"
    path.write_bytes(table(100))
    r = Recorder(path)
    r.poll(1)
    states = [
        lambda: path.write_bytes(b'{"model": "m", "revisions": {'),
        lambda: (path.unlink(), path.mkdir()),
        path.rmdir,
        lambda: path.write_bytes(b'{"model": "m", "revisions": {'),
    ]
    for i, enter in enumerate(states, start=1):
        enter()
        assert r.poll() == [False] * POLLS
        assert len(r.rejected) == i, r.rejected
        assert len(problems(caplog)) == i, problems(caplog)
    assert "not valid JSON" in r.rejected[0] or "JSON" in r.rejected[0]
    assert "cannot read" in r.rejected[1]
    assert "does not exist" in r.rejected[2]
    assert [t.weights for t in r.applied] == [{"a": 100, "b": 0}]


def test_the_same_content_written_again_is_not_reported_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A table is judged by its content: an invalid one rewritten as it was (a sync loop
    writing the file every few seconds) is rejected once; a valid one is applied once."""
    path = tmp_path / "routes.json"
    r = Recorder(path)
    for i in range(3):
        path.write_bytes(b"not json")
        os.utime(path, (1e9 + i, 1e9 + i))  # a new mtime each time
        r.poll(3)
    assert len(r.rejected) == 1 and len(problems(caplog)) == 1
    for _ in range(3):
        path.write_bytes(table(100))
        r.poll(3)
    assert len(r.applied) == 1

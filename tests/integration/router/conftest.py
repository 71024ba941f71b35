"""Shared fixtures of the router's integration tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from support import models
from support.serve import ServeProcess, serve


@pytest.fixture(scope="module")
def revisions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServeProcess]]:
    """Two revisions of a classifier on 4 features: ``old`` says 1 when x0 > 0.5, ``new``
    when x0 > 0.7, so they disagree exactly when 0.5 < x0 <= 0.7."""
    work = tmp_path_factory.mktemp("revisions")
    old = models.threshold_classifier(work / "old.onnx", threshold=0.5)
    new = models.threshold_classifier(work / "new.onnx", threshold=0.7)
    with contextlib.ExitStack() as stack:
        yield {
            "old": stack.enter_context(
                serve("--model", str(old), "--name", "m", "--version", "1", log_dir=work)
            ),
            "new": stack.enter_context(
                serve("--model", str(new), "--name", "m", "--version", "2", log_dir=work)
            ),
        }

"""The chart's copies of the CRD, dashboards and alerts equal their originals (a chart cannot
read files outside its folder, so `make chart-files` copies them in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unit.install.kit import CHART, ROOT

pytestmark = pytest.mark.unit

FIX = "the chart's copy is stale: run `make chart-files`"


def _same_files(originals: list[Path], copies: list[Path]) -> None:
    assert [p.name for p in copies] == [p.name for p in originals], FIX
    for original, copy in zip(originals, copies, strict=True):
        assert copy.read_bytes() == original.read_bytes(), f"{copy}: {FIX}"


def test_crd_copy_is_current() -> None:
    _same_files([ROOT / "crds" / "modeldeployment.yaml"], [CHART / "crds" / "modeldeployment.yaml"])


@pytest.mark.parametrize(("folder", "pattern"), [("dashboards", "*.json"), ("alerts", "*.yaml")])
def test_copies_are_current(folder: str, pattern: str) -> None:
    originals = sorted((ROOT / "manifests" / folder).glob(pattern))
    assert originals
    _same_files(originals, sorted((CHART / folder).glob(pattern)))

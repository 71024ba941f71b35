"""Shared fixtures: real ONNX models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from support import models

# The machines are shared and noisy: timing is never what a property test judges.
settings.register_profile("serinus", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("serinus")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def logreg_path(model_dir: Path) -> Path:
    return models.logistic_regression(model_dir / "logreg.onnx")


@pytest.fixture(scope="session")
def zipmap_path(model_dir: Path) -> Path:
    return models.logistic_regression(model_dir / "logreg-zipmap.onnx", zipmap=True)


@pytest.fixture(scope="session")
def mixed_path(model_dir: Path) -> Path:
    return models.mixed_types(model_dir / "mixed.onnx")


@pytest.fixture(scope="session")
def strings_path(model_dir: Path) -> Path:
    return models.strings(model_dir / "strings.onnx")


@pytest.fixture(scope="session")
def fixed_path(model_dir: Path) -> Path:
    return models.fixed_batch(model_dir / "fixed.onnx")


@pytest.fixture(scope="session")
def gather_path(model_dir: Path) -> Path:
    return models.gather(model_dir / "gather.onnx")

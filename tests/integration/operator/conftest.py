"""Fixtures: a faithful kmock API, a Deployment controller and the real operator process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import Cluster, DeploymentController, Operator
from support.kube_api import KubeApi


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    kube = KubeApi()
    controller = DeploymentController(kube)
    controller.start()
    operator = Operator(kube=kube, workdir=tmp_path)
    try:
        yield Cluster(kube=kube, controller=controller, operator=operator)
    finally:
        operator.stop()
        controller.stop()
        kube.close()

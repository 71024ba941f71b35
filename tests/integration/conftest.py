"""One real Kubernetes control plane per test session (tests/support/real_cluster.py),
with the ModelDeployment CRD, the Gateway API's HTTPRoute CRD and the operator's RBAC
installed; each test that uses it takes a namespace of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.real_cluster import NoGo, RealCluster, build_binaries, gateway_api_crds
from support.real_kube import CRDS, RealKube


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    try:
        build_binaries()
        gateway = gateway_api_crds()
    except NoGo as exc:
        pytest.skip(f"SKIPPED ON PURPOSE: {exc}")
    with RealCluster(crds=(*CRDS, *gateway)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def real_kube(real_cluster: RealCluster) -> Iterator[RealKube]:
    kube = RealKube(real_cluster)
    kube.install()
    try:
        yield kube
    finally:
        kube.close()

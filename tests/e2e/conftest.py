"""The end-to-end tests' cluster: a real Kubernetes control plane of its own
(tests/support/real_cluster.py), empty — no CRD, no RBAC: the tests install Serinus
themselves, as a platform team would.

``make e2e`` is opt-in, so what it needs but cannot find is a failure here, never a skip:
a run that tested nothing must not look green."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from support.real_cluster import NoGo, RealCluster, build_binaries


@pytest.fixture(scope="session")
def e2e_cluster() -> Iterator[RealCluster]:
    missing = [tool for tool in ("kubectl", "prometheus") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the end-to-end test needs {' and '.join(missing)} on PATH", pytrace=False)
    try:
        build_binaries()
    except NoGo as exc:
        pytest.fail(str(exc), pytrace=False)
    with RealCluster() as cluster:
        yield cluster

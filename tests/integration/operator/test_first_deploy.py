"""First deploy: a ModelDeployment becomes a stable revision with all of its objects."""

from __future__ import annotations

import pytest

from support.cluster import Cluster, md

pytestmark = pytest.mark.integration


def test_first_revision_goes_straight_to_stable(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1"))
    status = cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="Stable")
    revision = status["stable"]["revision"]
    assert status["stable"]["version"] == "v1"
    assert status["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}
    assert f"fraud-{revision}" in cluster.names("apps/v1", "deployments")
    assert {"fraud", f"fraud-{revision}"} <= cluster.names("v1", "services")
    assert cluster.weights("fraud") == {revision: 100}
    assert "fraud-router" in cluster.names("apps/v1", "deployments")

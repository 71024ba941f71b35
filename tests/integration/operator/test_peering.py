"""High availability: two operator replicas with kopf peering; one acts, the other takes
over when it dies (kopf's peering object lives in the faithful kmock API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster import NAMESPACE, Cluster, Operator, md

pytestmark = pytest.mark.integration


def test_standby_replica_takes_over(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kube.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "serinus", "namespace": NAMESPACE},
        },
        "kopfpeerings",
    )
    first = cluster.operator
    first.peering, first.priority = "serinus", 100
    first.env["POD_ID"] = "first"
    first.start()
    cluster.apply(md("v1"))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")
    second = Operator(
        kube=cluster.kube, workdir=tmp_path, peering="serinus", priority=50, name="second"
    )
    second.env["POD_ID"] = "second"
    second.start()
    try:
        # Both live: the higher priority acts, the other stands by.
        cluster.apply(md("v2"))
        cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 50, what="v2 50%")
        assert "created Deployment" in first.log_text()
        assert "created Deployment" not in second.log_text(), "the standby acted"
        first.kill()
        cluster.apply(md("v3"))
        cluster.wait_status(
            "fraud",
            lambda s: (
                (s.get("candidate") or {}).get("version") == "v3"
                and s["traffic"]["candidate"] == 50
            ),
            timeout=90,  # the dead peer's claim (15 s here) must run out first
            what="the standby replica carried the rollout on",
        )
        log = second.log_text()
        assert "Resuming operations after the pause" in log, log[-3000:]
        assert "created Deployment" in log
    finally:
        second.stop()

"""High availability: two operator replicas with kopf peering; one acts, the other takes
over when it dies. The peering CRD is the chart's, and the peering rights are the ones the
chart grants (support.operator_rbac), bound in the test's namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster import Cluster, Operator, md
from support.operator_rbac import PEERING_VERBS
from support.real_kube import OPERATOR_NAMESPACE, OPERATOR_SA

pytestmark = pytest.mark.integration


def test_standby_replica_takes_over(cluster: Cluster, tmp_path: Path) -> None:
    ns = cluster.namespace
    rules = [
        {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": sorted(PEERING_VERBS)}
    ]
    cluster.kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "serinus-peering", "namespace": ns},
            "rules": rules,
        }
    )
    cluster.kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "serinus-peering", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "serinus-peering",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NAMESPACE}
            ],
        }
    )
    cluster.kube.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "serinus", "namespace": ns},
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
        kube=cluster.kube,
        workdir=tmp_path,
        namespace=ns,
        peering="serinus",
        priority=50,
        name="second",
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
            timeout=90,  # the dead peer's claim (8 s, support.cluster) must run out first
            what="the standby replica carried the rollout on",
        )
        log = second.log_text()
        assert "Resuming operations after the pause" in log, log[-3000:]
        assert "created Deployment" in log
    finally:
        second.stop()

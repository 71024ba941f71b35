"""Traffic the status records is traffic that landed: the operator reads its routes back.

A person (or another controller) editing the routing table behind the operator's back
leaves the operator's applied-hash annotation as it was, so a write that compared only that
hash would never repair it; the operator sees that the object changed since it last wrote
it, applies it again, and reads the routes back from what the API server stored. And
server-side apply removes what the operator no longer writes, so after a promotion
``serinus.dev/candidate`` is gone and the table no longer names the old candidate.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.cluster import MD, Cluster, md, wait_for

pytestmark = pytest.mark.integration

STRATEGY = {"type": "Canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}


def _poke(cluster: Cluster, value: str) -> None:
    """Any change to the ModelDeployment starts a pass."""
    cluster.kube.patch(
        *MD, cluster.namespace, "fraud", {"metadata": {"labels": {"example.com/poke": value}}}
    )


def _configmap(cluster: Cluster) -> dict[str, Any]:
    found = cluster.kube.get("v1", "configmaps", cluster.namespace, "fraud-routes")
    assert found is not None
    return found


def test_a_routing_table_edited_by_hand_is_written_again(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1", strategy=STRATEGY))
    v1 = cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")["stable"][
        "revision"
    ]
    cluster.apply(md("v2", strategy=STRATEGY))
    s = cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 20, what="20%")
    v2 = s["candidate"]["revision"]
    assert wait_for(lambda: cluster.weights("fraud") == {v1: 80, v2: 20}, what="routes at 20%")

    table = json.loads(_configmap(cluster)["data"]["routes.json"])
    table["revisions"][v1]["weight"], table["revisions"][v2]["weight"] = 0, 100
    stored = cluster.kube.patch(
        "v1", "configmaps", cluster.namespace, "fraud-routes",
        {"data": {"routes.json": json.dumps(table)}},
    )  # fmt: skip
    # The edit landed (as the API server answered it: the operator, woken by the change,
    # may already have put it back by the time the test could read it again).
    edited = json.loads(stored["data"]["routes.json"])["revisions"]
    assert {rev: r["weight"] for rev, r in edited.items()} == {v1: 0, v2: 100}
    _poke(cluster, "1")
    assert wait_for(lambda: cluster.weights("fraud") == {v1: 80, v2: 20}, what="the edit undone")
    # Logged once the write is answered, which may be just after the test sees it landed.
    wait_for(lambda: "changed by someone else" in cluster.operator.log_text(), what="the log")


def test_a_promotion_removes_the_candidate_annotation(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1", strategy=STRATEGY))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1")
    cluster.apply(md("v2", strategy=STRATEGY))
    cluster.wait_status("fraud", lambda s: s["traffic"]["candidate"] == 20, what="20%")
    annotations = _configmap(cluster)["metadata"]["annotations"]
    assert "serinus.dev/candidate" in annotations
    cluster.annotate_action("fraud", "promote-full:n1")
    s = cluster.wait_status(
        "fraud", lambda s: s.get("phase") == "Stable" and not s.get("candidate"), what="v2"
    )

    def dropped() -> bool:
        found = _configmap(cluster)["metadata"]["annotations"]
        return (
            "serinus.dev/candidate" not in found
            and found["serinus.dev/stable"] == s["stable"]["revision"]
        )

    assert wait_for(dropped, what="the candidate annotation removed")

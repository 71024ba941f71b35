"""Bounded, fair work (issue 19) on the real control plane: a burst of ModelDeployments
through a small pool of reconcile passes all reaches Stable, and the operator never runs
more passes at once than ``--max-concurrent-passes``."""

from __future__ import annotations

import pytest

from support.cluster import MD, Cluster, md, wait_for

pytestmark = pytest.mark.integration

N = 40
LIMIT = 4


def test_a_burst_of_modeldeployments_goes_through_at_most_the_allowed_passes_at_once(
    cluster: Cluster,
) -> None:
    cluster.operator.extra_args = ["--max-concurrent-passes", str(LIMIT)]
    cluster.operator.start()
    names = [f"model-{i:02d}" for i in range(N)]
    for name in names:
        cluster.apply(md("v1", name=name, replicas=1))

    running: list[float] = []

    def all_stable() -> bool | None:
        running.append(cluster.operator.sample("serinus_reconcile_passes_running") or 0.0)
        found = cluster.kube.list(*MD, cluster.namespace)
        stable = [m for m in found if (m.get("status") or {}).get("phase") == "Stable"]
        return len(stable) == N or None

    wait_for(
        all_stable,
        timeout=240,
        what=f"all {N} ModelDeployments Stable",
        why=lambda: cluster.operator.log_text()[-6000:],
    )
    assert len(running) > 1 and max(running) <= LIMIT, running
    # Every object's first pass was asked for (created), so went through the queue as due.
    waited = cluster.operator.sample("serinus_reconcile_wait_seconds_count", urgency="due")
    assert waited is not None and waited >= N

"""Fixtures: the real control plane (one per session), a namespace per test, and the real
operator process under the install's ServiceAccount and RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import Cluster, Operator
from support.real_kube import RealKube


@pytest.fixture
def cluster(real_kube: RealKube, tmp_path: Path) -> Iterator[Cluster]:
    namespace = real_kube.new_namespace("op")
    operator = Operator(kube=real_kube, workdir=tmp_path, namespace=namespace)
    try:
        yield Cluster(kube=real_kube, namespace=namespace, operator=operator)
    finally:
        operator.stop()
        # kopf's finalizer would hold the namespace in Terminating with no operator left.
        for md in real_kube.list("serinus.dev/v1alpha1", "modeldeployments", namespace):
            real_kube.patch(
                "serinus.dev/v1alpha1",
                "modeldeployments",
                namespace,
                md["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
        real_kube.delete("v1", "namespaces", None, namespace)

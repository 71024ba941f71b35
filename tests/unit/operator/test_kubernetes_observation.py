"""How Deployment status becomes the engine's RevisionObservation (the platform contract in
docs/rollouts.md), table-driven, plus the pure helpers of the Kubernetes platform."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from serinus_operator.platforms.kubernetes import (
    PROBLEM_CHARS,
    applied_hash,
    cached_kinds,
    collection_path,
    md_path,
    object_path,
    observation,
    pod_problem,
)
from serinus_operator.rollout import RevisionObservation

pytestmark = pytest.mark.unit


def deployment(
    *,
    replicas: int = 2,
    generation: int = 1,
    observed: int = 1,
    available: int = 2,
    updated: int = 2,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "availableReplicas": available,
            "updatedReplicas": updated,
            "conditions": conditions
            if conditions is not None
            else [{"type": "Available", "status": "True"}],
        },
    }


DEADLINE = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (deployment(), RevisionObservation(2, 2, True)),
        # Status not caught up with a new generation: only updated pods count.
        (deployment(generation=2, observed=1, updated=0), RevisionObservation(2, 0, True)),
        (deployment(generation=2, observed=1, updated=1), RevisionObservation(2, 1, True)),
        # Scaled down to zero.
        (deployment(replicas=0, available=0, updated=0), RevisionObservation(0, 0, True)),
        # Not Available.
        (
            deployment(available=1, conditions=[{"type": "Available", "status": "False"}]),
            RevisionObservation(2, 1, False),
        ),
        # Deadline exceeded, with its time.
        (
            deployment(available=0, conditions=[DEADLINE]),
            RevisionObservation(2, 0, False, True, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ),
        # A deadline condition with an unreadable time is still a deadline.
        (
            deployment(available=0, conditions=[{**DEADLINE, "lastTransitionTime": "soon"}]),
            RevisionObservation(2, 0, False, True, None),
        ),
        # Progressing=False for another reason is not a deadline.
        (
            deployment(conditions=[{**DEADLINE, "reason": "ReplicaSetCreateError"}]),
            RevisionObservation(2, 2, False),
        ),
        # A brand-new Deployment without status.
        ({"metadata": {"generation": 1}, "spec": {"replicas": 3}}, RevisionObservation(3, 0)),
    ],
)
def test_observation(obj: dict[str, Any], expected: RevisionObservation) -> None:
    assert observation(obj) == expected


def test_paths() -> None:
    assert (
        collection_path("apps/v1", "Deployment", "ml") == "/apis/apps/v1/namespaces/ml/deployments"
    )
    assert object_path("v1", "ConfigMap", "ml", "x") == "/api/v1/namespaces/ml/configmaps/x"
    assert md_path("ml", "fraud", subresource="status") == (
        "/apis/serinus.dev/v1alpha1/namespaces/ml/modeldeployments/fraud/status"
    )
    assert (
        object_path("v1", "Secret", "ml", "s") == "/api/v1/namespaces/ml/secrets/s"
    )  # read, not cached
    with pytest.raises(ValueError, match="no API path"):
        collection_path("v1", "Node", "ml")
    assert {k.kind for k in cached_kinds()}.isdisjoint({"Secret", "Pod"}), "never watched"


def test_applied_hash_changes_with_content_only() -> None:
    a = {"kind": "Service", "spec": {"ports": [1], "selector": {"a": "b", "c": "d"}}}
    b = {"spec": {"selector": {"c": "d", "a": "b"}, "ports": [1]}, "kind": "Service"}
    assert applied_hash(a) == applied_hash(b)
    assert applied_hash(a) != applied_hash({**a, "spec": {"ports": [2]}})


# --- why a revision's pods are not ready (pod_problem) -------------------------------------


def _pod(name: str, status: dict[str, Any], *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status}


FETCH_FAILED = {
    "name": "fetch",
    "restartCount": 2,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
    "lastState": {"terminated": {"exitCode": 1, "message": "cannot fetch the model: x"}},
}


@pytest.mark.parametrize(
    ("pods", "problem"),
    [
        ([], None),
        ([_pod("a", {})], None),  # just created: nothing says anything yet
        (
            [_pod("a", {"initContainerStatuses": [FETCH_FAILED]})],
            "init container fetch: cannot fetch the model: x (restarts: 2)",
        ),
        (  # the init container's reason comes before the server's wait
            [_pod("a", {
                "initContainerStatuses": [FETCH_FAILED],
                "containerStatuses": [
                    {"name": "server", "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
            })],
            "init container fetch: cannot fetch the model: x (restarts: 2)",
        ),
        (
            [_pod("a", {"containerStatuses": [{"name": "server", "restartCount": 0, "state": {
                "waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}}]})],
            "container server: ImagePullBackOff: pull access denied",
        ),
        (
            [_pod("a", {"containerStatuses": [{"name": "server", "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})],
            "container server: exited with 137 (OOMKilled) (restarts: 5)",
        ),
        (
            [_pod("a", {"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes: Insufficient cpu"}]})],
            "unschedulable: 0/3 nodes: Insufficient cpu",
        ),
        (  # a pod on its way out says nothing about the revision
            [_pod("a", {"initContainerStatuses": [FETCH_FAILED]}, deleting=True)],
            None,
        ),
        (  # running, waiting for readiness: nothing wrong that the pod can say
            [_pod("a", {"containerStatuses": [{"name": "server", "state": {"running": {}}}]})],
            None,
        ),
    ],
)  # fmt: skip
def test_pod_problem(pods: list[dict[str, Any]], problem: str | None) -> None:
    assert pod_problem(pods) == problem


def test_a_pods_words_are_one_bounded_line() -> None:
    tail = "Traceback (most recent call last):\n" + "  line\n" * 500 + "ModelLoadError: boom"
    status = {**FETCH_FAILED, "restartCount": 0, "lastState": {"terminated": {"message": tail}}}
    problem = pod_problem([_pod("a", {"initContainerStatuses": [status]})])
    assert problem is not None and "\n" not in problem
    assert len(problem) <= PROBLEM_CHARS + len("init container fetch: ")

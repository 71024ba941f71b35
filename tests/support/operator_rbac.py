"""What the operator may do in the Kubernetes API: the one list the chart's RBAC (and the
kustomize install's) is checked against. Keep it in step with the calls the operator makes
(``platforms/kubernetes.py``) and the ones kopf makes on its behalf (CRD and namespace
discovery, posting events, patching the watched objects, peering)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

#: (API group, resource, verbs) the operator needs in every namespace it watches.
NAMESPACED: Final[tuple[tuple[str, str, frozenset[str]], ...]] = (
    ("serinus.dev", "modeldeployments", frozenset({"get", "list", "watch", "patch"})),
    ("serinus.dev", "modeldeployments/status", frozenset({"get", "patch"})),
    ("apps", "deployments", frozenset({"get", "list", "watch", "create", "patch", "delete"})),
    ("", "services", frozenset({"get", "list", "watch", "create", "patch", "delete"})),
    ("", "configmaps", frozenset({"get", "list", "watch", "create", "patch", "delete"})),
    ("", "serviceaccounts", frozenset({"get", "list", "watch", "create", "patch", "delete"})),
    (
        "rbac.authorization.k8s.io",
        "roles",
        frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ),
    ("", "events", frozenset({"create", "patch"})),
    ("events.k8s.io", "events", frozenset({"create", "patch"})),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ),
)

#: Cluster-scoped reads kopf makes in every mode: it scans CRDs, and (watching listed
#: namespaces) lists and watches namespaces to notice them appear and go.
DISCOVERY: Final[tuple[tuple[str, str, frozenset[str]], ...]] = (
    ("apiextensions.k8s.io", "customresourcedefinitions", frozenset({"list", "watch"})),
    ("", "namespaces", frozenset({"list", "watch"})),
)

#: With more than one replica, kopf's peering: ``clusterkopfpeerings`` when the operator
#: watches every namespace, ``kopfpeerings`` in each watched namespace otherwise.
PEERING_VERBS: Final = frozenset({"get", "list", "watch", "patch"})

#: The scope of a grant that covers every namespace (and cluster-scoped resources).
CLUSTER: Final = "*"

Permission = tuple[str, str, str, str]  # (scope, group, resource, verb)


def _expand(scope: str, rules: Iterable[tuple[str, str, frozenset[str]]]) -> set[Permission]:
    return {(scope, group, resource, verb) for group, resource, verbs in rules for verb in verbs}


def expected(watch_namespaces: Sequence[str], *, peering: bool) -> set[Permission]:
    """Every permission the operator needs, and no other, for one install mode."""
    out = _expand(CLUSTER, DISCOVERY)
    if not watch_namespaces:
        out |= _expand(CLUSTER, NAMESPACED)
        if peering:
            out |= _expand(CLUSTER, [("kopf.dev", "clusterkopfpeerings", PEERING_VERBS)])
        return out
    for namespace in watch_namespaces:
        out |= _expand(namespace, NAMESPACED)
        if peering:
            out |= _expand(namespace, [("kopf.dev", "kopfpeerings", PEERING_VERBS)])
    return out

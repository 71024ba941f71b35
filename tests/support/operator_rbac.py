"""What the operator may do in the Kubernetes API: the one list the chart's RBAC is checked
against. It is read from ``manifests/install/rbac.yaml``, which
tests/integration/operator/test_rbac.py compares with the calls a real operator run makes
(so neither list is kept by hand). Peering (kopf's, only with more than one replica) is
added here, as the kustomize install runs one standalone replica."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import yaml

_INSTALL_RBAC = Path(__file__).resolve().parents[2] / "manifests" / "install" / "rbac.yaml"


def _recorded() -> tuple[tuple[str, str, frozenset[str]], ...]:
    out = []
    for doc in yaml.safe_load_all(_INSTALL_RBAC.read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out.append((group, resource, frozenset(rule["verbs"])))
    return tuple(out)


#: (API group, resource, verbs) the operator needs in every namespace it watches.
NAMESPACED: Final = _recorded()

#: Cluster-scoped reads: none. The operator does not watch CRDs (the CRD is installed
#: first), and kopf reads namespaces only for glob patterns, which per-namespace Roles
#: cannot express.
DISCOVERY: Final[tuple[tuple[str, str, frozenset[str]], ...]] = ()

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

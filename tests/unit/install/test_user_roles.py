"""The ClusterRoles for the people of a namespace (aggregated into view, edit and admin), in
the chart and in ``manifests/install/user-roles.yaml``: the same rules, the aggregation
labels Kubernetes' built-in roles select, and nothing about status. That the aggregation
takes effect is tested on a real API server (tests/integration/operator/test_user_roles.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from unit.install import kit

pytestmark = pytest.mark.unit

USER_ROLES = kit.ROOT / "manifests" / "install" / "user-roles.yaml"
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated(objects: list[dict[str, Any]]) -> dict[str, tuple[set[str], list[Any]]]:
    """name -> (the built-in roles it aggregates into, its rules)."""
    out = {}
    for obj in kit.of_kind(objects, "ClusterRole"):
        labels = obj["metadata"].get("labels") or {}
        into = {k.removeprefix(AGGREGATE) for k, v in labels.items() if k.startswith(AGGREGATE)}
        if into:
            assert {labels[f"{AGGREGATE}{r}"] for r in into} == {"true"}
            out[obj["metadata"]["name"]] = (into, obj["rules"])
    return out


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(USER_ROLES.read_text()) if d]


def test_view_reads_and_edit_changes_and_promotes() -> None:
    roles = aggregated(manifests())
    assert set(roles) == {"serinus-view", "serinus-edit"}
    view_into, view_rules = roles["serinus-view"]
    edit_into, edit_rules = roles["serinus-edit"]
    assert view_into == {"view"}  # the built-in view aggregates into edit and admin itself
    assert edit_into == {"edit", "admin"}
    assert view_rules == [
        {
            "apiGroups": ["serinus.dev"],
            "resources": ["modeldeployments"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    [edit] = edit_rules
    assert edit["resources"] == ["modeldeployments"]  # never modeldeployments/status
    assert {"get", "list", "watch", "patch", "update"} <= set(edit["verbs"])


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["ml"], "replicas": 2}])
def test_the_chart_renders_the_same_roles(values: dict[str, Any]) -> None:
    chart = aggregated(kit.render(values))
    assert chart == aggregated(manifests())  # release "serinus": serinus-view, serinus-edit
    renamed = aggregated(kit.render({**values, "fullnameOverride": "rollouts"}))
    assert set(renamed) == {"rollouts-view", "rollouts-edit"}


def test_the_chart_can_leave_them_out() -> None:
    assert aggregated(kit.render({"rbac": {"aggregateToDefaultRoles": False}})) == {}
    assert aggregated(kit.render({"rbac": {"create": False}})) == {}

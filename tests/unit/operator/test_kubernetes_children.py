"""The pure parts of how the Kubernetes platform owns its children: the role Services it
builds, what counts as a change of a child, what it reports as put back, and how it takes
over the fields an operator before server-side apply wrote. Their behaviour against a real
API server is in tests/integration/operator/test_children.py."""

from __future__ import annotations

from typing import Any

import pytest

from serinus_operator import resources as r
from serinus_operator.platforms.kubernetes import (
    FIELD_MANAGER,
    NotOwned,
    Restored,
    changed_paths,
    content,
    upgraded_managed_fields,
)
from serinus_operator.platforms.kubernetes import _check_owner as check_owner
from unit.traffic import kit

pytestmark = pytest.mark.unit

UID = "6f1b6d2e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


# --- role Services ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [r.STABLE_ROLE, r.CANDIDATE_ROLE])
def test_a_role_service_selects_one_revision_like_its_revision_service(role: str) -> None:
    service = r.role_service("fraud", "ml", role, "7f3c2a1b0d", port=r.REVISION_PORT, owner_uid=UID)
    kit.validate_any(service)
    revision = r.revision_service("fraud", "ml", "7f3c2a1b0d", port=r.REVISION_PORT)
    assert service["metadata"]["name"] == f"fraud-{role}" == r.role_service_name("fraud", role)
    assert service["spec"] == revision["spec"]  # same selector, port and target port
    assert service["metadata"]["labels"][r.ROLE_LABEL] == role
    assert r.REVISION_LABEL not in service["metadata"]["labels"]  # the Service's, not pods'
    assert service["metadata"]["ownerReferences"][0]["uid"] == UID


def test_role_service_names_fit_the_longest_model_name() -> None:
    longest = "m" * 52  # the CRD's limit: <name>-<revision> is a DNS label
    assert len(r.role_service_name(longest, r.CANDIDATE_ROLE)) <= 63
    with pytest.raises(ValueError, match="role"):
        r.role_service_name("fraud", "previous")


# --- what counts as a change -----------------------------------------------------------------


def stored(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "resourceVersion": "10",
            "generation": 1,
            "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply"}],
            "labels": {"a": "b"},
        },
        "spec": {"selector": {"serinus.dev/model": "fraud"}, "ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }
    for key, value in changes.items():
        obj[key] = value
    return obj


def test_writes_and_status_are_not_changes_of_content() -> None:
    a = stored()
    b = stored(status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    b["metadata"] = {**a["metadata"], "resourceVersion": "11", "managedFields": [], "generation": 2}
    assert content(a) == content(b)
    assert changed_paths(content(a), content(b)) == []


def test_changed_paths_name_what_was_edited() -> None:
    a = stored()
    b = stored(spec={"selector": {"serinus.dev/model": "other"}, "ports": [{"port": 80}]})
    b["metadata"] = {**a["metadata"], "labels": {"a": "c"}}
    assert changed_paths(content(a), content(b)) == [
        "metadata.labels.a",
        "spec.selector.serinus.dev/model",
    ]
    assert changed_paths(content(a), content(b), depth=2) == ["metadata.labels", "spec.selector"]
    routes = {"data": {"routes.json": "{}"}}
    assert changed_paths(routes, {"data": {"routes.json": "[]"}}) == ["data.routes.json"]
    assert changed_paths({"x": [1]}, {"x": [2]}) == ["x"]  # lists as a whole
    assert changed_paths(1, 2) == ["the object"]


def test_restorations_say_what_happened() -> None:
    assert (
        Restored("Service", "fraud", deleted=True).describe()
        == "Service fraud was deleted: created it again"
    )
    edited = Restored("Service", "fraud", deleted=False, fields=("spec.selector",))
    assert edited.describe() == "Service fraud was changed (spec.selector): put it back"
    many = Restored("ConfigMap", "x", deleted=False, fields=tuple("abcdef"))
    assert many.describe() == "ConfigMap x was changed (a, b, c, d, ...): put it back"


# --- owners ----------------------------------------------------------------------------------


def owned(uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "fraud-candidate", "namespace": "ml"}
    if uid is not None:
        meta["ownerReferences"] = [{"uid": uid, "controller": True, "kind": "ModelDeployment"}]
    return {"kind": "Service", "metadata": meta}


def test_a_child_of_another_owner_is_never_taken_over() -> None:
    check_owner(owned(UID), owned(UID))
    check_owner(owned(None), owned(UID))  # an orphan is adopted, as Deployments adopt
    check_owner(owned("other"), owned(None))  # nothing to compare with
    with pytest.raises(NotOwned, match="another owner"):
        check_owner(owned("other"), owned(UID))


# --- fields from before server-side apply ----------------------------------------------------


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


ANNOTATIONS = {"f:metadata": {"f:annotations": {".": {}, "f:serinus.dev/candidate": {}}}}
DATA = {"f:data": {".": {}, "f:routes.json": {}}}


def test_nothing_to_take_over() -> None:
    assert upgraded_managed_fields([]) is None
    assert upgraded_managed_fields([entry(FIELD_MANAGER, "Apply", DATA)]) is None
    assert upgraded_managed_fields([entry("kubectl-edit", "Update", DATA)]) is None
    status = entry(FIELD_MANAGER, "Update", {"f:status": {}}, subresource="status")
    assert upgraded_managed_fields([status]) is None


def test_the_operators_updates_become_its_apply() -> None:
    other = entry("kubectl-edit", "Update", {"f:metadata": {"f:labels": {"f:x": {}}}})
    legacy = entry(FIELD_MANAGER, "Update", {**ANNOTATIONS, **DATA})
    upgraded = upgraded_managed_fields([legacy, other])
    assert upgraded == [other, {**legacy, "operation": "Apply"}]


def test_updates_merge_into_an_existing_apply() -> None:
    applied = entry(FIELD_MANAGER, "Apply", DATA)
    legacy = entry(FIELD_MANAGER, "Update", {**ANNOTATIONS, "f:data": {"f:old": {}}})
    upgraded = upgraded_managed_fields([applied, legacy])
    assert upgraded == [
        {
            **applied,
            "fieldsV1": {
                "f:data": {".": {}, "f:routes.json": {}, "f:old": {}},
                **ANNOTATIONS,
            },
        }
    ]

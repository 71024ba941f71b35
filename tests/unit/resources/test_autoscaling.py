"""The HPA of ``spec.autoscaling`` and the revisions' PodDisruptionBudgets: valid objects
(``kubernetes-validate --strict``), aimed at the ModelDeployment, and refused specs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from serinus_operator import api
from serinus_operator.resources.autoscaling import autoscaler, revision_disruption_budget
from unit.operator.kit import manifest, spec_dict
from unit.traffic.kit import K8S_VERSION

pytestmark = pytest.mark.unit

UID = "0d6c2f3a-9a1e-4c1b-8f00-5e0b6a7d8c9e"


def parsed(autoscaling: dict[str, Any]) -> api.ModelDeploymentSpec:
    return api.parse(manifest(spec_dict("v1", autoscaling=autoscaling))).spec


def test_the_hpa_scales_the_model_deployment_on_cpu_and_inflight_requests() -> None:
    spec = parsed(
        {
            "minReplicas": 2,
            "maxReplicas": 8,
            "targetCPUUtilization": 70,
            "targetInflightRequests": 4,
        }
    )
    assert spec.autoscaling is not None
    hpa = autoscaler("fraud", "ml", spec.autoscaling, owner_uid=UID)
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    cpu, inflight = hpa["spec"]["metrics"]
    assert cpu["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert inflight["pods"]["metric"] == {"name": "serinus_inflight_requests"}
    assert inflight["pods"]["target"] == {"type": "AverageValue", "averageValue": "4"}
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == UID


def test_one_target_is_enough() -> None:
    spec = parsed({"maxReplicas": 3, "targetCPUUtilization": 80})
    assert spec.autoscaling is not None
    assert spec.autoscaling.min_replicas == 1
    hpa = autoscaler("fraud", "ml", spec.autoscaling)
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert "ownerReferences" not in hpa["metadata"]


@pytest.mark.parametrize(
    ("autoscaling", "field", "hint"),
    [
        ({"maxReplicas": 3}, "spec.autoscaling", "targetCPUUtilization"),
        ({"minReplicas": 5, "maxReplicas": 3, "targetCPUUtilization": 50}, "minReplicas", "swap"),
        ({"targetCPUUtilization": 50}, "spec.autoscaling.maxReplicas", "the most pods"),
        ({"maxReplicas": 0, "targetCPUUtilization": 50}, "maxReplicas", "1"),
        ({"maxReplicas": 3, "targetCpu": 50}, "targetCpu", "known fields"),
    ],
)
def test_a_bad_autoscaling_spec_names_the_field(
    autoscaling: dict[str, Any], field: str, hint: str
) -> None:
    with pytest.raises(api.SpecError) as err:
        parsed(autoscaling)
    assert field in err.value.field
    assert hint in err.value.message


def test_each_revision_has_a_disruption_budget_of_one_pod() -> None:
    pdb = revision_disruption_budget("fraud", "ml", "7f3c", owner_uid=UID)
    kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    assert pdb["metadata"]["name"] == "fraud-7f3c"
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"serinus.dev/model": "fraud", "serinus.dev/revision": "7f3c"}},
    }

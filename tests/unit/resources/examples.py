"""Example ModelDeployments and every object the operator would create for each of them.

Each example is the full set of children for one situation - what ``platforms/kubernetes``
applies - built only with the pure builders, from a parsed ModelDeployment and the
``RevisionRef``s the rollout status would hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serinus_operator import api
from serinus_operator import resources as r
from serinus_operator.rollout.status import RevisionRef

ROOT = Path(__file__).resolve().parents[3]
MANIFEST_EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
UID = "6f1b6d2e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
#: Golden files must not change when the package version (the default image tag) does.
CONFIG = r.BuildConfig(
    serving_image="ghcr.io/serinus-dev/serinus-serving:0.1.0",
    router_image="ghcr.io/serinus-dev/serinus-serving:0.1.0",
)
SHA_V6 = "0" * 63 + "6"
SHA_V7 = "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"


def model_deployment(
    spec: Mapping[str, Any], *, name: str = "fraud", namespace: str = "ml"
) -> api.ModelDeployment:
    return api.parse(
        {
            "apiVersion": "serinus.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": dict(spec),
        }
    )


def ref_of(model: Mapping[str, Any], serving: Mapping[str, Any] | None = None) -> RevisionRef:
    """The RevisionRef the status would hold for this model and serving section."""
    m, s = api.parse_model(model), api.parse_serving(serving or {})
    return RevisionRef(revision=api.revision_of(m, s), version=m.version, model=m, serving=s)


def current_ref(md: api.ModelDeployment) -> RevisionRef:
    spec = md.spec
    return RevisionRef(spec.revision, spec.model.version, spec.model, spec.serving)


def revision_pair(
    md: api.ModelDeployment, ref: RevisionRef, *, replicas: int, config: r.BuildConfig = CONFIG
) -> list[dict[str, Any]]:
    return [
        r.revision_deployment(md, ref, replicas=replicas, config=config, owner_uid=UID),
        r.revision_service(
            md.name, md.namespace, ref.revision, port=r.REVISION_PORT, owner_uid=UID
        ),
    ]


# --- the examples ----------------------------------------------------------------------------

V6 = {"uri": "https://models.example.com/fraud/v6/model.onnx", "version": "v6", "sha256": SHA_V6}
V7 = {"uri": "https://models.example.com/fraud/v7/model.onnx", "version": "v7", "sha256": SHA_V7}
CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}


def canary() -> list[dict[str, Any]]:
    """Router provider, a canary at 10%: two revisions, the router, its table."""
    md = model_deployment({"model": V7, "replicas": 2, "strategy": CANARY})
    stable, candidate = ref_of(V6), current_ref(md)
    table = r.routing_table(
        md.name,
        md.namespace,
        weights={stable.revision: 90, candidate.revision: 10},
        port=r.REVISION_PORT,
        versions={stable.revision: "v6", candidate.revision: "v7"},
    )
    return [
        *revision_pair(md, stable, replicas=2),
        *revision_pair(md, candidate, replicas=2),
        r.routing_configmap(md.name, md.namespace, table=table, owner_uid=UID),
        *r.router_objects(md.name, md.namespace, config=CONFIG, owner_uid=UID),
        r.router_disruption_budget(md.name, md.namespace, owner_uid=UID),
        r.public_service(md.name, md.namespace, owner_uid=UID),
    ]


def gateway_api() -> list[dict[str, Any]]:
    """GatewayAPI provider, shadowing the candidate: no router, an HTTPRoute instead."""
    md = model_deployment(
        {
            "model": V7,
            "replicas": 3,
            "strategy": {"type": "Shadow", "shadow": {"mirrorPercent": 25}},
            "traffic": {
                "provider": "GatewayAPI",
                "gatewayRef": {"name": "public", "namespace": "gateways"},
                "hostnames": ["fraud.example.com"],
            },
            "progressDeadline": "15m",
        }
    )
    stable, candidate = ref_of(V6), current_ref(md)
    gateway = md.spec.traffic.gateway_ref
    assert gateway is not None
    return [
        *revision_pair(md, stable, replicas=3),
        *revision_pair(md, candidate, replicas=3),
        r.http_route(
            md.name,
            md.namespace,
            gateway=gateway,
            weights={stable.revision: 100, candidate.revision: 0},
            port=r.REVISION_PORT,
            mirror=candidate.revision,
            mirror_percent=25,
            hostnames=md.spec.traffic.hostnames,
            owner_uid=UID,
        ),
    ]


SERVING_OPTIONS_CONFIG = r.BuildConfig(
    serving_image=CONFIG.serving_image,
    router_image=CONFIG.router_image,
    run_as_user=2000,
    run_as_group=3000,
    image_pull_policy="IfNotPresent",
    image_pull_secrets=("registry-creds",),
    listen_host="::",
    model_volume_limit="8Gi",
)


def serving_options() -> list[dict[str, Any]]:
    """Every serving field set: image, resources, env, batching, profile, sha256; and the
    operator settings that are not defaults."""
    md = model_deployment(
        {
            "model": {**V7, "profile": "https://models.example.com/fraud/v7/profile.json"},
            "replicas": 4,
            "serving": {
                "image": "registry.example.com/ml/serinus-serving:0.1.0-cuda",
                "resources": {
                    "requests": {"cpu": "2", "memory": "2Gi"},
                    "limits": {"cpu": 4, "memory": "4Gi"},
                },
                "batching": {"maxBatchSize": 64, "maxLatencyMs": 0.5},
                "env": [
                    {"name": "OMP_NUM_THREADS", "value": "4"},
                    {"name": "HOME", "value": "/models"},
                    {"name": "ARENA", "value": ""},
                ],
            },
            "strategy": {"type": "BlueGreen"},
            "traffic": {"provider": "Service"},
            "progressDeadline": "30m",
        },
        name="fraud-scoring",
        namespace="risk",
    )
    ref = current_ref(md)
    return [
        *revision_pair(md, ref, replicas=4, config=SERVING_OPTIONS_CONFIG),
        r.public_service(md.name, md.namespace, revision=ref.revision, owner_uid=UID),
    ]


@dataclass(frozen=True)
class Example:
    name: str
    build: Callable[[], list[dict[str, Any]]]

    @property
    def golden(self) -> Path:
        return Path(__file__).parent / "golden" / f"{self.name}.yaml"


EXAMPLES = (
    Example("canary", canary),
    Example("gateway-api", gateway_api),
    Example("serving-options", serving_options),
)


def from_manifest(path: Path) -> list[dict[str, Any]]:
    """The revision and traffic objects for one of ``manifests/examples`` (first deploy)."""
    md = api.parse(yaml.safe_load(path.read_text()))
    ref = current_ref(md)
    out = revision_pair(md, ref, replicas=md.spec.replicas)
    provider = md.spec.traffic.provider
    if provider == api.TrafficProvider.ROUTER:
        out += r.router_objects(md.name, md.namespace, config=CONFIG, owner_uid=UID)
        out.append(r.public_service(md.name, md.namespace, owner_uid=UID))
    elif provider == api.TrafficProvider.SERVICE:
        out.append(r.public_service(md.name, md.namespace, revision=ref.revision, owner_uid=UID))
    return out


# --- rendering ---------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the routing table) as literal blocks, so golden diffs read well."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100)

"""The Helm chart: renders offline for its defaults and a matrix of other values, every object
passes strict validation, bad values fail at install, RBAC is exactly what the operator needs,
and the operator's pod is hardened."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import helm_python as helm
import pytest
import yaml

from support import operator_rbac
from unit.install import kit

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32

#: Non-default values, each a way people install the chart.
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["ml", "fraud-team"]},
    "ha": {"replicas": 3},
    "ha-namespaced": {"replicas": 2, "watchNamespaces": ["ml"], "peering": {"name": "ml-ops"}},
    "observability": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
        "modelMonitor": {"enabled": True, "interval": "10s", "scrapeTimeout": "5s"},
        "dashboards": {
            "enabled": True,
            "namespace": "grafana",
            "annotations": {"grafana_folder": "Serinus"},
        },
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kps"},
            "runbookBaseUrl": "https://wiki.example.com/serinus/runbooks",
        },
    },
    "podmonitor-namespaced": {
        "watchNamespaces": ["ml"],
        "metrics": {"podMonitor": {"enabled": True}, "service": {"enabled": False}},
        "modelMonitor": {"enabled": True},
    },
    "prometheus-auth": {
        "prometheus": {
            "url": "https://prometheus.monitoring.svc:9091",
            "bearerTokenSecret": {"name": "prometheus-reader", "key": "token"},
            "caConfigMap": {"name": "prometheus-ca", "key": "service-ca.crt"},
        }
    },
    "images": {
        "image": {"repository": "registry.example.com/serinus/operator", "digest": DIGEST},
        "servingImage": {"repository": "registry.example.com/serinus/serving", "tag": "1.2.3"},
        "routerImage": {"repository": "registry.example.com/serinus/router", "tag": "1.2.4"},
        "imagePullSecrets": ["registry-creds"],
    },
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "pool", "operator": "In", "values": ["system"]}
                            ]
                        }
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "serinus"}},
            }
        ],
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "platform"},
        "podAnnotations": {"example.com/owner": "platform"},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1}},
    },
    "existing-account": {
        "serviceAccount": {"create": False, "name": "serinus-operator"},
        "rbac": {"create": False},
        "fullnameOverride": "ml-rollouts",
        "logLevel": "debug",
        "logFormat": "text",
        "extraArgs": ["--resync-seconds=10"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "metrics": {"port": 9102, "service": {"type": "NodePort", "annotations": {"a": "b"}}},
    },
}


@pytest.fixture(scope="module", params=sorted(MATRIX))
def rendered(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = MATRIX[request.param]
    return values, kit.render(values)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = kit.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


# --- rendering and validation ----------------------------------------------------------------


def test_every_rendered_object_passes_strict_validation(
    rendered: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    assert objects
    for obj in objects:
        kit.validate(obj)


def test_object_names_are_unique_per_kind_and_namespace(
    rendered: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))


def test_namespaced_objects_say_where_they_go(
    rendered: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """`kubectl apply -f` of a rendered chart lands everything where Helm would."""
    _, objects = rendered
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in objects:
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped), obj


def test_the_chart_lints_clean() -> None:
    report = helm.lint(str(kit.CHART))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_crds_are_valid_and_include_the_modeldeployment() -> None:
    crds = kit.crds()
    for crd in crds:
        kit.validate(crd)
    names = {c["metadata"]["name"] for c in crds}
    assert names == {
        "modeldeployments.serinus.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_peering_crds_match_what_kopf_looks_up() -> None:
    """kopf finds its peering resources by group, version and plural."""
    by_plural = {c["spec"]["names"]["plural"]: c for c in kit.crds()}
    for plural, scope in (("clusterkopfpeerings", "Cluster"), ("kopfpeerings", "Namespaced")):
        spec = by_plural[plural]["spec"]
        assert spec["group"] == "kopf.dev"
        assert spec["scope"] == scope
        assert [v["name"] for v in spec["versions"]] == ["v1"]
        # heartbeats are written to the main resource: no status subresource
        assert "subresources" not in spec["versions"][0]


# --- the operator's Deployment ---------------------------------------------------------------


def test_pod_is_hardened(rendered: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pod = kit.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(objects)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_probes_and_resources(rendered: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, objects = rendered
    c = container(objects)
    port = values.get("metrics", {}).get("port", 8000)
    assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"] or c["resources"]["limits"]["cpu"]
    assert f"--metrics-port={port}" in c["args"]


def test_args_follow_the_values(rendered: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, objects = rendered
    args = container(objects)["args"]
    assert args[0] == "operator"
    namespaces = values.get("watchNamespaces", [])
    if namespaces:
        assert [a for a in args if a.startswith("--namespace")] == [
            f"--namespace={ns}" for ns in namespaces
        ]
        assert "--all-namespaces" not in args
    else:
        assert "--all-namespaces" in args
    if values.get("replicas", 1) > 1:
        name = values.get("peering", {}).get("name", "serinus")
        assert f"--peering={name}" in args and "--standalone" not in args
    else:
        assert "--standalone" in args and not any(a.startswith("--peering") for a in args)
    assert f"--log-level={values.get('logLevel', 'info')}" in args
    assert f"--log-format={values.get('logFormat', 'json')}" in args
    for extra in values.get("extraArgs", []):
        assert extra in args


def test_a_standalone_operator_never_overlaps_itself() -> None:
    assert kit.one(kit.render(), "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    ha = kit.one(kit.render({"replicas": 2}), "Deployment")["spec"]
    assert ha["replicas"] == 2
    assert ha["strategy"]["type"] == "RollingUpdate"


def test_kopf_identifies_each_peer_by_its_pod() -> None:
    env = container(kit.render({"replicas": 2}))["env"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env


def test_peering_objects_exist_when_peering() -> None:
    assert kit.of_kind(kit.render(), "ClusterKopfPeering") == []
    cluster = kit.one(kit.render({"replicas": 2}), "ClusterKopfPeering")
    assert cluster["metadata"]["name"] == "serinus"
    namespaced = kit.of_kind(
        kit.render({"replicas": 2, "watchNamespaces": ["a", "b"]}), "KopfPeering"
    )
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in namespaced} == {
        ("a", "serinus"),
        ("b", "serinus"),
    }


def test_images_default_to_the_app_version() -> None:
    chart = kit.load_yaml(kit.CHART / "Chart.yaml")
    c = container(kit.render())
    version = chart["appVersion"]
    assert c["image"] == f"ghcr.io/serinus-dev/serinus-operator:{version}"
    assert f"--serving-image=ghcr.io/serinus-dev/serinus-serving:{version}" in c["args"]
    assert f"--router-image=ghcr.io/serinus-dev/serinus-serving:{version}" in c["args"]


def test_app_version_is_the_python_distributions() -> None:
    pyproject = (kit.ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "(.+)"$', pyproject, re.M)
    assert version is not None
    assert kit.load_yaml(kit.CHART / "Chart.yaml")["appVersion"] == version.group(1)


def test_digests_pin_images() -> None:
    c = container(kit.render(MATRIX["images"]))
    assert c["image"] == f"registry.example.com/serinus/operator@{DIGEST}"
    assert "--serving-image=registry.example.com/serinus/serving:1.2.3" in c["args"]
    assert "--router-image=registry.example.com/serinus/router:1.2.4" in c["args"]


def test_prometheus_credentials_are_mounted_files() -> None:
    objects = kit.render(MATRIX["prometheus-auth"])
    c = container(objects)
    pod = kit.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "--prometheus-url=https://prometheus.monitoring.svc:9091" in c["args"]
    token = "/var/run/secrets/serinus/prometheus-token/token"
    ca = "/etc/serinus/prometheus-ca/service-ca.crt"
    assert f"--prometheus-token-file={token}" in c["args"]
    assert f"--prometheus-ca-file={ca}" in c["args"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert token.startswith(mounts["prometheus-token"]["mountPath"])
    assert volumes["prometheus-token"]["secret"]["secretName"] == "prometheus-reader"
    assert ca.startswith(mounts["prometheus-ca"]["mountPath"])
    assert volumes["prometheus-ca"]["configMap"]["name"] == "prometheus-ca"
    defaults = container(kit.render())["args"]
    assert not any(a.startswith("--prometheus") for a in defaults)


def test_notes_warn_without_a_prometheus() -> None:
    assert "prometheus.url" in kit.notes()
    assert "prometheus.url" not in kit.notes({"prometheus": {"url": "http://p:9090"}})


# --- RBAC ------------------------------------------------------------------------------------


def granted(objects: list[dict[str, Any]], account: tuple[str, str]) -> set[tuple[str, ...]]:
    """What the ServiceAccount ``(namespace, name)`` may do, from the rendered RBAC."""
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["rules"]
        for o in objects
        if o["kind"] in ("ClusterRole", "Role")
    }
    out: set[tuple[str, ...]] = set()
    for binding in objects:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]}
        assert subjects == {("ServiceAccount", *account)}, binding
        ref = binding["roleRef"]
        scope_ns = binding["metadata"].get("namespace")
        role_ns = scope_ns if ref["kind"] == "Role" else None
        rules = roles[(ref["kind"], role_ns, ref["name"])]
        scope = operator_rbac.CLUSTER if binding["kind"] == "ClusterRoleBinding" else scope_ns
        for rule in rules:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
            for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
                assert value != "*", f"wildcard in {rule}"
            out |= {
                (scope, g, r, v)
                for g in rule["apiGroups"]
                for r in rule["resources"]
                for v in rule["verbs"]
            }
    return out


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"replicas": 2},
        {"watchNamespaces": ["ml"]},
        {"watchNamespaces": ["ml", "fraud-team"], "replicas": 3},
        {"fullnameOverride": "rollouts", "serviceAccount": {"name": "op"}},
    ],
    ids=["cluster", "cluster-ha", "one-namespace", "namespaces-ha", "renamed"],
)
def test_rbac_is_exactly_what_the_operator_needs(values: Mapping[str, Any]) -> None:
    objects = kit.render(values)
    account = kit.one(objects, "ServiceAccount")["metadata"]
    pod = kit.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    expected = operator_rbac.expected(
        values.get("watchNamespaces", []), peering=values.get("replicas", 1) > 1
    )
    assert granted(objects, (account["namespace"], account["name"])) == expected


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    objects = kit.render(MATRIX["existing-account"])
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"}
    pod = kit.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "serinus-operator"


# --- monitoring ------------------------------------------------------------------------------


def test_operator_monitors_keep_its_namespace_label() -> None:
    """The operator's metrics name the ModelDeployment's namespace; without honorLabels
    Prometheus would rename it to exported_namespace and the dashboards would miss it."""
    sm = kit.one(kit.render(MATRIX["observability"]), "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert [e["honorLabels"] for e in sm["spec"]["endpoints"]] == [True]
    service = kit.one(kit.render(MATRIX["observability"]), "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()
    pods = kit.of_kind(kit.render(MATRIX["podmonitor-namespaced"]), "PodMonitor")
    operator_pm = next(p for p in pods if p["metadata"]["name"] == "serinus")
    assert [e["honorLabels"] for e in operator_pm["spec"]["podMetricsEndpoints"]] == [True]


def test_model_monitor_selects_serving_and_router_pods() -> None:
    from serinus_operator.resources import meta

    objects = kit.render(MATRIX["observability"])
    pm = next(
        p for p in kit.of_kind(objects, "PodMonitor") if p["metadata"]["name"].endswith("-models")
    )
    selector = pm["spec"]["selector"]
    for component in (meta.COMPONENT_SERVER, meta.COMPONENT_ROUTER):
        labels = meta.labels("fraud", component=component, revision="abc")
        assert selector["matchLabels"].items() <= labels.items()
        [expr] = selector["matchExpressions"]
        assert labels[expr["key"]] in expr["values"]
    assert [e["port"] for e in pm["spec"]["podMetricsEndpoints"]] == [meta.HTTP_PORT_NAME]
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    scoped = kit.render(MATRIX["podmonitor-namespaced"])
    pm = next(
        p for p in kit.of_kind(scoped, "PodMonitor") if p["metadata"]["name"].endswith("-models")
    )
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def test_dashboards_configmap_carries_every_dashboard() -> None:
    cm = kit.one(kit.render(MATRIX["observability"]), "ConfigMap")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Serinus"}
    sources = sorted((kit.CHART / "dashboards").glob("*.json"))
    assert sorted(cm["data"]) == [f"serinus-{p.name}" for p in sources]
    for path in sources:
        assert json.loads(cm["data"][f"serinus-{path.name}"]) == json.loads(path.read_text())


def test_prometheus_rules_carry_every_alert_file() -> None:
    rules = kit.of_kind(kit.render(MATRIX["observability"]), "PrometheusRule")
    sources = sorted((kit.CHART / "alerts").glob("*.yaml"))
    assert len(rules) == len(sources)
    base = MATRIX["observability"]["prometheusRule"]["runbookBaseUrl"]
    for rule, path in zip(sorted(rules, key=lambda r: r["metadata"]["name"]), sources, strict=True):
        assert rule["metadata"]["name"] == f"serinus-{path.stem}"
        assert rule["metadata"]["labels"]["release"] == "kps"
        source = yaml.safe_load(path.read_text())
        groups = source["spec"]["groups"] if "spec" in source else source["groups"]
        assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in groups]
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                url = r.get("annotations", {}).get("runbook_url")
                if url is not None:
                    assert re.match(re.escape(base) + r"/[a-z-]+\.md#[a-z0-9-]+$", url), url


def test_optional_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in kit.render()}
    assert kinds == {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
    }


# --- values.schema.json ----------------------------------------------------------------------

BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown key": {"replica": 2},
    "unknown nested key": {"metrics": {"serviceMonitor": {"enable": True}}},
    "zero replicas": {"replicas": 0},
    "replicas as text": {"replicas": "2"},
    "log level": {"logLevel": "verbose"},
    "log format": {"logFormat": "xml"},
    "namespace name": {"watchNamespaces": ["ML_Team"]},
    "duplicate namespaces": {"watchNamespaces": ["ml", "ml"]},
    "prometheus url": {"prometheus": {"url": "prometheus:9090"}},
    "digest": {"image": {"digest": "latest"}},
    "tag": {"image": {"tag": "has space"}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "privileged port": {"metrics": {"port": 80}},
    "two operator monitors": {
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}
    },
    "service monitor without service": {
        "metrics": {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}
    },
    "scrape interval": {"modelMonitor": {"interval": "often"}},
    "privileged": {"securityContext": {"privileged": True}},
    "escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "root": {"podSecurityContext": {"runAsNonRoot": False}},
    "extra arg": {"extraArgs": ["-v"]},
    "runbook url": {"prometheusRule": {"runbookBaseUrl": "docs/observability.md"}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_bad_values_fail_at_install(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        kit.render(values)


def test_values_yaml_passes_its_own_schema() -> None:
    import jsonschema

    schema = json.loads((kit.CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(kit.load_yaml(kit.CHART / "values.yaml"), schema)
    for values in MATRIX.values():
        merged = _merge(kit.load_yaml(kit.CHART / "values.yaml"), values)
        jsonschema.validate(merged, schema)


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {
            k: _merge(base.get(k), override[k]) if k in override else base[k]
            for k in base.keys() | override.keys()
        }
    return override


# --- the README ------------------------------------------------------------------------------


def leaves(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every value; free-form maps and lists count as one value."""
    out: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += leaves(value, path + ".")
        else:
            out.append(path)
    return out


FREE_FORM = ("resources.", "podSecurityContext.", "securityContext.")


def test_readme_lists_every_value() -> None:
    readme = (kit.CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    values = kit.load_yaml(kit.CHART / "values.yaml")
    expected = {p for p in leaves(values) if not p.startswith(FREE_FORM)}
    expected |= {p.rstrip(".") for p in FREE_FORM}
    assert expected - documented == set(), "values missing from charts/serinus/README.md"
    assert documented - expected == set(), "README documents values that do not exist"

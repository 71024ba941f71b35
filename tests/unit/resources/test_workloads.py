"""The workload builders (revision Deployments, the router and its RBAC): every output through
``kubernetes-validate --strict`` (Kubernetes 1.37, the helper of ``tests/unit/traffic``), and
the invariants that make the objects work together, checked on every example, on
``manifests/examples`` and on generated names:

- a Deployment's selector matches its own pod labels, and only its own pods;
- a Service's ``targetPort`` name is a container port of every pod it selects;
- every container is hardened, every volume mount has a volume and every volume is mounted;
- names and label values fit Kubernetes' limits for any valid ModelDeployment name;
- the container arguments parse with the real ``serinus`` CLI;
- the router's Role allows exactly the API requests the router's ConfigMap source makes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator import __version__, api
from serinus_operator import resources as r
from serinus_operator.cli import build_parser
from serinus_operator.resources import deployments, pods, router
from serinus_operator.rollout.status import RevisionRef
from serinus_serving.router.kube_source import ConfigMapSource, KubeConfig, parse_target
from unit.resources import examples as ex
from unit.traffic import kit

pytestmark = pytest.mark.unit

UID = ex.UID
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SETS: list[tuple[str, list[dict[str, Any]]]] = [(e.name, e.build()) for e in ex.EXAMPLES] + [
    (f"manifests/{p.name}", ex.from_manifest(p)) for p in ex.MANIFEST_EXAMPLES
]
IDS = [name for name, _ in SETS]
ALL = [(f"{name}/{o['kind']}/{o['metadata']['name']}", o) for name, objs in SETS for o in objs]


def deployments_in(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] == "Deployment")


def selects(selector: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
    return selector.items() <= pod_labels.items()


# --- validity --------------------------------------------------------------------------------


@pytest.mark.parametrize(("what", "obj"), ALL, ids=[what for what, _ in ALL])
def test_every_object_is_valid(what: str, obj: dict[str, Any]) -> None:
    kit.validate_any(obj)


def test_manifest_examples_are_covered() -> None:
    assert ex.MANIFEST_EXAMPLES, "no manifests/examples/*.yaml found"


def test_strict_validation_catches_a_misspelt_pod_field() -> None:
    """kubernetes-validate really looks inside the pod template."""
    [dep, *_] = ex.serving_options()
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kit.k8s_validate(dep)


# --- invariants over every example -----------------------------------------------------------


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_owned_and_namespaced(name: str, objects: list[dict[str, Any]]) -> None:
    namespace = objects[0]["metadata"]["namespace"]
    md_name = objects[0]["metadata"]["labels"]["serinus.dev/model"]
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == namespace, meta["name"]
        assert meta["ownerReferences"] == [r.owner_reference(md_name, UID)], meta["name"]
        assert meta["labels"]["serinus.dev/model"] == md_name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "serinus"


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_selectors_match_own_pods_only(name: str, objects: list[dict[str, Any]]) -> None:
    deps = list(deployments_in(objects))
    for dep in deps:
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selects(selector, dep["spec"]["template"]["metadata"]["labels"])
        for other in deps:
            if other is not dep:
                assert not selects(selector, other["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_services_target_named_container_ports(name: str, objects: list[dict[str, Any]]) -> None:
    deps = list(deployments_in(objects))
    for svc in (o for o in objects if o["kind"] == "Service"):
        chosen = [
            d
            for d in deps
            if selects(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(chosen) == 1, f"{svc['metadata']['name']} selects {len(chosen)} Deployments"
        [dep] = chosen
        for port in svc["spec"]["ports"]:
            for c in dep["spec"]["template"]["spec"]["containers"]:
                names = {p["name"] for p in c["ports"]}
                assert port["targetPort"] in names, (svc["metadata"]["name"], c["name"])


def _effective(pod: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    return container["securityContext"].get(key, pod["securityContext"].get(key))


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_every_container_is_hardened(name: str, objects: list[dict[str, Any]]) -> None:
    for dep in deployments_in(objects):
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        assert pod["enableServiceLinks"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert _effective(pod, c, "runAsNonRoot") is True
            assert _effective(pod, c, "seccompProfile") == {"type": "RuntimeDefault"}
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"].get("privileged", False) is False


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_volumes_and_mounts_match(name: str, objects: list[dict[str, Any]]) -> None:
    for dep in deployments_in(objects):
        pod = dep["spec"]["template"]["spec"]
        volumes = [v["name"] for v in pod["volumes"]]
        assert len(volumes) == len(set(volumes))
        mounted: set[str] = set()
        for c in pod["containers"]:
            paths = [m["mountPath"] for m in c["volumeMounts"]]
            assert len(paths) == len(set(paths))
            assert "/tmp" in paths  # the only writable place besides the model
            for mount in c["volumeMounts"]:
                assert mount["name"] in volumes
                mounted.add(mount["name"])
        assert mounted == set(volumes)
        assert all("emptyDir" in v for v in pod["volumes"])


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_service_account_tokens(name: str, objects: list[dict[str, Any]]) -> None:
    """Only the router talks to the API, and only with its own ServiceAccount."""
    for dep in deployments_in(objects):
        pod = dep["spec"]["template"]["spec"]
        if dep["metadata"]["labels"]["app.kubernetes.io/component"] == "router":
            assert pod["automountServiceAccountToken"] is True
            assert pod["serviceAccountName"] == dep["metadata"]["name"]
        else:
            assert pod["automountServiceAccountToken"] is False
            assert "serviceAccountName" not in pod


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_probes_and_grace(name: str, objects: list[dict[str, Any]]) -> None:
    for dep in deployments_in(objects):
        pod = dep["spec"]["template"]["spec"]
        [c] = pod["containers"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[kind]["httpGet"]["port"] == "http"
        assert c["livenessProbe"]["httpGet"]["path"] != c["readinessProbe"]["httpGet"]["path"]
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pod["terminationGracePeriodSeconds"] > 0
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(c["ports"][0]["containerPort"])


# --- the revision Deployment -----------------------------------------------------------------


def _server(dep: Mapping[str, Any]) -> dict[str, Any]:
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def test_revision_deployment_shape() -> None:
    md = ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY, "progressDeadline": "90s"})
    ref = ex.current_ref(md)
    dep = r.revision_deployment(md, ref, replicas=3, config=ex.CONFIG, owner_uid=UID)
    assert dep["metadata"]["name"] == f"fraud-{ref.revision}"
    assert dep["metadata"]["annotations"] == {"serinus.dev/version": "v7"}
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"] == r.revision_selector("fraud", ref.revision)
    assert dep["spec"]["template"]["metadata"]["labels"] == r.labels(
        "fraud", component="server", revision=ref.revision
    )
    assert dep["spec"]["progressDeadlineSeconds"] == 90
    assert dep["spec"]["revisionHistoryLimit"] <= 3
    c = _server(dep)
    assert c["image"] == ex.CONFIG.serving_image
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "resources" not in c  # nothing in the spec, nothing invented
    assert c["env"] == [{"name": "HOME", "value": "/tmp"}]
    assert {"name": "model", "mountPath": "/models"} in c["volumeMounts"]
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


def test_serving_spec_reaches_the_container() -> None:
    [dep, *_] = ex.serving_options()
    c = _server(dep)
    assert c["image"] == "registry.example.com/ml/serinus-serving:0.1.0-cuda"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {
        "requests": {"cpu": "2", "memory": "2Gi"},
        "limits": {"cpu": "4", "memory": "4Gi"},
    }
    # sorted by name; the spec's HOME wins over the built-in one
    assert c["env"] == [
        {"name": "ARENA", "value": ""},
        {"name": "HOME", "value": "/models"},
        {"name": "OMP_NUM_THREADS", "value": "4"},
    ]
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["securityContext"]["runAsUser"] == 2000
    assert pod["securityContext"]["fsGroup"] == 3000
    assert {"name": "model", "emptyDir": {"sizeLimit": "8Gi"}} in pod["volumes"]
    assert dep["spec"]["progressDeadlineSeconds"] == 1800


def test_a_model_in_a_store_gets_its_credentials_by_reference_and_its_claim_mounted() -> None:
    """Credentials reach the server as a Secret reference (never values); a named
    ServiceAccount gets its token (workload identity); a pvc:// model's claim is mounted
    read-only where the server looks for it."""
    model = {
        "uri": "pvc://models-pvc/fraud/v7/model.onnx",
        "version": "v7",
        "profile": "s3://profiles/fraud/v7.json",
        "credentials": {"secretRef": {"name": "fraud-store"}},
    }
    serving = {"serviceAccountName": "fraud-reader"}
    md = ex.model_deployment({"model": model, "serving": serving, "strategy": ex.CANARY})
    ref = ex.current_ref(md)
    dep = r.revision_deployment(md, ref, replicas=1, config=ex.CONFIG, owner_uid=UID)
    kit.k8s_validate(dep)
    c, pod = _server(dep), dep["spec"]["template"]["spec"]
    assert c["envFrom"] == [{"secretRef": {"name": "fraud-store"}}]
    assert pod["serviceAccountName"] == "fraud-reader"
    assert pod["automountServiceAccountToken"] is True
    [claim] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "models-pvc", "readOnly": True}
    [mount] = [m for m in c["volumeMounts"] if m["name"] == claim["name"]]
    assert mount == {"name": claim["name"], "mountPath": "/mnt/models/models-pvc", "readOnly": True}
    assert c["args"][c["args"].index("--model") + 1] == model["uri"]
    # Without any of it: no Secret, no token, only the emptyDir and /tmp.
    plain = r.revision_deployment(
        ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY}),
        ex.ref_of(ex.V7), replicas=1, config=ex.CONFIG,
    )  # fmt: skip
    assert "envFrom" not in _server(plain)
    assert plain["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert all("emptyDir" in v for v in plain["spec"]["template"]["spec"]["volumes"])


def test_credentials_and_service_account_are_part_of_the_revision() -> None:
    """Pods with other credentials or another identity are other pods: a new revision.
    Without them, the revision of an existing spec is what it was."""
    base = ex.ref_of(ex.V7)
    secret = ex.ref_of({**ex.V7, "credentials": {"secretRef": {"name": "s"}}})
    account = ex.ref_of(ex.V7, {"serviceAccountName": "sa"})
    assert len({base.revision, secret.revision, account.revision}) == 3
    assert base.revision == ex.ref_of(dict(ex.V7)).revision


def test_env_order_does_not_change_the_pod_template() -> None:
    """The revision hash ignores env order; so must the pods, or a reordering would restart
    them without a rollout."""
    env = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    a = ex.ref_of(ex.V7, {"env": env})
    b = ex.ref_of(ex.V7, {"env": env[::-1]})
    assert a.revision == b.revision
    md = ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY})
    build = [r.revision_deployment(md, ref, replicas=1, config=ex.CONFIG) for ref in (a, b)]
    assert build[0] == build[1]


def test_the_template_depends_on_the_revision_not_the_spec() -> None:
    """A stable revision's Deployment is rebuilt from its RevisionRef even when the spec now
    names another model: only the name and the progress deadline come from the spec."""
    stable = ex.ref_of(ex.V6)
    md7 = ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY})
    md6 = ex.model_deployment({"model": ex.V6, "strategy": ex.CANARY})
    built = [r.revision_deployment(m, stable, replicas=2, config=ex.CONFIG) for m in (md7, md6)]
    assert built[0] == built[1]
    assert "--sha256" in _server(built[0])["args"]
    assert ex.SHA_V6 in _server(built[0])["args"]


@pytest.mark.parametrize(
    ("deadline", "failures"),
    [(timedelta(seconds=1), 24), (timedelta(minutes=2), 24), (timedelta(minutes=10), 120)],
)
def test_startup_probe_waits_as_long_as_the_rollout(deadline: timedelta, failures: int) -> None:
    probe = deployments.server_probes(deadline)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= max(
        deadline.total_seconds(), deployments.MIN_STARTUP_SECONDS
    )
    assert probe["failureThreshold"] == failures


def test_grace_period_outlasts_the_drain() -> None:
    [dep, *_] = ex.canary()
    args = build_parser().parse_args(_server(dep)["args"])
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > args.drain_seconds + args.shutdown_timeout


def _parser_knows(flag: str) -> bool:
    _, unknown = build_parser().parse_known_args(
        ["serve", "--model", "m", "--name", "n", flag, "v"]
    )
    return flag not in unknown


@pytest.mark.parametrize(("name", "objects"), SETS, ids=IDS)
def test_serve_arguments_parse_with_the_real_cli(name: str, objects: list[dict[str, Any]]) -> None:
    for dep in deployments_in(objects):
        c = _server(dep)
        if c["name"] != "server":
            continue
        assert c["command"] == ["serinus"]
        argv = list(c["args"])
        if "--profile" in argv and not _parser_knows("--profile"):  # checked on its own below
            at = argv.index("--profile")
            del argv[at : at + 2]
        args = build_parser().parse_args(argv)
        labels = dep["metadata"]["labels"]
        assert args.command == "serve"
        assert args.name == labels["serinus.dev/model"]
        assert args.revision == labels["serinus.dev/revision"]
        assert args.version == dep["metadata"]["annotations"]["serinus.dev/version"]
        assert args.port == c["ports"][0]["containerPort"]
        assert str(args.model_dir) in {m["mountPath"] for m in c["volumeMounts"]}
        assert args.model.startswith(("https://", "http://", "file://", "/"))


def test_profile_flag_parses() -> None:
    if not _parser_knows("--profile"):
        pytest.skip("serinus serve has no --profile flag yet")
    [dep, *_] = ex.serving_options()
    args = build_parser().parse_args(_server(dep)["args"])
    assert args.profile == "https://models.example.com/fraud/v7/profile.json"


def test_serve_arguments_carry_the_model() -> None:
    md = ex.model_deployment(
        {
            "model": {**ex.V7, "profile": "https://models.example.com/p.json"},
            "serving": {"batching": {"maxBatchSize": 16, "maxLatencyMs": 1.5}},
            "strategy": ex.CANARY,
        }
    )
    args = deployments.serve_args("fraud", ex.current_ref(md), config=ex.CONFIG)

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert value("--model") == ex.V7["uri"]
    assert value("--sha256") == ex.SHA_V7
    assert value("--profile") == "https://models.example.com/p.json"
    assert value("--max-batch-size") == "16"
    assert value("--max-batch-latency-ms") == "1.5"
    assert value("--host") == "0.0.0.0"
    no_extras = deployments.serve_args(
        "fraud", ex.ref_of(ex.V7 | {"sha256": None}), config=ex.CONFIG
    )
    assert "--sha256" not in no_extras
    assert "--profile" not in no_extras


@pytest.mark.parametrize(
    ("uri", "fetched"),
    [
        ("https://models.example.com/fraud.onnx", True),
        ("s3://models/fraud/v7/", True),
        ("models:/fraud/3", True),
        ("oci://ghcr.io/acme/fraud@sha256:" + "a" * 64, True),
        ("/models/fraud.onnx", False),
        ("file:///models/fraud.onnx", False),
        ("pvc://models/fraud.onnx", False),
    ],
)
def test_a_model_from_a_store_is_fetched_by_an_init_container_that_the_cli_knows(
    uri: str, fetched: bool
) -> None:
    """What is read in place (a path, a claim) needs no init container; the init container's
    and the server's arguments parse with the real CLI and name the same model and place."""
    md = ex.model_deployment({"model": {**ex.V7, "uri": uri}, "strategy": ex.CANARY})
    dep = r.revision_deployment(md, ex.current_ref(md), replicas=1, config=ex.CONFIG)
    pod = dep["spec"]["template"]["spec"]
    server = build_parser().parse_args(pod["containers"][0]["args"])
    assert bool(server.prefetched) is fetched
    if not fetched:
        assert "initContainers" not in pod
        return
    [init] = pod["initContainers"]
    fetch = build_parser().parse_args(init["args"])
    assert (fetch.command, fetch.model, fetch.sha256) == ("fetch", uri, ex.SHA_V7)
    assert fetch.model_dir == server.model_dir
    assert init["image"] == pod["containers"][0]["image"]


# --- the router --------------------------------------------------------------------------------


def test_router_deployment_shape() -> None:
    dep = r.router_deployment("fraud", "ml", config=ex.CONFIG, owner_uid=UID)
    assert dep["metadata"]["name"] == "fraud-router"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == r.router_selector("fraud")
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/live"
    args = build_parser().parse_args(c["args"])
    assert "lifecycle" not in c, "the router drains itself; no preStop sleep (Kubernetes 1.30+)"
    assert 0 < args.drain_seconds < pod["terminationGracePeriodSeconds"] - 30
    assert args.command == "router"
    assert args.port == c["ports"][0]["containerPort"]
    assert args.routes.startswith("configmap:")
    assert parse_target(args.routes.removeprefix("configmap:")) == ("ml", r.routes_name("fraud"))
    one = r.BuildConfig(router_replicas=1, router_image="example.com/router:1")
    single = r.router_deployment("fraud", "ml", config=one)
    assert single["spec"]["replicas"] == 1
    assert _server(single)["image"] == "example.com/router:1"


def test_routers_share_the_prediction_log_the_operator_names() -> None:
    """Every replica of every ModelDeployment's router gets the one Redis, keyed per
    namespace; without one they keep the router's default (each its own memory)."""
    shared = r.BuildConfig(router_prediction_log="redis://redis.serinus:6379/0")
    dep = r.router_deployment("fraud", "ml", config=shared)
    args = build_parser().parse_args(_server(dep)["args"])
    assert (args.prediction_log, args.prediction_log_prefix) == (
        "redis://redis.serinus:6379/0",
        "serinus:ml:",
    )
    alone = build_parser().parse_args(
        _server(r.router_deployment("fraud", "ml", config=ex.CONFIG))["args"]
    )
    assert alone.prediction_log == "off", "two replicas' own logs would join half the labels"


def test_public_service_selects_the_router_pods() -> None:
    svc = r.public_service("fraud", "ml")
    dep = r.router_deployment("fraud", "ml", config=ex.CONFIG)
    assert selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    revision = r.revision_deployment(
        ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY}),
        ex.ref_of(ex.V7),
        replicas=1,
        config=ex.CONFIG,
    )
    assert not selects(svc["spec"]["selector"], revision["spec"]["template"]["metadata"]["labels"])


def test_router_rbac_objects() -> None:
    sa, role, binding, dep = r.router_objects("fraud", "ml", config=ex.CONFIG, owner_uid=UID)
    assert [o["kind"] for o in (sa, role, binding, dep)] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
    ]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["fraud-routes"],
            "verbs": ["get", "watch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ml"}
    ]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_router_disruption_budget() -> None:
    pdb = r.router_disruption_budget("fraud", "ml", owner_uid=UID)
    kit.k8s_validate(pdb)
    dep = r.router_deployment("fraud", "ml", config=ex.CONFIG)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(
        pdb["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"]
    )


# The router's Role against the router's real requests: a small RBAC authorizer (namespaced
# Role, core group) and the real ConfigMapSource talking to an in-process fake API.


def _attributes(request: httpx.Request) -> tuple[str, str, str, str | None]:
    """(namespace, resource, verb, name) as the API server's request-info resolver derives
    them: a list or watch is named only by a ``metadata.name=`` field selector."""
    parts = request.url.path.strip("/").split("/")
    assert parts[:3] == ["api", "v1", "namespaces"], request.url
    namespace, resource, rest = parts[3], parts[4], parts[5:]
    assert request.method == "GET", request
    if rest:
        return namespace, resource, "get", rest[0]
    query = parse_qs(request.url.query.decode())
    verb = "watch" if query.get("watch") == ["true"] else "list"
    selector = query.get("fieldSelector", [""])[0]
    name = (
        selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") else None
    )
    if name is not None and ("," in name or "=" in name):
        name = None
    return namespace, resource, verb, name


def authorized(role: Mapping[str, Any], request: httpx.Request) -> bool:
    namespace, resource, verb, name = _attributes(request)
    if namespace != role["metadata"]["namespace"]:
        return False
    for rule in role["rules"]:
        if "" not in rule["apiGroups"] or resource not in rule["resources"]:
            continue
        if verb not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if not names or (name is not None and name in names):
            return True
    return False


def _configmap(name: str) -> dict[str, Any]:
    table = r.routing_table("fraud", "ml", weights={"7f3c0a1b2c": 100}, port=8080)
    cm = r.routing_configmap("fraud", "ml", table=table)
    cm["metadata"]["resourceVersion"] = "7"
    assert cm["metadata"]["name"] == name
    return cm


def test_authorizer_is_not_permissive() -> None:
    role = r.router_role("fraud", "ml")
    base = "https://k8s/api/v1/namespaces"
    allowed = [
        f"{base}/ml/configmaps/fraud-routes",
        f"{base}/ml/configmaps?watch=true&fieldSelector=metadata.name%3Dfraud-routes",
    ]
    denied = [
        f"{base}/ml/configmaps/other",
        f"{base}/other/configmaps/fraud-routes",
        f"{base}/ml/configmaps",  # list, even of one name: not granted
        f"{base}/ml/configmaps?fieldSelector=metadata.name%3Dfraud-routes",
        f"{base}/ml/configmaps?watch=true",
        f"{base}/ml/configmaps?watch=true&fieldSelector=metadata.name%3Dother",
        f"{base}/ml/secrets/fraud-routes",
    ]
    for url in allowed:
        assert authorized(role, httpx.Request("GET", url)), url
    for url in denied:
        assert not authorized(role, httpx.Request("GET", url)), url


def test_router_role_allows_what_the_router_does() -> None:
    """Every request the router's ConfigMap source makes - the GET, the watch, the re-read
    when polling - is allowed by its Role; nothing more is granted than those verbs."""
    role = r.router_role("fraud", "ml")
    seen: list[httpx.Request] = []

    def api_server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not authorized(role, request):
            return httpx.Response(403, json={"kind": "Status", "code": 403})
        cm = _configmap("fraud-routes")
        if "watch" in request.url.params:
            event = json.dumps({"type": "MODIFIED", "object": cm})
            return httpx.Response(200, content=(event + "\n").encode())
        return httpx.Response(200, json=cm)

    tables: list[Any] = []
    rejected: list[str] = []

    async def run() -> None:
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(api_server), base_url="https://k8s"
        )
        source = ConfigMapSource(
            "ml",
            r.routes_name("fraud"),
            tables.append,
            rejected=rejected.append,
            config=KubeConfig(base_url="https://k8s", token_file=None, ca_file=None),
            client=client,
        )
        rv = await source.read()
        assert rv == "7"
        await source.watch(rv)
        await client.aclose()

    asyncio.run(run())
    assert rejected == []
    assert len(tables) == 1  # the GET applied it; the watch's identical copy is a no-op
    verbs = {_attributes(req)[2] for req in seen}
    assert verbs == set(router.ROUTER_VERBS)
    assert all(authorized(role, req) for req in seen)


# --- names for any valid ModelDeployment -------------------------------------------------------

md_names = st.from_regex(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?", fullmatch=True)
revisions = st.text("0123456789abcdef", min_size=api.REVISION_LENGTH, max_size=api.REVISION_LENGTH)


def _every_child(name: str, revision: str) -> list[dict[str, Any]]:
    md = ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY}, name=name)
    base = ex.current_ref(md)
    ref = RevisionRef(revision, base.version, base.model, base.serving)
    table = r.routing_table(name, "ml", weights={revision: 100}, port=r.REVISION_PORT)
    return [
        *ex.revision_pair(md, ref, replicas=1),
        *r.router_objects(name, "ml", config=ex.CONFIG, owner_uid=UID),
        r.router_disruption_budget(name, "ml", owner_uid=UID),
        r.public_service(name, "ml", owner_uid=UID),
        r.routing_configmap(name, "ml", table=table, owner_uid=UID),
        r.http_route(
            name,
            "ml",
            gateway=api.GatewayRef("gw"),
            weights={revision: 100},
            port=r.REVISION_PORT,
            owner_uid=UID,
        ),
    ]


def _label_maps(obj: Mapping[str, Any]) -> Iterator[Mapping[str, str]]:
    yield obj["metadata"]["labels"]
    spec = obj.get("spec", {})
    if "template" in spec:
        yield spec["template"]["metadata"]["labels"]
    if isinstance(spec.get("selector"), Mapping):
        yield spec["selector"].get("matchLabels", spec["selector"])


@settings(max_examples=200)
@given(name=md_names, revision=revisions)
def test_names_and_labels_fit_for_any_valid_name(name: str, revision: str) -> None:
    for obj in _every_child(name, revision):
        object_name = obj["metadata"]["name"]
        assert len(object_name) <= 63 and DNS_LABEL.match(object_name), object_name
        if obj["kind"] == "Service" and DNS_1035.match(name):
            assert DNS_1035.match(object_name), object_name
        for label_map in _label_maps(obj):
            for value in label_map.values():
                assert len(value) <= 63 and LABEL_VALUE.match(value), value
        assert [o["name"] for o in obj["metadata"]["ownerReferences"]] == [name]


@settings(max_examples=15)
@given(name=md_names, revision=revisions)
def test_generated_children_validate(name: str, revision: str) -> None:
    for obj in _every_child(name, revision):
        kit.validate_any(obj)


def test_model_deployment_names_start_with_a_letter() -> None:
    with pytest.raises(api.SpecError):
        ex.model_deployment({"model": ex.V7, "strategy": ex.CANARY}, name="1fraud")


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"router_replicas": -1},
        {"run_as_user": 0},
        {"run_as_group": 0},
        {"image_pull_policy": "Sometimes"},
        {"serving_image": ""},
    ],
)
def test_build_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        r.BuildConfig(**bad)


def test_default_image_follows_the_package_version() -> None:
    assert r.BuildConfig().serving_image.endswith(f":{__version__}")
    assert r.BuildConfig().router_image == r.BuildConfig().serving_image
    assert pods.CONTAINER_PORT == 8080

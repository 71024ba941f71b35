"""The serinus router of one ModelDeployment (Router provider): its Deployment, and the
ServiceAccount, Role and RoleBinding that let it read its routing table.

The public Service ``<name>`` (``services.public_service`` without a revision) selects the
router pods by ``router_selector`` and targets their ``http`` port; the router reads the
ConfigMap ``<name>-routes`` through the API (``serinus_serving.router.kube_source``): a
GET of the object, then a watch of the collection with ``fieldSelector=metadata.name=...``.
The Role grants exactly that: ``get`` and ``watch`` on that one ConfigMap. A watch is
authorized against ``resourceNames`` only because its field selector names the object.
"""

from __future__ import annotations

from typing import Any, Final

from serinus_operator.resources import pods
from serinus_operator.resources.config import BuildConfig
from serinus_operator.resources.meta import (
    COMPONENT_ROUTER,
    labels,
    object_meta,
    router_selector,
    routes_name,
)

ROUTER_CONTAINER: Final = "router"
#: The verbs the router's ConfigMap source uses (GET, and a watch by field selector).
ROUTER_VERBS: Final = ("get", "watch")
#: After SIGTERM the router reports unready but keeps serving this long, so that the endpoint
#: removal reaches every client before it stops accepting (``--drain-seconds``).
DRAIN_SECONDS: Final = 5
#: The drain, then in-flight requests (up to 30 s) and shadow copies (5 s), with a margin.
ROUTER_GRACE_SECONDS: Final = DRAIN_SECONDS + 30 + 5 + 10


def router_name(md_name: str) -> str:
    """``<name>-router``: the router's Deployment, ServiceAccount, Role and RoleBinding."""
    return f"{md_name}-router"


def _meta(md_name: str, namespace: str, owner_uid: str | None) -> dict[str, Any]:
    return object_meta(
        router_name(md_name),
        namespace,
        labels=labels(md_name, component=COMPONENT_ROUTER),
        owner=None if owner_uid is None else (md_name, owner_uid),
    )


def router_args(md_name: str, namespace: str, *, config: BuildConfig) -> list[str]:
    """``serinus router`` reading ``configmap:<namespace>/<name>-routes``; with a shared
    prediction log, keyed per namespace so one Redis serves every ModelDeployment, else none
    (the routers forward feedback to the revisions, as ``--prediction-log off``)."""
    log = config.router_prediction_log
    if log is None:  # one log per replica would join only some labels: forward them instead
        shared = ["--prediction-log", "off"]
    else:
        shared = ["--prediction-log", log, "--prediction-log-prefix", f"serinus:{namespace}:"]
    return [*_base_args(md_name, namespace, config=config), *shared]


def _base_args(md_name: str, namespace: str, *, config: BuildConfig) -> list[str]:
    return [
        "router",
        "--routes",
        f"configmap:{namespace}/{routes_name(md_name)}",
        "--host",
        config.listen_host,
        "--port",
        str(pods.CONTAINER_PORT),
        "--drain-seconds",
        str(DRAIN_SECONDS),
    ]


def router_probes() -> dict[str, dict[str, Any]]:
    """``/-/ready`` is 200 once a routing table is loaded (and until shutdown); ``/-/live``
    while the process serves HTTP."""
    return {
        "startupProbe": pods.http_probe("/-/live", period=2, failures=30),
        "readinessProbe": pods.http_probe("/-/ready", period=5, failures=2),
        "livenessProbe": pods.http_probe("/-/live", period=10, failures=3, timeout=5),
    }


def router_deployment(
    md_name: str, namespace: str, *, config: BuildConfig, owner_uid: str | None = None
) -> dict[str, Any]:
    """Deployment ``<name>-router``: ``config.router_replicas`` router pods, hardened like the
    serving pods, but with the service-account token mounted: the router reads its table
    through the Kubernetes API."""
    pod_labels = labels(md_name, component=COMPONENT_ROUTER)
    router = pods.container(
        ROUTER_CONTAINER,
        image=config.router_image,
        args=router_args(md_name, namespace, config=config),
        config=config,
        env=pods.env_list({"HOME": pods.TMP_PATH}),
        resources=config.router_resources,
        probes=router_probes(),
        mounts=[pods.tmp_mount()],
    )
    pod = pods.pod_spec(
        [router],
        config=config,
        volumes=[pods.tmp_volume()],
        grace_seconds=ROUTER_GRACE_SECONDS,
        automount_token=True,
        spread=router_selector(md_name),
        service_account=router_name(md_name),
    )
    return pods.deployment(
        _meta(md_name, namespace, owner_uid),
        replicas=config.router_replicas,
        selector=router_selector(md_name),
        pod_labels=pod_labels,
        pod_annotations=pods.scrape_annotations(),
        pod=pod,
    )


def router_service_account(
    md_name: str, namespace: str, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """ServiceAccount ``<name>-router``: an identity of the router's own, so its Role grants
    nothing to other pods of the namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(md_name, namespace, owner_uid),
    }


def router_role(md_name: str, namespace: str, *, owner_uid: str | None = None) -> dict[str, Any]:
    """Role ``<name>-router``: read and watch the one ConfigMap ``<name>-routes``."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(md_name, namespace, owner_uid),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [routes_name(md_name)],
                "verbs": list(ROUTER_VERBS),
            }
        ],
    }


def router_role_binding(
    md_name: str, namespace: str, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """RoleBinding ``<name>-router``: the Role to the router's ServiceAccount."""
    name = router_name(md_name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(md_name, namespace, owner_uid),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def router_disruption_budget(
    md_name: str, namespace: str, *, owner_uid: str | None = None
) -> dict[str, Any]:
    """PodDisruptionBudget ``<name>-router``: a node drain evicts one router pod at a time.

    ``maxUnavailable: 1`` rather than ``minAvailable: 1``: with one replica configured it
    still lets a drain proceed instead of blocking it forever.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(md_name, namespace, owner_uid),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": router_selector(md_name)}},
    }


def router_objects(
    md_name: str, namespace: str, *, config: BuildConfig, owner_uid: str | None = None
) -> list[dict[str, Any]]:
    """The router's objects in the order to apply them: its identity and permissions before
    the pods that use them. (The routing ConfigMap and the public Service are built by
    ``routing`` and ``services``; the Router provider's ``runtime`` adds the
    PodDisruptionBudget after these.)"""
    return [
        router_service_account(md_name, namespace, owner_uid=owner_uid),
        router_role(md_name, namespace, owner_uid=owner_uid),
        router_role_binding(md_name, namespace, owner_uid=owner_uid),
        router_deployment(md_name, namespace, config=config, owner_uid=owner_uid),
    ]

"""``kubectl apply -k manifests/``: what it installs is valid, current and consistent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serinus_operator import __version__
from serinus_operator.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
K8S_VERSION = "1.32"


def rendered() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:  # kustomize is built into kubectl
        pytest.skip("no kubectl on PATH to run kustomize")
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_crd_copy_is_the_crd() -> None:
    """crds/ is the one source; `make crds` copies it here."""
    assert (ROOT / "manifests/install/crd.yaml").read_text() == (
        ROOT / "crds/modeldeployment.yaml"
    ).read_text()


def test_kustomize_renders_valid_objects() -> None:
    objects = rendered()
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",  # the operator's
            "ClusterRole",  # serinus-view, aggregated into view
            "ClusterRole",  # serinus-edit, aggregated into edit and admin
            "ClusterRoleBinding",
            "ServiceAccount",
            "Deployment",
            "Service",
        ]
    )
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_operator_pod_is_hardened_and_its_args_parse() -> None:
    deployment = next(o for o in rendered() if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["image"].endswith(f":{__version__}")
    args = build_parser().parse_args(container["args"])
    assert args.command == "operator" and args.all_namespaces
    assert args.metrics_port == container["ports"][0]["containerPort"]
    assert pod["serviceAccountName"] == "serinus-operator"

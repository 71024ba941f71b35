"""What GitOps tools make of a ModelDeployment (docs/gitops.md): kstatus and recorded objects.

kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) is the status library behind ``flux ... --wait``,
Flux's health checks and ``kpt live status``. ``kstatus`` runs the real one, built from
its Go module by hack/kstatus/build.sh; ``kstatus_rules`` restates its rules for custom
resources from its documentation and source (status.Compute: deletion, generation,
Reconciling/Stalled, then a Ready condition), so that property tests can ask it thousands
of times, and the unit tests hold the two to the same answers.

Objects recorded from real rollouts on the real control plane live in
tests/unit/gitops/recorded/ (``SERINUS_RECORD=1`` rewrites them: see ``record``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "kstatus" / "build.sh"
RECORDED = ROOT / "tests" / "unit" / "gitops" / "recorded"

#: kstatus' statuses (status.Status).
IN_PROGRESS, FAILED, CURRENT, TERMINATING = "InProgress", "Failed", "Current", "Terminating"


class NoKstatus(RuntimeError):
    """The kstatus command cannot be built here (no Go toolchain)."""


@cache
def kstatus_binary() -> Path:
    """The kstatus command (built once, cached outside the repo); NoKstatus without Go."""
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=False)
    if done.returncode == 3:
        raise NoKstatus(
            "no Go toolchain, so no real kstatus: install Go >= 1.26 (https://go.dev/dl/, "
            "into /usr/local/go) and run `make kube-bins`"
        )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def kstatus(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the real kstatus computes: ``{"status", "message", "conditions"}``."""
    done = subprocess.run(
        [str(kstatus_binary())],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def kstatus_rules(obj: Mapping[str, Any]) -> tuple[str, str]:
    """kstatus' status.Compute for a kind it has no built-in rules for: (status, message)."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING, "Resource scheduled for deletion"
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind", "")
        return (
            IN_PROGRESS,
            f"{kind} generation is {generation}, but latest observed generation is {observed}",
        )
    conditions = status.get("conditions") or []
    for c in conditions:  # the first Reconciling or Stalled that is True decides
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return IN_PROGRESS, c.get("message", "")
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return FAILED, c.get("message", "")
    for c in conditions:  # no standard condition: a Ready condition, if there is one
        if c.get("type") != "Ready":
            continue
        if c.get("status") == "True":
            return CURRENT, "Resource is Ready"
        if c.get("status") in ("False", "Unknown"):
            return IN_PROGRESS, c.get("message", "")
    return CURRENT, "Resource is current"


# --- objects recorded from real rollouts -----------------------------------------------------


def recording() -> bool:
    """``SERINUS_RECORD=1``: the integration test rewrites tests/unit/gitops/recorded/."""
    return os.environ.get("SERINUS_RECORD") == "1"


def as_recorded(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the API server returned it, less ``managedFields`` (who wrote which
    field: noise for a status reader, and it names the test's random namespace)."""
    out = json.loads(json.dumps(obj))
    out.get("metadata", {}).pop("managedFields", None)
    return out


def record(name: str, obj: Mapping[str, Any]) -> Path:
    RECORDED.mkdir(parents=True, exist_ok=True)
    path = RECORDED / f"{name}.json"
    path.write_text(json.dumps(as_recorded(obj), indent=2, sort_keys=True) + "\n")
    return path


def recorded() -> dict[str, dict[str, Any]]:
    """name -> object, for every recorded file."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECORDED.glob("*.json"))}


#: Each recorded object: what kstatus and Argo CD's health check (manifests/argocd) must say.
EXPECTED: dict[str, tuple[str, str]] = {
    "stable": (CURRENT, "Healthy"),
    "progressing": (IN_PROGRESS, "Progressing"),
    "paused": (FAILED, "Suspended"),
    "promoted": (CURRENT, "Healthy"),
    "generation-not-observed": (IN_PROGRESS, "Progressing"),
    "rolled-back": (FAILED, "Degraded"),
    "initializing": (IN_PROGRESS, "Progressing"),
    "initializing-stuck": (FAILED, "Degraded"),
    "degraded": (FAILED, "Degraded"),
}

"""``kubectl serinus`` against the real API server: ``list``, ``status -w``, ``promote
--full``, and each failure as one line on stderr with a non-zero exit (no kubeconfig, an
API server that is not there, a bad token, a ServiceAccount that may only ``get``, a name
that does not exist, an action no operator acknowledges). Also ``kubectl get md``'s Mirror
column, computed by the API server from the CRD's printer columns.

The plugin runs as a person runs it: a subprocess with a kubeconfig. Unless a test starts
the operator, statuses are written through the status subresource as the operator would.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import MD, Cluster, md, wait_for
from support.real_kube import kubectl
from support.serve import free_port

pytestmark = pytest.mark.integration

SHADOW = {"type": "Shadow", "shadow": {"mirrorPercent": 20, "duration": "1h"}}
SHADOW_STATUS = {
    "phase": "Progressing",
    "message": "shadowing v2",
    "stable": {"revision": "1111111111", "version": "v1"},
    "candidate": {"revision": "2222222222", "version": "v2", "stage": "Shadow"},
    "traffic": {"stable": 100, "candidate": 0, "mirror": 20},
    "analysis": {"measurements": 4, "failures": 1, "inconclusive": 0, "result": "Pass"},
}
CANARY_STATUS = {
    "phase": "Paused",
    "message": "step 2/2: waiting for promote",
    "stable": {"revision": "3333333333", "version": "v6"},
    "candidate": {"revision": "4444444444", "version": "v7", "stage": "Canary", "step": 1},
    "traffic": {"stable": 70, "candidate": 30, "mirror": 0},
}


def env_without_cluster(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"KUBERNETES_SERVICE_HOST", "KUBECONFIG"}
    }
    return {**env, **extra}


def serinus(
    *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl serinus ARGS`` (the same entry point), with ``kubeconfig`` if given."""
    flags = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return subprocess.run(
        [sys.executable, "-m", "serinus_operator.cli", *args, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env or env_without_cluster(),
    )


def admin(cluster: Cluster) -> Path:
    path: Path = cluster.kube.cluster.kubeconfig
    return path


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failure: a non-zero exit and exactly one line, ``error: ...``, on stderr."""
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def put(cluster: Cluster, manifest: dict[str, Any], status: dict[str, Any]) -> None:
    cluster.apply(manifest)
    name = manifest["metadata"]["name"]
    cluster.kube.patch(*MD, cluster.namespace, name, {"status": status}, subresource="status")


def columns(table: str) -> list[dict[str, str]]:
    """A table as rows of {header: cell}, cut at the headers' positions."""
    header, *rows = table.rstrip("\n").splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]


# --- list and kubectl get --------------------------------------------------------------------


def test_list_shows_every_modeldeployment(cluster: Cluster) -> None:
    put(cluster, md("v2", name="fraud", strategy=SHADOW), SHADOW_STATUS)
    put(cluster, md("v7", name="churn"), CANARY_STATUS)

    done = serinus("list", "-n", cluster.namespace, kubeconfig=admin(cluster))
    assert done.returncode == 0 and not done.stderr, done
    rows = columns(done.stdout)
    assert list(rows[0]) == [
        "NAME", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "MIRROR", "ANALYSIS", "AGE"
    ]  # fmt: skip
    assert [r | {"AGE": "?"} for r in rows] == [
        {
            "NAME": "churn",
            "PHASE": "Paused",
            "STABLE": "v6",
            "CANDIDATE": "v7",
            "WEIGHT": "30%",
            "MIRROR": "0%",
            "ANALYSIS": "-",
            "AGE": "?",
        },
        {
            "NAME": "fraud",
            "PHASE": "Progressing",
            "STABLE": "v1",
            "CANDIDATE": "v2",
            "WEIGHT": "0%",
            "MIRROR": "20%",
            "ANALYSIS": "Pass (1/4 failed)",
            "AGE": "?",
        },
    ]
    assert all(r["AGE"].endswith("s") for r in rows), rows

    wide = serinus("list", "-n", cluster.namespace, "-o", "wide", kubeconfig=admin(cluster))
    assert [(r["STRATEGY"], r["STAGE"]) for r in columns(wide.stdout)] == [
        ("Canary", "Canary"),
        ("Shadow", "Shadow"),
    ], wide

    # as kubectl runs it: the kubectl-serinus plugin on PATH, KUBECONFIG from the environment
    plugin = kubectl(cluster.kube.cluster, "serinus", "list", "-n", cluster.namespace)
    assert plugin == done.stdout or [r["NAME"] for r in columns(plugin)] == ["churn", "fraud"]

    everywhere = serinus("list", "-A", kubeconfig=admin(cluster))
    assert everywhere.returncode == 0, everywhere
    mine = [r for r in columns(everywhere.stdout) if r["NAMESPACE"] == cluster.namespace]
    assert [r["NAME"] for r in mine] == ["churn", "fraud"], everywhere.stdout


def test_list_of_an_empty_namespace(cluster: Cluster) -> None:
    done = serinus("list", "-n", cluster.namespace, kubeconfig=admin(cluster))
    assert done.returncode == 0 and done.stdout == "", done
    assert done.stderr == f"No resources found in {cluster.namespace} namespace.\n"


def test_kubectl_get_md_shows_the_mirror_share(cluster: Cluster) -> None:
    """During a shadow the candidate's weight is 0; the Mirror column says what it gets."""
    put(cluster, md("v2", name="fraud", strategy=SHADOW), SHADOW_STATUS)
    (row,) = columns(kubectl(cluster.kube.cluster, "get", "md", "-n", cluster.namespace))
    assert list(row) == [
        "NAME", "STRATEGY", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "MIRROR", "AGE"
    ]  # fmt: skip
    assert (row["STRATEGY"], row["WEIGHT"], row["MIRROR"]) == ("Shadow", "0", "20")
    (wide,) = columns(
        kubectl(cluster.kube.cluster, "get", "md", "-n", cluster.namespace, "-o", "wide")
    )
    assert list(wide)[5:] == ["WEIGHT", "MIRROR", "STAGE", "MESSAGE", "AGE"], wide
    assert (wide["MIRROR"], wide["STAGE"], wide["MESSAGE"]) == ("20", "Shadow", "shadowing v2")


# --- status -w -------------------------------------------------------------------------------


class Watching:
    """``kubectl serinus status NAME -w`` running, its stdout read line by line."""

    def __init__(self, *args: str, kubeconfig: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serinus_operator.cli", *args, "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_without_cluster(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def renderings(self) -> list[str]:
        """What was printed so far, one text per rendering (blank-line separated)."""
        return [r for r in "\n".join(self.seen).split("\n\nName:") if r]

    def wait_for(self, text: str, *, count: int, timeout: float = 30) -> list[str]:
        """Read until ``count`` renderings were printed, the last one containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.renderings()
            if len(found) >= count and text in found[-1]:
                self._drain()  # a rendering is written at once: the rest of it
                return self.renderings()
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        self.stop()
        raise AssertionError(
            f"no rendering #{count} with {text!r}:\n{chr(10).join(self.seen)}\n"
            f"stderr: {self.process.stderr.read() if self.process.stderr else ''}"
        )

    def _drain(self) -> None:
        while True:
            try:
                line = self.lines.get(timeout=0.3)
            except queue.Empty:
                return
            if line is None:
                return
            self.seen.append(line)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a person stops it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        stderr = self.process.stderr.read() if self.process.stderr else ""
        return code, stderr


def test_status_watch_redraws_on_every_change(cluster: Cluster) -> None:
    put(cluster, md("v7", name="churn"), CANARY_STATUS)
    watching = Watching("status", "churn", "-w", "-n", cluster.namespace, kubeconfig=admin(cluster))
    try:
        first = watching.wait_for("Phase:      Paused", count=1)
        assert "candidate 30%" in first[0]
        time.sleep(1)  # nothing changed: nothing drawn again
        assert watching.lines.empty() and len(watching.renderings()) == 1, watching.seen

        moved = {
            **CANARY_STATUS,
            "phase": "Progressing",
            "traffic": {"stable": 40, "candidate": 60, "mirror": 0},
        }
        cluster.kube.patch(*MD, cluster.namespace, "churn", {"status": moved}, subresource="status")
        second = watching.wait_for("candidate 60%", count=2)
        assert "Phase:      Progressing" in second[-1]

        # A change that does not change the view (a label) draws nothing new; the next
        # change of the view does.
        cluster.kube.patch(*MD, cluster.namespace, "churn", {"metadata": {"labels": {"team": "a"}}})
        cluster.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "churn.test", "namespace": cluster.namespace},
                "involvedObject": {
                    "apiVersion": "serinus.dev/v1alpha1",
                    "kind": "ModelDeployment",
                    "name": "churn",
                    "namespace": cluster.namespace,
                },
                "reason": "WeightChanged",
                "message": "candidate at 60%",
                "type": "Normal",
                "lastTimestamp": "2026-01-01T00:00:00Z",
            },
            "events",
        )
        third = watching.wait_for("candidate at 60%", count=3)
        assert len(third) == 3, third
    finally:
        code, stderr = watching.stop()
    assert code == 0 and "Traceback" not in stderr and not stderr.strip(), stderr


# --- failures: one line, a non-zero exit ------------------------------------------------------


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_no_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config"
    for args in (("list",), ("status", "fraud"), ("status", "fraud", "-w"), ("promote", "fraud")):
        done = serinus(*args, env=env_without_cluster(KUBECONFIG=str(missing)))
        assert one_error_line(done) == (
            f"error: no kubeconfig: {missing} does not exist (set KUBECONFIG or pass --kubeconfig)"
        )
        assert done.returncode == 1
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [\n")
    line = one_error_line(serinus("list", env=env_without_cluster(KUBECONFIG=str(garbage))))
    assert line.startswith(f"error: invalid kubeconfig {garbage}: "), line


def test_an_api_server_that_is_not_there(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kube.kubeconfig(cluster.namespace)
    port = free_port()  # nothing listens on it
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = write_kubeconfig(tmp_path / "closed.yaml", config)
    for args in (("list",), ("status", "fraud"), ("status", "fraud", "-w"), ("abort", "fraud")):
        done = serinus(*args, kubeconfig=path)
        assert one_error_line(done) == (
            f"error: cannot reach the API server at https://127.0.0.1:{port}: connection refused"
        ), args
        assert done.returncode == 1


def test_a_token_the_api_server_does_not_accept(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kube.kubeconfig(cluster.namespace)
    config["users"][0]["user"]["token"] = "not-a-token"
    path = write_kubeconfig(tmp_path / "bad-token.yaml", config)
    line = one_error_line(serinus("list", kubeconfig=path))
    assert line.startswith(
        f"error: unauthorized: the API server at {cluster.kube.url} did not accept"
    ), line


def reader(cluster: Cluster, tmp_path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may only ``get`` ModelDeployments."""
    ns = cluster.namespace
    kube = cluster.kube
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "reader", "namespace": ns},
        }
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "md-getter", "namespace": ns},
            "rules": [
                {"apiGroups": ["serinus.dev"], "resources": ["modeldeployments"], "verbs": ["get"]}
            ],
        }
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "md-getter", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "md-getter",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        }
    )
    return write_kubeconfig(
        tmp_path / "reader.yaml", kube.kubeconfig(ns, service_account=(ns, "reader"))
    )


def test_forbidden_says_which_verb_on_which_resource(cluster: Cluster, tmp_path: Path) -> None:
    put(cluster, md("v7", name="churn"), CANARY_STATUS)
    ns = cluster.namespace
    path = reader(cluster, tmp_path)
    who = f"(as system:serviceaccount:{ns}:reader)"

    shown = wait_for(
        lambda: (d := serinus("status", "churn", kubeconfig=path)).returncode == 0 and d,
        what="RBAC to allow get",
    )
    assert "Phase:      Paused" in shown.stdout, shown  # get is enough for the view...
    assert f"Events:     not shown (forbidden: cannot list events in namespace {ns} {who})" in (
        shown.stdout
    )  # ...without the Events

    promoted = serinus("promote", "churn", "--full", kubeconfig=path)
    assert one_error_line(promoted) == (
        f"error: forbidden: cannot patch modeldeployments.serinus.dev in namespace {ns} {who}"
    )
    assert promoted.returncode == 1
    listed = serinus("list", kubeconfig=path)  # the kubeconfig's namespace is the default
    assert one_error_line(listed) == (
        f"error: forbidden: cannot list modeldeployments.serinus.dev in namespace {ns} {who}"
    )
    everywhere = serinus("list", "-A", kubeconfig=path)
    assert one_error_line(everywhere) == (
        f"error: forbidden: cannot list modeldeployments.serinus.dev in any namespace {who}"
    )
    watched = serinus("status", "churn", "-w", kubeconfig=path)
    assert one_error_line(watched) == (
        f"error: forbidden: cannot list modeldeployments.serinus.dev in namespace {ns} {who}"
    )


def test_a_modeldeployment_that_does_not_exist(cluster: Cluster) -> None:
    ns = cluster.namespace
    for args in (("status", "nope"), ("status", "nope", "-w"), ("promote", "nope", "--full")):
        done = serinus(*args, "-n", ns, kubeconfig=admin(cluster))
        assert one_error_line(done) == f"error: no ModelDeployment nope in namespace {ns}", args
        assert done.returncode == 1


def test_an_action_nobody_acknowledges(cluster: Cluster) -> None:
    """No operator runs: the request is written, and the wait ends with its own code."""
    put(cluster, md("v7", name="churn"), CANARY_STATUS)
    done = serinus(
        "promote", "churn", "--full", "--timeout", "1", "-n", cluster.namespace,
        kubeconfig=admin(cluster),
    )  # fmt: skip
    line = one_error_line(done)
    assert done.returncode == 4, done
    assert line.startswith(
        f"error: ModelDeployment churn in namespace {cluster.namespace} did not acknowledge "
        "promote-full:"
    ), line
    assert "within 1s: the operator may not be running" in line, line
    assert done.stdout.startswith(f"requested promote-full on {cluster.namespace}/churn"), done
    annotation = (cluster.get("churn") or {})["metadata"]["annotations"]["serinus.dev/action"]
    assert annotation.startswith("promote-full:"), annotation


# --- promote --full with the operator ----------------------------------------------------------


def test_promote_full_skips_the_remaining_steps(cluster: Cluster) -> None:
    cluster.operator.start()
    cluster.apply(md("v1"))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Stable", what="v1 stable")
    cluster.apply(md("v2"))
    cluster.wait_status("fraud", lambda s: s.get("phase") == "Paused", what="paused at 50%")

    done = serinus("promote", "fraud", "--full", "-n", cluster.namespace, kubeconfig=admin(cluster))
    assert done.returncode == 0 and not done.stderr, done
    assert "requested promote-full" in done.stdout and "Applied" in done.stdout, done.stdout
    annotation = (cluster.get("fraud") or {})["metadata"]["annotations"]["serinus.dev/action"]
    assert annotation.startswith("promote-full:"), annotation
    status = cluster.wait_status(
        "fraud",
        lambda s: s.get("phase") == "Stable" and s["stable"]["version"] == "v2",
        what="v2 promoted",
    )
    assert status["traffic"] == {"stable": 100, "candidate": 0, "mirror": 0}

    listed = serinus("list", "-n", cluster.namespace, kubeconfig=admin(cluster))
    (row,) = columns(listed.stdout)
    assert (row["PHASE"], row["STABLE"], row["CANDIDATE"], row["WEIGHT"]) == (
        "Stable",
        "v2",
        "-",
        "0%",
    ), listed.stdout

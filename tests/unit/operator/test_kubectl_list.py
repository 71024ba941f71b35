"""``kubectl serinus list`` (rendering), the plugin's arguments, and how each failure reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from serinus_operator.cli import build_parser
from serinus_operator.kubectl import render_list, render_status
from serinus_operator.kubectl.actions import action_value
from serinus_operator.kubectl.api import (
    EVENTS,
    MODELDEPLOYMENTS,
    Forbidden,
    Unreachable,
    http_error,
    load,
    transport_error,
)
from serinus_operator.kubectl.errors import CliError, run
from serinus_operator.kubectl.listing import analysis_summary, human_duration

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


def obj(name: str, namespace: str = "ml", age: timedelta = timedelta(minutes=5), **status: Any):
    created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"strategy": {"type": "Shadow"}},
        "status": status,
    }


SHADOWING = obj(
    "fraud",
    phase="Progressing",
    message="shadowing v2",
    stable={"version": "v1", "revision": "a"},
    candidate={"version": "v2", "revision": "b", "stage": "Shadow"},
    traffic={"stable": 100, "candidate": 0, "mirror": 20},
    analysis={"measurements": 5, "failures": 1, "result": "Pass"},
)


def test_list_is_a_kubectl_table() -> None:
    text = render_list([SHADOWING, obj("churn", age=timedelta(days=3, hours=2))], NOW)
    assert text.splitlines() == [
        "NAME    PHASE         STABLE   CANDIDATE   WEIGHT   MIRROR   ANALYSIS            AGE",
        "churn   Unknown       -        -           0%       0%       -                   3d2h",
        "fraud   Progressing   v1       v2          0%       20%      Pass (1/5 failed)   5m",
    ]


def test_list_of_all_namespaces_and_wide() -> None:
    text = render_list(
        [SHADOWING, obj("fraud", namespace="a")], NOW, all_namespaces=True, wide=True
    )
    header, first, second = text.splitlines()
    assert header.split() == [
        "NAMESPACE", "NAME", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "MIRROR", "ANALYSIS",
        "STRATEGY", "STAGE", "MESSAGE", "AGE",
    ]  # fmt: skip
    assert first.split()[:2] == ["a", "fraud"] and second.split()[:2] == ["ml", "fraud"]
    assert second.split()[-5:] == ["Shadow", "Shadow", "shadowing", "v2", "5m"]


def test_an_empty_list_prints_nothing() -> None:
    assert render_list([], NOW) == ""


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (25 * 60, "25m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (20 * 3600, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (7 * 86400, "7d"),
        (120 * 86400, "120d"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_analysis_summary() -> None:
    assert analysis_summary({}) == "-"
    assert analysis_summary({"measurements": 3, "failures": 0}) == "Running (0/3 failed)"
    assert analysis_summary({"measurements": 3, "failures": 2, "result": "Fail"}) == (
        "Fail (2/3 failed)"
    )


def test_status_says_why_events_are_missing() -> None:
    text = render_status(SHADOWING, events_note="not shown (forbidden: cannot list events)")
    assert text.splitlines()[-1] == "Events:     not shown (forbidden: cannot list events)"
    assert "Traffic:    stable 100%  candidate 0%  mirror 20%" in text
    assert "METRIC" not in text  # no metrics yet: no empty table


# --- arguments -------------------------------------------------------------------------------


def test_list_arguments() -> None:
    args = build_parser().parse_args(["list", "-A", "-o", "wide"])
    assert (args.all_namespaces, args.output, args.namespace) == (True, "wide", None)
    assert build_parser().parse_args(["list", "-n", "ml"]).output == "table"


def test_status_watch_arguments() -> None:
    args = build_parser().parse_args(["status", "fraud", "-w", "-n", "ml"])
    assert (args.name, args.watch, args.namespace, args.output) == ("fraud", True, "ml", "text")
    assert build_parser().parse_args(["status", "fraud", "--watch"]).watch
    assert not build_parser().parse_args(["status", "fraud"]).watch


@pytest.mark.parametrize(
    ("argv", "written"),
    [
        (["promote", "fraud"], "promote"),
        (["promote", "fraud", "--full"], "promote-full"),
        (["promote-full", "fraud"], "promote-full"),
        (["abort", "fraud"], "abort"),
    ],
)
def test_promote_full_spellings(argv: list[str], written: str) -> None:
    args = build_parser().parse_args(argv)
    assert action_value(args.action, full=getattr(args, "full", False)) == written


def test_timeout_and_its_older_spelling() -> None:
    assert build_parser().parse_args(["pause", "x", "--timeout", "2.5"]).timeout == 2.5
    assert build_parser().parse_args(["pause", "x", "--wait", "0"]).timeout == 0
    assert build_parser().parse_args(["pause", "x"]).timeout == 10


# --- failures --------------------------------------------------------------------------------

RBAC_MESSAGE = (
    'modeldeployments.serinus.dev "fraud" is forbidden: User "system:serviceaccount:ml:ci" '
    'cannot patch resource "modeldeployments" in API group "serinus.dev" in the namespace "ml"'
)


def error(status: int, body: dict[str, Any], verb: str = "patch", **kw: Any) -> CliError:
    kw.setdefault("resource", MODELDEPLOYMENTS)
    kw.setdefault("namespace", "ml")
    return http_error(status, body, verb=verb, server="the API server at https://k", **kw)


def test_forbidden_names_the_verb_the_resource_and_the_namespace() -> None:
    found = error(403, {"message": RBAC_MESSAGE}, name="fraud")
    assert isinstance(found, Forbidden)
    assert str(found) == (
        "forbidden: cannot patch modeldeployments.serinus.dev in namespace ml "
        "(as system:serviceaccount:ml:ci)"
    )
    everywhere = error(403, {"message": "... cannot list resource ..."}, "list", namespace=None)
    assert str(everywhere) == "forbidden: cannot list modeldeployments.serinus.dev in any namespace"
    events = error(403, {"message": "... cannot list resource ..."}, "list", resource=EVENTS)
    assert str(events) == "forbidden: cannot list events in namespace ml"
    webhook = error(403, {"message": "denied by policy"}, name="fraud")
    assert (
        str(webhook)
        == "forbidden: patch modeldeployments.serinus.dev in namespace ml: denied by policy"
    )


def test_not_found_and_other_answers() -> None:
    gone = error(404, {"message": "not found", "details": {"name": "fraud"}}, "get", name="fraud")
    assert str(gone) == "no ModelDeployment fraud in namespace ml"
    no_crd = error(404, {"message": "the server could not find the requested resource"}, "list")
    assert "does not serve modeldeployments.serinus.dev (is the Serinus CRD installed?)" in str(
        no_crd
    )
    assert str(error(401, {"message": "Unauthorized"})).startswith(
        "unauthorized: the API server at https://k did not accept"
    )
    assert str(error(422, {"message": "bad\nvalue"}, name="fraud")) == (
        "cannot patch modeldeployments.serinus.dev fraud in namespace ml: HTTP 422: bad value"
    )


def test_unreachable_says_why() -> None:
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    found = transport_error(refused, "https://127.0.0.1:1", 10)
    assert isinstance(found, Unreachable)
    assert str(found) == "cannot reach the API server at https://127.0.0.1:1: connection refused"
    slow = transport_error(httpx.ReadTimeout("timed out"), "https://k", 2.5)
    assert str(slow) == "the API server at https://k did not answer within 2.5s"


def test_no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "config"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(CliError, match=f"^no kubeconfig: {missing} does not exist"):
        load(None, None)
    missing.write_text("clusters: [\n")
    with pytest.raises(CliError, match=f"^invalid kubeconfig {missing}: "):
        load(None, None)


def test_every_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    async def refuses() -> int:
        raise CliError("forbidden: cannot patch x", 3)

    async def breaks() -> int:
        raise RuntimeError("something\nunexpected")

    async def interrupted() -> int:
        raise KeyboardInterrupt

    assert run(refuses) == 3
    assert capsys.readouterr().err == "error: forbidden: cannot patch x\n"
    assert run(breaks) == 1
    assert capsys.readouterr().err == (
        "error: unexpected RuntimeError: something unexpected (SERINUS_DEBUG=1 shows more)\n"
    )
    assert run(interrupted, interrupted=0) == 0
    assert capsys.readouterr().err == ""

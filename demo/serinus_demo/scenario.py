"""The rollout story ``make demo`` plays, and the integration test plays faster.

v1 is deployed; v2 rolls out as a canary and is promoted; v3 runs as a shadow and is rolled
back without a user ever getting a v3 answer: judged on labels against v2 on the same
requests, it is less accurate (it also disagrees with v2, its inputs have drifted and it
fails on a region it never saw, shown as dry-run checks); v4 switches in blue-green. Each
act is a YAML edit, as a user would make it; each outcome is read back from the state
``serinus local status`` shows, and checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serinus_demo.localup import LocalUp
from serinus_demo.traffic import Traffic

NAME = "fraud"
NAMESPACE = "demo"


@dataclass(frozen=True)
class Timings:
    interval: str = "3s"
    canary_pause: str = "8s"
    shadow_duration: str = "60s"
    preview: str = "9s"
    post_promotion: str = "9s"
    scale_down_delay: str = "10s"
    act_timeout: float = 120.0
    rate: float = 60.0


DEMO = Timings()
FAST = Timings(canary_pause="6s", preview="6s", post_promotion="6s", act_timeout=60.0)


@dataclass
class Outcome:
    act: str
    expected: str
    observed: str
    ok: bool
    why: str
    details: list[str] = field(default_factory=list)


@dataclass
class Watch:
    """What was seen while waiting for an act's outcome."""

    max_weight: int = 0
    stages: list[str] = field(default_factory=list)
    analysis: list[Mapping[str, Any]] = field(default_factory=list)
    candidate: str | None = None


def manifest(
    models: Mapping[str, Path],
    profiles: Mapping[str, Path],
    version: str,
    *,
    strategy: Mapping[str, Any],
    analysis: Mapping[str, Any],
) -> str:
    """The ModelDeployment YAML for ``version``."""
    model: dict[str, Any] = {"uri": str(models[version]), "version": version}
    if version in profiles:
        model["profile"] = str(profiles[version])
    doc = {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": model,
            "strategy": dict(strategy),
            "analysis": dict(analysis),
            "progressDeadline": "2m",
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def canary(t: Timings) -> tuple[dict[str, Any], dict[str, Any]]:
    strategy = {
        "type": "Canary",
        "scaleDownDelay": t.scale_down_delay,
        "canary": {
            "steps": [
                {"setWeight": 30},
                {"pause": {"duration": t.canary_pause}},
                {"setWeight": 70},
                {"pause": {"duration": t.canary_pause}},
            ]
        },
    }
    analysis = {
        "interval": t.interval,
        "failureLimit": 1,
        "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 0.5}],
    }
    return strategy, analysis


def shadow(t: Timings, *, drift: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    strategy = {
        "type": "Shadow",
        "scaleDownDelay": t.scale_down_delay,
        "shadow": {"mirrorPercent": 100, "duration": t.shadow_duration, "then": "Promote"},
    }
    # The gate: the shadow's accuracy against v2's on the same labelled requests (paired,
    # sequential). Agreement, drift and errors are shown beside it as dry runs.
    compare = {"baseline": "stable", "maxDegradation": 0.02, "minSamples": 100}
    metrics: list[dict[str, Any]] = [
        {"name": "accuracy", "compare": compare},
        {"name": "agreement", "min": 0.97, "dryRun": True},
    ]
    if drift:
        metrics.append({"name": "drift", "max": 0.2, "dryRun": True})
    metrics.append({"name": "error-rate", "max": 0.01, "dryRun": True})
    # A sequential test says "not enough data yet" until it has the evidence: no pause.
    analysis = {
        "interval": t.interval,
        "failureLimit": 1,
        "inconclusiveLimit": 20,
        "metrics": metrics,
    }
    return strategy, analysis


def blue_green(t: Timings) -> tuple[dict[str, Any], dict[str, Any]]:
    strategy = {
        "type": "BlueGreen",
        "blueGreen": {
            "autoPromote": True,
            "previewDuration": t.preview,
            "postPromotionDuration": t.post_promotion,
            "scaleDownDelay": t.scale_down_delay,
        },
    }
    analysis = {
        "interval": t.interval,
        "failureLimit": 1,
        "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 0.5}],
    }
    return strategy, analysis


# --- waiting ---------------------------------------------------------------------------------


def wait_for(
    run: LocalUp,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
    on_poll: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run.check_running()
        status = run.status()
        on_poll(status)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s; status: {status}")
        time.sleep(0.25)


def history_entry(status: Mapping[str, Any], version: str) -> dict[str, Any] | None:
    for entry in reversed(status.get("history") or []):
        if entry.get("version") == version:
            return dict(entry)
    return None


def watch_rollout(
    run: LocalUp,
    version: str,
    *,
    timeout: float,
    traffic: Traffic | None = None,
    progress: Callable[[Mapping[str, Any]], None] = lambda _: None,
) -> tuple[dict[str, Any], dict[str, Any], Watch]:
    """Wait until ``version``'s rollout has an outcome; (history entry, status, watch).
    While the candidate is in a blue-green preview and ready, ``traffic`` pins a share of
    its requests to it."""
    seen = Watch()

    def poll(status: dict[str, Any]) -> None:
        progress(status)
        candidate = status.get("candidate") or {}
        if candidate.get("version") != version:
            return
        seen.candidate = candidate.get("revision")
        weight = int((status.get("traffic") or {}).get("candidate", 0))
        seen.max_weight = max(seen.max_weight, weight)
        stage = candidate.get("stage")
        if stage and (not seen.stages or seen.stages[-1] != stage):
            seen.stages.append(str(stage))
        metrics = (status.get("analysis") or {}).get("metrics") or []
        if metrics:
            seen.analysis = list(metrics)
        if traffic is not None:
            previewing = stage == "Preview" and candidate.get("readySince")
            previewing = previewing and not candidate.get("notReadySince")
            traffic.preview = seen.candidate if previewing else None

    status = wait_for(
        run,
        lambda s: history_entry(s, version) is not None,
        timeout=timeout,
        what=f"an outcome for {version}",
        on_poll=poll,
    )
    if traffic is not None:
        traffic.preview = None
    entry = history_entry(status, version)
    assert entry is not None
    last = (status.get("analysis") or {}).get("metrics") or []
    if last and status.get("rolledBack"):
        seen.analysis = list(last)
    return entry, status, seen


def analysis_text(metrics: list[Mapping[str, Any]], spec_metrics: list[Mapping[str, Any]]) -> str:
    bounds = {}
    for m in spec_metrics:
        parts = []
        if m.get("min") is not None:
            parts.append(f">= {m['min']}")
        if m.get("max") is not None:
            parts.append(f"<= {m['max']}")
        if m.get("compare"):
            parts.append(f"stable - {m['compare']['maxDegradation']}")
        bounds[m["name"]] = " and ".join(parts)
    out = []
    for m in metrics:
        value = m.get("value")
        shown = "no data" if value is None else f"{value:.3g}"
        if m.get("baseline") is not None:
            shown += f" vs stable {m['baseline']:.3g}, n={m.get('samples', 0):.0f}"
            shown += f", p={m.get('pValue', 1):.2g}"
        dry = " (dry run)" if m.get("dryRun") else ""
        out.append(f"{m['name']} {shown} ({bounds.get(m['name'], '?')}) {m.get('result')}{dry}")
    return "; ".join(out)


# --- the play --------------------------------------------------------------------------------


def _failed(metrics: list[Mapping[str, Any]]) -> list[str]:
    return [str(m.get("name")) for m in metrics if m.get("result") == "Fail"]


def play(
    run: LocalUp,
    traffic: Traffic,
    *,
    models: Mapping[str, Path],
    profiles: Mapping[str, Path],
    timings: Timings,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """Play the four acts; returns their outcomes (``ok`` False when not as expected)."""
    t = timings
    drift = "v3" in profiles
    outcomes: list[Outcome] = []
    last_line = ""

    def progress(status: Mapping[str, Any]) -> None:
        nonlocal last_line
        from serinus_operator.local.view import summary_line

        line = summary_line({"status": status})
        if status and line != last_line:
            last_line = line
            say(f"     {line}")

    # Act 1 ------------------------------------------------------------------------------
    say("1. v1: deploy it (the first revision goes straight to stable)")
    strategy, analysis = canary(t)
    run.write(manifest(models, profiles, "v1", strategy=strategy, analysis=analysis))
    run.start()
    status = wait_for(
        run,
        lambda s: s.get("phase") == "Stable" and (s.get("stable") or {}).get("version") == "v1",
        timeout=t.act_timeout,
        what="v1 stable",
        on_poll=progress,
    )
    wait_for(
        run,
        lambda _: any(
            p.get("role") == "router" and p.get("state") == "Ready"
            for p in run.info().get("processes") or []
        ),
        timeout=t.act_timeout,
        what="the router ready",
    )
    traffic.start()
    outcomes.append(
        Outcome(
            "v1 deployed",
            "Stable on v1",
            f"{status.get('phase')} on {(status.get('stable') or {}).get('version')}",
            True,
            "the first revision has nothing to compare with: it takes all traffic at once",
        )
    )
    time.sleep(2 * _seconds(t.interval))  # some history for the dashboards

    # Act 2 ------------------------------------------------------------------------------
    say("2. v2: roll it out as a canary, 30% then 70% of live traffic, gated on errors and p99")
    strategy, analysis = canary(t)
    run.write(manifest(models, profiles, "v2", strategy=strategy, analysis=analysis))
    entry, status, seen = watch_rollout(
        run, "v2", timeout=t.act_timeout, traffic=traffic, progress=progress
    )
    served = traffic.stats.served(seen.candidate or "?")
    ok = entry.get("outcome") == "Promoted" and 0 < seen.max_weight < 100 and served > 0
    outcomes.append(
        Outcome(
            "v2 as a canary",
            "Promoted",
            str(entry.get("outcome")),
            ok,
            f"live traffic moved in steps up to {seen.max_weight}% and every measurement "
            f"passed: {analysis_text(seen.analysis, analysis['metrics'])}",
            [f"users answered by v2 during the canary: {served}"],
        )
    )
    progress(status)

    # Act 3 ------------------------------------------------------------------------------
    shown = "agreement with v2" + (", drift" if drift else "") + " and errors"
    say(
        "3. v3: run it as a shadow (a copy of every request), gated on its accuracy against "
        f"v2's on the same labelled requests; {shown} shown as dry runs"
    )
    strategy, analysis = shadow(t, drift=drift)
    run.write(manifest(models, profiles, "v3", strategy=strategy, analysis=analysis))
    entry, status, seen = watch_rollout(
        run, "v3", timeout=t.act_timeout, traffic=traffic, progress=progress
    )
    failed = _failed(seen.analysis)
    gating = [m for m in seen.analysis if not m.get("dryRun")]
    served = traffic.stats.served(seen.candidate or "?")
    ok = (
        entry.get("outcome") == "RolledBack"
        and entry.get("reason") == "AnalysisFailed"
        and _failed(gating) == ["accuracy"]
        and "agreement" in failed
        and served == 0
        and (status.get("stable") or {}).get("version") == "v2"
    )
    outcomes.append(
        Outcome(
            "v3 as a shadow",
            "RolledBack: accuracy against v2 failed (agreement failed too, in dry run)",
            f"{entry.get('outcome')} ({entry.get('reason')}: {', '.join(failed) or 'nothing'} "
            "failed)",
            ok,
            analysis_text(seen.analysis, analysis["metrics"]),
            [
                f"users answered by v3: {served} (it only ever saw copies); v2 kept serving",
                "decided by a sequential paired test whose false-rollback rate stays under 5% "
                "however often it looks (docs/analysis.md)",
            ],
        )
    )
    progress(status)

    # Act 4 ------------------------------------------------------------------------------
    say("4. v4: blue-green: preview it on pinned requests, then switch all traffic at once")
    strategy, analysis = blue_green(t)
    run.write(manifest(models, profiles, "v4", strategy=strategy, analysis=analysis))
    entry, status, seen = watch_rollout(
        run, "v4", timeout=t.act_timeout, traffic=traffic, progress=progress
    )
    status = wait_for(
        run,
        lambda s: s.get("phase") == "Stable" and (s.get("stable") or {}).get("version") == "v4",
        timeout=t.act_timeout,
        what="v4 stable",
    )
    switched = [e for e in run.events() if e.get("reason") == "TrafficSwitched"]
    pinned = traffic.stats.pinned[seen.candidate or "?"]
    ok = (
        entry.get("outcome") == "Promoted"
        and "Preview" in seen.stages
        and "PostPromotion" in seen.stages
        and bool(switched)
        and pinned > 0
    )
    outcomes.append(
        Outcome(
            "v4 blue-green",
            "Promoted after a switch",
            f"{entry.get('outcome')} (stages: {' -> '.join(seen.stages) or '-'})",
            ok,
            f"previewed on {pinned} pinned requests, then all traffic switched at once; "
            f"post-promotion analysis: {analysis_text(seen.analysis, analysis['metrics'])}",
            [
                "v2 stayed warm until the post-promotion analysis passed: a failure would have "
                "switched straight back to it, without starting anything"
            ],
        )
    )
    progress(status)
    return outcomes


def _seconds(duration: str) -> float:
    from serinus_operator.api import parse_duration

    return parse_duration(duration, "duration").total_seconds()


def summary(outcomes: list[Outcome]) -> str:
    lines = []
    for i, o in enumerate(outcomes, 1):
        mark = "ok  " if o.ok else "FAIL"
        lines.append(f"{mark} {i}. {o.act}: expected {o.expected}; got {o.observed}")
        lines.append(f"        why: {o.why}")
        lines += [f"        {d}" for d in o.details]
    return "\n".join(lines)

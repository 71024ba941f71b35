"""What ``kubectl serinus status`` prints, rendered from the stored object (pure):
phase, traffic, analysis values against their bounds, conditions, history, Events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from serinus_operator.analysis.templates import BUILTIN


def bound_text(name: str, spec: Mapping[str, Any]) -> str:
    """``>= 0.97``, ``<= 0.01`` or both: the spec's bounds, else the built-in check's."""
    low = high = None
    for m in (spec.get("analysis") or {}).get("metrics") or []:
        if isinstance(m, Mapping) and m.get("name") == name:
            low, high = m.get("min"), m.get("max")
            compare = m.get("compare")
            if isinstance(compare, Mapping):
                return _compare_text(compare)
    if low is None and high is None and name in BUILTIN:
        low, high = BUILTIN[name].min, BUILTIN[name].max
    parts = []
    if low is not None:
        parts.append(f">= {low:g}" if isinstance(low, int | float) else f">= {low}")
    if high is not None:
        parts.append(f"<= {high:g}" if isinstance(high, int | float) else f"<= {high}")
    return " and ".join(parts)


def _compare_text(compare: Mapping[str, Any]) -> str:
    """``stable ± 0.005 @95%``: a compare check's bound moves with its baseline."""
    margin, confidence = compare.get("maxDegradation"), compare.get("confidence", 0.95)
    shown = f"{margin:g}" if isinstance(margin, int | float) else str(margin)
    level = f"{confidence:.0%}" if isinstance(confidence, int | float) else str(confidence)
    return f"{compare.get('baseline', 'stable')} ± {shown} @{level}"


def value_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _event_order(event: Mapping[str, Any]) -> tuple[str, int]:
    """By time, then by when it was stored: Event times have whole seconds only, and one
    decision's Events (AnalysisFailed, then RolledBack) share a second. A resourceVersion
    is opaque but, on every API server, written in increasing order within a resource."""
    version = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return str(event.get("lastTimestamp") or ""), int(version) if version.isdigit() else 0


def render_status(
    obj: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    events_note: str | None = None,
) -> str:
    """What ``kubectl serinus status`` prints: phase, traffic, analysis values against
    their bounds, history, the last events (or ``events_note``: why there are none)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    lines = [f"Name:       {meta.get('namespace')}/{meta.get('name')}"]
    strategy = (spec.get("strategy") or {}).get("type", "?")
    lines.append(f"Strategy:   {strategy}")
    lines.append(f"Phase:      {status.get('phase', 'Unknown')}")
    if status.get("message"):
        lines.append(f"Message:    {status['message']}")
    lines += _revision_lines(status)
    lines += _analysis_lines(status.get("analysis") or {}, spec)
    lines += _conditions_lines(status.get("conditions") or [])
    lines += _history_lines(status.get("history") or [])
    lines += _events_lines(events)
    if events_note:
        lines.append(f"Events:     {events_note}")
    return "\n".join(lines)


def _revision_lines(status: Mapping[str, Any]) -> list[str]:
    """Stable, candidate (stage, step, pause) and where traffic goes."""
    lines = []
    stable = status.get("stable") or {}
    candidate = status.get("candidate") or {}
    if stable:
        lines.append(f"Stable:     {stable.get('version')} ({stable.get('revision')})")
    if candidate:
        stage = candidate.get("stage", "")
        step = candidate.get("step")
        where = f", stage {stage}" + (f", step {step}" if step is not None else "")
        lines.append(f"Candidate:  {candidate.get('version')} ({candidate.get('revision')}){where}")
        pause = candidate.get("pause") or {}
        if pause:
            lines.append(f"Paused:     {pause.get('reason')} {pause.get('message', '')}".rstrip())
    traffic = status.get("traffic") or {}
    lines.append(
        f"Traffic:    stable {traffic.get('stable', 100)}%  candidate "
        f"{traffic.get('candidate', 0)}%  mirror {traffic.get('mirror', 0)}%"
    )
    return lines


def _analysis_lines(analysis: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The analysis summary and each metric's value against its bound."""
    if not analysis:
        return []
    lines = [
        f"Analysis:   {analysis.get('result') or 'running'}  measurements "
        f"{analysis.get('measurements', 0)}  failures {analysis.get('failures', 0)}  "
        f"inconclusive {analysis.get('inconclusive', 0)}"
    ]
    if not analysis.get("metrics"):
        return lines
    rows: list[tuple[str, ...]] = [
        ("METRIC", "VALUE", "BASELINE", "BOUND", "N", "P", "RESULT", "AT")
    ]
    for m in analysis.get("metrics") or []:
        rows.append(
            (
                str(m.get("name")),
                value_text(m.get("value")),
                value_text(m.get("baseline")),
                bound_text(str(m.get("name")), spec),
                value_text(m.get("samples")),
                value_text(m.get("pValue")),
                str(m.get("result")) + (" (dry run)" if m.get("dryRun") else ""),
                str(m.get("at", "")),
            )
        )
    lines += ["  " + line for line in table(rows)]
    for m in analysis.get("metrics") or []:
        if m.get("message"):
            lines.append(f"  {m.get('name')}: {m['message']}")
    return lines


def _conditions_lines(conditions: Sequence[Mapping[str, Any]]) -> list[str]:
    if not conditions:
        return []
    rows = [("TYPE", "STATUS", "REASON", "MESSAGE")]
    rows += [
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")), str(c.get("message")))
        for c in conditions
    ]
    return ["Conditions:"] + ["  " + line for line in table(rows)]


def _history_lines(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Finished rollouts, newest first."""
    if not history:
        return []
    rows = [("VERSION", "REVISION", "OUTCOME", "REASON", "FINISHED")]
    rows += [
        (
            str(h.get("version")),
            str(h.get("revision")),
            str(h.get("outcome")),
            str(h.get("reason")),
            str(h.get("finishedAt")),
        )
        for h in reversed(history)
    ]
    return ["History:"] + ["  " + line for line in table(rows)]


def _events_lines(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """The last ten events, oldest first."""
    if not events:
        return []
    recent = sorted(events, key=_event_order)[-10:]
    rows = [("TIME", "TYPE", "REASON", "MESSAGE")]
    rows += [
        (
            str(e.get("lastTimestamp") or ""),
            str(e.get("type") or ""),
            str(e.get("reason") or ""),
            str(e.get("message") or ""),
        )
        for e in recent
    ]
    return ["Events:"] + ["  " + line for line in table(rows)]


def table(rows: Sequence[Sequence[str]], gap: int = 2) -> list[str]:
    """Left-aligned columns, ``gap`` spaces apart (kubectl's tables use three)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = " " * gap
    return [sep.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]

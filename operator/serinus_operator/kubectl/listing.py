"""What ``kubectl serinus list`` prints: one row per ModelDeployment, as kubectl's tables
look (upper-case headers, columns three spaces apart, kubectl's ages). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from serinus_operator.kubectl.render import table

HEADERS = ("NAME", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "MIRROR", "ANALYSIS", "AGE")
WIDE = ("STRATEGY", "STAGE", "MESSAGE")


def human_duration(seconds: float) -> str:
    """An age as kubectl prints it (apimachinery's ``HumanDuration``): ``45s``, ``3m12s``,
    ``25m``, ``5h3m``, ``20h``, ``3d4h``, ``120d``, ``2y10d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days, years = hours // 24, hours // (24 * 365)
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def age(meta: Mapping[str, Any], now: datetime) -> str:
    stamp = meta.get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def analysis_summary(analysis: Mapping[str, Any]) -> str:
    """The last result and how many measurements failed: ``Pass (0/5 failed)``."""
    if not analysis:
        return "-"
    result = analysis.get("result") or "Running"
    return f"{result} ({analysis.get('failures', 0)}/{analysis.get('measurements', 0)} failed)"


def row(obj: Mapping[str, Any], now: datetime, *, wide: bool = False) -> tuple[str, ...]:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    traffic = status.get("traffic") or {}
    candidate = status.get("candidate") or {}
    cells = (
        str(meta.get("name", "")),
        str(status.get("phase") or "Unknown"),
        str((status.get("stable") or {}).get("version") or "-"),
        str(candidate.get("version") or "-"),
        f"{traffic.get('candidate', 0)}%",
        f"{traffic.get('mirror', 0)}%",
        analysis_summary(status.get("analysis") or {}),
        age(meta, now),
    )
    if not wide:
        return cells
    strategy = ((obj.get("spec") or {}).get("strategy") or {}).get("type") or "-"
    extra = (str(strategy), str(candidate.get("stage") or "-"), str(status.get("message") or ""))
    return (*cells[:-1], *extra, cells[-1])


def render_list(
    items: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    all_namespaces: bool = False,
    wide: bool = False,
) -> str:
    """The table, sorted by namespace and name (an empty string when there is nothing)."""
    if not items:
        return ""
    headers = HEADERS if not wide else (*HEADERS[:-1], *WIDE, HEADERS[-1])
    ordered = sorted(
        items,
        key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]),
    )
    rows = []
    for obj in ordered:
        cells = row(obj, now, wide=wide)
        if all_namespaces:
            cells = (str((obj.get("metadata") or {}).get("namespace", "")), *cells)
        rows.append(cells)
    if all_namespaces:
        headers = ("NAMESPACE", *headers)
    return "\n".join(table([headers, *rows], gap=3))

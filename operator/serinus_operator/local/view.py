"""What ``serinus local up`` shows while it runs.

On a terminal, a live panel (rich) redrawn on every change: phase, versions, weights, each
analysis value against its bound, the processes and where to reach them, with Events
scrolling above it. Elsewhere (a pipe, a log file, CI) one plain line per Event, phase
change and measurement, so the output stays readable as a log.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from serinus_operator.kubectl import bound_text, value_text

_PHASE_STYLE = {
    "Stable": "bold green",
    "Progressing": "bold cyan",
    "Promoting": "bold cyan",
    "Paused": "bold yellow",
    "RolledBack": "bold red",
    "Degraded": "bold red",
    "Initializing": "bold blue",
}
_RESULT_STYLE = {"Pass": "green", "Fail": "bold red", "Inconclusive": "yellow"}


class View(Protocol):
    def update(self, obj: Mapping[str, Any], processes: Mapping[str, Any]) -> None: ...
    def event(self, event: Mapping[str, Any]) -> None: ...
    def note(self, text: str, *, error: bool = False) -> None: ...
    def close(self) -> None: ...


# --- pure helpers ----------------------------------------------------------------------------


def analysis_line(obj: Mapping[str, Any]) -> str:
    """``error-rate 0 (<= 0.01) Pass; agreement 0.71 (>= 0.97) Fail``."""
    spec = obj.get("spec") or {}
    analysis = (obj.get("status") or {}).get("analysis") or {}
    parts = []
    for m in analysis.get("metrics") or []:
        name = str(m.get("name"))
        parts.append(
            f"{name} {value_text(m.get('value'))} ({bound_text(name, spec)}) {m.get('result')}"
        )
    return "; ".join(parts)


def summary_line(obj: Mapping[str, Any]) -> str:
    """``Progressing: stable v1 50%, candidate v2 50% (Canary step 1)``."""
    status = obj.get("status") or {}
    traffic = status.get("traffic") or {}
    stable = status.get("stable") or {}
    candidate = status.get("candidate") or {}
    text = f"{status.get('phase', 'Unknown')}: stable {stable.get('version', '-')} "
    text += f"{traffic.get('stable', 100)}%"
    if candidate:
        text += f", candidate {candidate.get('version')} {traffic.get('candidate', 0)}%"
        if traffic.get("mirror"):
            text += f" + mirror {traffic['mirror']}%"
        stage = candidate.get("stage")
        if stage:
            step = candidate.get("step")
            text += f" ({stage}" + (f" step {step}" if step is not None else "") + ")"
    return text


def event_line(event: Mapping[str, Any]) -> str:
    stamp = str(event.get("lastTimestamp") or "")[11:19]
    return f"{stamp} {event.get('type', '')} {event.get('reason', '')}: {event.get('message', '')}"


def render(
    obj: Mapping[str, Any], processes: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()
) -> RenderableType:
    """The live panel."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = str(status.get("phase", "Unknown"))
    title = Text.assemble(
        (f"{meta.get('namespace')}/{meta.get('name')}", "bold"),
        "  ",
        ((spec.get("strategy") or {}).get("type", "?"), "dim"),
        "  ",
        (phase, _PHASE_STYLE.get(phase, "bold")),
    )
    parts: list[RenderableType] = [Text(summary_line(obj))]
    if status.get("message"):
        parts.append(Text(str(status["message"]), style="dim"))
    parts.append(_traffic_bar(status.get("traffic") or {}))
    parts += _analysis_parts(status.get("analysis") or {}, spec)
    parts += _process_parts(processes.get("processes") or [])
    for event in list(events)[-5:]:
        style = "red" if event.get("type") == "Warning" else "dim"
        parts.append(Text(event_line(event), style=style, overflow="ellipsis", no_wrap=True))
    links = [f"model: {processes.get('router', '-')}/v2/models/{meta.get('name')}"]
    if processes.get("prometheus"):
        links.append(f"prometheus: {processes['prometheus']}")
    parts.append(Text("  ".join(links) + "   Ctrl-C stops everything", style="dim"))
    return Panel(Group(*parts), title=title, title_align="left")


def _analysis_parts(analysis: Mapping[str, Any], spec: Mapping[str, Any]) -> list[RenderableType]:
    """The measurement counts and a table of each check against its bound."""
    if not analysis.get("metrics"):
        return []
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("metric", "value", "baseline", "bound", "n", "p", "result", "measured"):
        table.add_column(column)
    for m in analysis["metrics"]:
        result = str(m.get("result"))
        table.add_row(
            str(m.get("name")),
            value_text(m.get("value")),
            value_text(m.get("baseline")),
            bound_text(str(m.get("name")), spec),
            value_text(m.get("samples")),
            value_text(m.get("pValue")),
            Text(
                result + (" (dry run)" if m.get("dryRun") else ""),
                style=_RESULT_STYLE.get(result, ""),
            ),
            str(m.get("at", ""))[11:19],
        )
    counts = (
        f"analysis: {analysis.get('measurements', 0)} measurements, "
        f"{analysis.get('failures', 0)} failed, {analysis.get('inconclusive', 0)} inconclusive"
    )
    return [Text(counts, style="bold"), table]


def _process_parts(rows: Sequence[Mapping[str, Any]]) -> list[RenderableType]:
    """A table of the processes `serinus local` runs, coloured by state."""
    if not rows:
        return []
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("process", "version", "port", "pid", "state", "restarts"):
        table.add_column(column)
    for row in rows:
        state = str(row.get("state"))
        style = "green" if state == "Ready" else "yellow" if state == "Starting" else "red"
        table.add_row(
            str(row.get("name")),
            str(row.get("version") or ""),
            str(row.get("port") or ""),
            str(row.get("pid") or ""),
            Text(state, style=style),
            str(row.get("restarts", 0)),
        )
    return [table]


def _traffic_bar(traffic: Mapping[str, Any], width: int = 40) -> Text:
    stable, candidate = int(traffic.get("stable", 100)), int(traffic.get("candidate", 0))
    filled = round(width * stable / 100)
    bar = Text.assemble(
        ("█" * filled, "green"),
        ("█" * (width - filled), "cyan"),
        f"  stable {stable}%  candidate {candidate}%  mirror {traffic.get('mirror', 0)}%",
    )
    return bar


# --- the two views ---------------------------------------------------------------------------


class PlainView:
    """One line per Event, phase change and measurement."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self._summary = ""
        self._measured: object = None

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def update(self, obj: Mapping[str, Any], processes: Mapping[str, Any]) -> None:
        summary = summary_line(obj)
        if summary != self._summary:
            self._summary = summary
            self._print(f"== {summary}")
        analysis = (obj.get("status") or {}).get("analysis") or {}
        measured = analysis.get("lastMeasuredAt")
        if measured and measured != self._measured:
            self._measured = measured
            self._print(f"   analysis: {analysis_line(obj)}")

    def event(self, event: Mapping[str, Any]) -> None:
        self._print(event_line(event))

    def note(self, text: str, *, error: bool = False) -> None:
        self._print(("error: " if error else "") + text)

    def close(self) -> None:
        pass


class LiveView:
    """The rich live panel, with Events printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.events: list[Mapping[str, Any]] = []
        self.live = Live(console=console, refresh_per_second=4, auto_refresh=True)
        self.live.start()

    def update(self, obj: Mapping[str, Any], processes: Mapping[str, Any]) -> None:
        self.live.update(render(obj, processes, self.events))

    def event(self, event: Mapping[str, Any]) -> None:
        self.events = [*self.events[-20:], event]
        style = "red" if event.get("type") == "Warning" else ""
        self.live.console.print(Text(event_line(event), style=style))

    def note(self, text: str, *, error: bool = False) -> None:
        self.live.console.print(Text(text, style="bold red" if error else "bold"))

    def close(self) -> None:
        self.live.stop()


def make_view(*, plain: bool = False) -> View:
    console = Console()
    if plain or not console.is_terminal:
        return PlainView()
    return LiveView(console)

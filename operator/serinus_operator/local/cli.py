"""``serinus local up FILE.yaml`` and ``serinus local status [NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from serinus_operator.platforms.local_state import DEFAULT_BASE, StateDir, instances


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = sub.add_parser(
        "local",
        help="run a ModelDeployment on this machine: processes, a router and Prometheus",
        description="The operator's loop without a cluster: each revision is a `serinus "
        "serve` process, traffic goes through a `serinus router`, analysis queries a local "
        "Prometheus. See docs/local.md.",
    )
    verbs = local.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser(
        "up",
        help="bring a ModelDeployment up and roll out every edit of its file",
        description="Read FILE (the YAML you would apply to a cluster), bring it up, and "
        "watch the file: editing spec.model starts a rollout. Ctrl-C stops everything.",
    )
    p.add_argument("file", type=Path, help="a ModelDeployment YAML file")
    p.add_argument("--port", type=int, default=8000, help="the model's port (default: 8000)")
    _state_dir(p)
    p.add_argument("--prometheus-port", type=int, help="default: a free port")
    p.add_argument("--prometheus-bin", help="the prometheus executable (default: from PATH)")
    p.add_argument(
        "--fresh", action="store_true", help="forget the stored status and events of NAME"
    )
    p.add_argument("--plain", action="store_true", help="log lines instead of a live panel")
    p.set_defaults(func=_up)

    p = verbs.add_parser(
        "status",
        help="what a running (or the last) `serinus local up` is doing",
        description="Phase, traffic, analysis values against their bounds, history, events "
        "and processes, from the state directory.",
    )
    p.add_argument("name", nargs="?", help="NAME or NAMESPACE/NAME (default: the only one)")
    _state_dir(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=_status)


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_BASE,
        help=f"where status, events, logs and data are kept (default: {DEFAULT_BASE})",
    )


def _up(args: argparse.Namespace) -> int:
    from serinus_operator.local.run import UpOptions, up

    return up(
        UpOptions(
            file=args.file,
            port=args.port,
            state_dir=args.state_dir,
            prometheus_port=args.prometheus_port,
            prometheus_bin=args.prometheus_bin,
            fresh=args.fresh,
            plain=args.plain,
            # The top-level CLI gives the data plane's pinning (this layer cannot import it).
            pin=getattr(args, "pin", None),
        )
    )


def find_instance(base: Path, name: str | None) -> StateDir | str:
    """The state directory meant by ``name`` (``NAME`` or ``NAMESPACE/NAME``), or why none."""
    found = instances(base)
    if not found:
        return f"nothing has run under {base} yet: start one with `serinus local up FILE.yaml`"
    if name is None:
        if len(found) == 1:
            return found[0]
        names = ", ".join(_display(s) for s in found)
        return f"several ModelDeployments under {base} ({names}): name one"
    matches = [s for s in found if _display(s) == name or _display(s).split("/", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        names = ", ".join(_display(s) for s in found)
        return f"no ModelDeployment {name!r} under {base} (there is {names})"
    return f"{name!r} is ambiguous: " + ", ".join(_display(s) for s in matches)


def _display(state: StateDir) -> str:
    obj = state.load_object() or {}
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', state.path.name)}"


def render_local(state: StateDir) -> str:
    """``kubectl serinus status``'s text, then the processes and where to reach them."""
    from serinus_operator.kubectl import render_status

    obj = state.load_object() or {}
    text = render_status(obj, state.events(50))
    running = state.running()
    info = state.load_processes()
    lines = [text, ""]
    if not running:
        lines.append("Not running (this is the state it was left in).")
        return "\n".join(lines)
    rows: list[tuple[str, ...]] = [("PROCESS", "VERSION", "PORT", "PID", "STATE", "RESTARTS")]
    for row in info.get("processes") or []:
        rows.append(
            tuple(
                str(row.get(key) if row.get(key) is not None else "")
                for key in ("name", "version", "port", "pid", "state", "restarts")
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("Processes:")
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    name = (obj.get("metadata") or {}).get("name")
    lines.append(f"Model:      {info.get('router')}/v2/models/{name}")
    if info.get("prometheus"):
        lines.append(f"Prometheus: {info['prometheus']}")
    lines.append(f"State:      {state.path}")
    return "\n".join(line.rstrip() for line in lines)


def _status(args: argparse.Namespace) -> int:
    found = find_instance(args.state_dir, args.name)
    if isinstance(found, str):
        print(f"serinus local status: {found}", file=sys.stderr)
        return 1
    if args.output == "json":
        out: dict[str, Any] = {
            "object": found.load_object(),
            "running": found.running(),
            "processes": found.load_processes(),
            "events": found.events(50),
        }
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(render_local(found))
    return 0

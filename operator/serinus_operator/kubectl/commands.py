"""The plugin's subcommands and their flags: ``list``, ``status [-w]`` and the actions."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from serinus_operator.kubectl import actions
from serinus_operator.kubectl.api import EVENTS, MODELDEPLOYMENTS, Api, Forbidden, load
from serinus_operator.kubectl.errors import run
from serinus_operator.kubectl.listing import render_list
from serinus_operator.kubectl.render import render_status
from serinus_operator.kubectl.watch import watch_status

ACTIONS: Mapping[str, str] = {
    "promote": "advance past the current pause or stage (--full: all the way to 100%%)",
    "promote-full": "skip the remaining steps and analysis: the candidate becomes stable now",
    "abort": "roll the candidate back now; all traffic to stable",
    "pause": "hold the rollout where it is",
    "resume": "continue a paused rollout",
    "retry": "start the rolled-back revision again",
}


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace")
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up on an API request after this long (default 10)",
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "list", help="the ModelDeployments of a namespace: phase, versions, traffic, analysis"
    )
    _connection(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    p.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
    p.set_defaults(func=_list)
    p = sub.add_parser("status", help="phase, traffic, last analysis and history of a rollout")
    p.add_argument("name", help="the ModelDeployment")
    _connection(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument(
        "-w", "--watch", action="store_true", help="stay, and redraw on every change (Ctrl-C)"
    )
    p.set_defaults(func=_status)
    for action, text in ACTIONS.items():
        _add_action(sub, action, text)


def _add_action(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], action: str, text: str
) -> None:
    p = sub.add_parser(
        action,
        help=text,
        description=f"{text.replace('%%', '%')}. Written to the serinus.dev/action annotation, "
        "never to spec.",
    )
    p.add_argument("name", help="the ModelDeployment")
    _connection(p)
    if action == "promote":
        p.add_argument(
            "--full", action="store_true", help="skip the remaining steps (promote-full)"
        )
    p.add_argument(
        "--timeout",
        "--wait",
        dest="timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for the operator to acknowledge (0: do not wait; default 10); "
        "exit code 4 if it does not",
    )
    p.set_defaults(func=_act, action=action)


def _connect(args: argparse.Namespace) -> tuple[Api, str]:
    credentials = load(args.kubeconfig, args.context)
    namespace = args.namespace or credentials.default_namespace or "default"
    return Api(credentials, timeout=args.request_timeout), namespace


def _list(args: argparse.Namespace) -> int:
    async def main() -> int:
        api, namespace = _connect(args)
        async with api:
            items, _ = await api.list(MODELDEPLOYMENTS, None if args.all_namespaces else namespace)
        if args.output == "json":
            print(json.dumps({"items": items}, indent=2, sort_keys=True))
            return 0
        text = render_list(
            items,
            datetime.now(UTC),
            all_namespaces=args.all_namespaces,
            wide=args.output == "wide",
        )
        if text:
            print(text)
        else:
            where = "" if args.all_namespaces else f" in {namespace} namespace"
            print(f"No resources found{where}.", file=sys.stderr)
        return 0

    return run(main)


def _renderer(output: str, namespace: str, name: str) -> Any:
    def render(
        obj: Mapping[str, Any] | None, events: Sequence[Mapping[str, Any]], note: str | None
    ) -> str:
        if obj is None:
            return (
                f"{MODELDEPLOYMENTS.kind} {name} in namespace {namespace} was deleted; "
                "waiting for it to be created again (Ctrl-C to stop)"
            )
        if output == "json":
            return json.dumps(obj.get("status") or {}, indent=2, sort_keys=True)
        return render_status(obj, events, events_note=note)

    return render


def _status(args: argparse.Namespace) -> int:
    async def main() -> int:
        api, namespace = _connect(args)
        render = _renderer(args.output, namespace, args.name)
        async with api:
            if args.watch:
                return await watch_status(api, namespace, args.name, render, sys.stdout)
            obj = await api.get(MODELDEPLOYMENTS, namespace, args.name)
            events: list[dict[str, Any]] = []
            note = None
            try:
                events, _ = await api.list(
                    EVENTS,
                    namespace,
                    field_selector=f"involvedObject.kind={MODELDEPLOYMENTS.kind},"
                    f"involvedObject.name={args.name}",
                )
            except Forbidden as exc:
                note = f"not shown ({exc})"
        print(render(obj, events, note))
        return 0

    return run(main, interrupted=0 if args.watch else 130)


def _act(args: argparse.Namespace) -> int:
    action = actions.action_value(args.action, full=getattr(args, "full", False))

    async def main() -> int:
        api, namespace = _connect(args)
        async with api:
            await actions.request(
                api,
                namespace,
                args.name,
                action,
                nonce=actions.new_nonce(),
                wait_seconds=args.timeout,
                say=functools.partial(print, flush=True),
            )
        return 0

    return run(main)

"""Settings (serinus_serving.options) as argparse flags and as a Markdown table.

Flags default to None, so that a value in the parsed namespace is one the user gave:
``overrides`` hands exactly those to ``options.resolve``, where they win over the
environment. Types are parsed here (``argument --port: must be an integer``); ranges are
checked by ``resolve``, which names the flag or the variable a bad value came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from serinus_serving.options import Setting


def _argument_type(setting: Setting) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _help(setting: Setting) -> str:
    shown = setting.shown_default()
    if setting.required:
        tail = f"required unless {setting.env} is set"
    elif shown is None:
        tail = f"env {setting.env}"
    else:
        tail = f"default: {shown}; env {setting.env}"
    return f"{setting.opt.help} ({tail})".replace("%", "%%")


def add_flags(
    parser: argparse.ArgumentParser, settings: Sequence[Setting], env: Mapping[str, str]
) -> None:
    """One flag per setting; a section's flags in an argument group titled by its help.
    A required setting's flag may be left out when its variable is set in ``env``."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in settings:
        target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if s.section is not None:
            if s.section not in groups:
                groups[s.section] = parser.add_argument_group(s.section)
            target = groups[s.section]
        kwargs: dict[str, Any] = {"dest": s.dest, "default": None, "help": _help(s)}
        if s.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _argument_type(s)
            if s.opt.choices:
                kwargs["choices"] = s.opt.choices
            elif s.metavar:
                kwargs["metavar"] = s.metavar
        if s.required:
            kwargs["required"] = not env.get(s.env)
        target.add_argument(s.flag, **kwargs)


def overrides(args: argparse.Namespace, settings: Sequence[Setting]) -> dict[str, Any]:
    """The settings given on the command line, by key."""
    given = {s.key: getattr(args, s.dest, None) for s in settings}
    return {key: value for key, value in given.items() if value is not None}


def markdown_table(settings: Sequence[Setting]) -> str:
    """Flag, variable, default and meaning of every setting, for the docs."""
    lines = [
        "| flag | environment variable | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in settings:
        if s.kind is bool:
            flag = f"`{s.flag}`, `--no-{s.flag[2:]}`"
        else:
            flag = f"`{s.flag} {s.metavar}`" if s.metavar else f"`{s.flag}`"
        default = s.shown_default() or ""
        if default and s.opt.shown_default is None and not s.required and s.kind is not bool:
            default = f"`{default}`"  # a literal value, not a description
        meaning = s.opt.help.replace("|", "\\|")
        lines.append(f"| {flag} | `{s.env}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"

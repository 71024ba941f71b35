"""Settings declared once, as annotated dataclass fields, for flags, environment and docs.

A field reads ``name: Annotated[type, Opt("why it exists", ...)] = default``. From it come:

- its flag: ``--`` and the name with ``-`` for ``_`` (``Opt.flag`` may say otherwise); the
  fields of a nested section (a field whose type is such a dataclass) get the section's
  name in front: ``drift.window`` is ``--drift-window``;
- its environment variable: the prefix and the flag's name upper-cased with ``_`` for
  ``-``: ``--max-batch-size`` is ``SERINUS_SERVE_MAX_BATCH_SIZE``;
- its parser (``int``, ``float``, ``bool``, ``str``, ``Path``, each optionally ``| None``)
  and its checks (``Opt.minimum``, ``above``, ``maximum``, ``choices``).

An explicit value (a flag) wins over the environment, which wins over the default; an
empty variable counts as unset. Only the standard library is imported: the ``serinus``
command builds every subcommand's parser at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Opt:
    """What a setting is for (its help), and the values it accepts."""

    help: str
    flag: str | None = None
    metavar: str | None = None
    minimum: float | None = None
    #: Values must be strictly greater than this.
    above: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: How help and docs show the default when its value is not the clearest ("32 MiB").
    shown_default: str | None = None


class SettingsError(ValueError):
    """One or more bad values, each named with where it came from."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Setting:
    """One field as a command-line flag and an environment variable."""

    path: tuple[str, ...]
    kind: type
    opt: Opt
    #: ``dataclasses.MISSING`` for a required field.
    default: Any
    flag: str
    env: str
    #: The help of the section this field belongs to, None at the top level.
    section: str | None = None

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def metavar(self) -> str | None:
        if self.opt.choices:
            return "{" + ",".join(self.opt.choices) + "}"
        return self.opt.metavar or ("N" if self.kind is int else None)

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def shown_default(self) -> str | None:
        if self.required:
            return "required"
        if self.opt.shown_default is not None:
            return self.opt.shown_default
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return format(self.default, "g") if isinstance(self.default, float) else str(self.default)

    def parse(self, text: str) -> Any:
        """The value ``text`` stands for; ValueError says what was expected."""
        if self.kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError(f"must be one of {'/'.join(_TRUE + _FALSE)}, got {text!r}")
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"must be an integer, got {text!r}") from None
        if self.kind is float:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"must be a finite number, got {text!r}")
            return value
        return Path(text) if self.kind is Path else text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None."""
        opt = self.opt
        if opt.choices and value not in opt.choices:
            return f"must be one of {', '.join(opt.choices)}, got {value!r}"
        if self.kind in (int, float) and value is not None:
            if opt.minimum is not None and value < opt.minimum:
                return f"must be >= {opt.minimum:g}, got {value}"
            if opt.above is not None and value <= opt.above:
                return f"must be > {opt.above:g}, got {value}"
            if opt.maximum is not None and value > opt.maximum:
                return f"must be <= {opt.maximum:g}, got {value}"
        return None


def _fields(cls: type) -> Iterator[tuple[dataclasses.Field[Any], type, Opt]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        base, *extras = typing.get_args(hints[f.name])
        opts = [x for x in extras if isinstance(x, Opt)]
        if len(opts) != 1:
            raise TypeError(f"{cls.__name__}.{f.name} needs Annotated[type, Opt(...)]")
        if isinstance(base, types.UnionType):  # X | None
            (base,) = [a for a in typing.get_args(base) if a is not type(None)]
        yield f, base, opts[0]


def settings_of(cls: type, prefix: str) -> tuple[Setting, ...]:
    """Every field of ``cls`` and of its sections, in declaration order."""
    found: list[Setting] = []
    for f, kind, opt in _fields(cls):
        if dataclasses.is_dataclass(kind):
            for inner in settings_of(kind, prefix):
                flag = inner.flag if inner.opt.flag else f"--{f.name}-{inner.flag[2:]}"
                found.append(
                    dataclasses.replace(
                        inner,
                        path=(f.name, *inner.path),
                        flag=flag,
                        env=_env_name(prefix, flag),
                        section=opt.help,
                    )
                )
            continue
        flag = opt.flag or "--" + f.name.replace("_", "-")
        default = f.default
        found.append(Setting((f.name,), kind, opt, default, flag, _env_name(prefix, flag)))
    return tuple(found)


def _env_name(prefix: str, flag: str) -> str:
    return prefix + flag[2:].upper().replace("-", "_")


def resolve(
    settings: Sequence[Setting], overrides: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """The value of each setting that is not left at its default, by key: from
    ``overrides`` (by key; None is not given; a string is parsed), else from ``env``.
    SettingsError names every bad or missing value and where it came from: the flag (for
    an override) or the variable."""
    known = {s.key for s in settings}
    problems = [f"unknown setting {key!r}" for key in overrides if key not in known]
    values: dict[str, Any] = {}
    for s in settings:
        if overrides.get(s.key) is not None:
            value, source = overrides[s.key], s.flag
            if isinstance(value, str) and s.kind is not str:
                try:
                    value = s.parse(value)
                except ValueError as exc:
                    problems.append(f"{source} {exc}")
                    continue
        elif env.get(s.env):
            source = s.env
            try:
                value = s.parse(env[s.env])
            except ValueError as exc:
                problems.append(f"{source} {exc}")
                continue
        else:
            if s.required:
                problems.append(f"{s.flag} is required (or set {s.env})")
            continue
        problem = s.problem(value)
        if problem is not None:
            problems.append(f"{source} {problem}")
        values[s.key] = value
    if problems:
        raise SettingsError(problems)
    return values


def construct(cls: type[T], values: Mapping[str, Any], path: str = "") -> T:
    """``cls`` from resolved values; sections are built from theirs, the rest defaulted."""
    kwargs: dict[str, Any] = {}
    for f, kind, _opt in _fields(cls):
        key = path + f.name
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = construct(kind, values, key + ".")
        elif key in values:
            kwargs[f.name] = values[key]
    return cls(**kwargs)

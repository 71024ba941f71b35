"""The JSON the API server stores -> dataclass, from the fields and their wire metadata."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar, cast

from serinus_operator.api.durations import format_duration, parse_duration
from serinus_operator.api.errors import SpecError
from serinus_operator.api.wire.fields import (
    MISSING,
    Slot,
    Wire,
    is_enum,
    is_mapping,
    is_record,
    optional,
    refiner,
    sequence_item,
    slots,
)

T = TypeVar("T")
_ZEROS: dict[Any, object] = {str: "", int: 0, float: 0.0, bool: False}


class _Unreadable(Exception):
    """A stored value of the wrong type; a lenient read falls back to the default."""


def decode(cls: type[T], data: object, path: str, *, strict: bool) -> T:
    """Read dataclass ``cls`` from ``data`` (at ``path``, for errors).

    ``strict`` reads a spec someone wrote: an unknown key, a wrong type, a missing required
    field or a crossed bound is a ``SpecError`` that names the field and the fix. Otherwise
    it reads a status the operator wrote, perhaps an older version of it: unknown keys are
    ignored and an absent or mistyped value reads as its default (``wire(missing=...)``
    where the field has none); only what cannot be guessed, such as a time, is an error.
    """
    m = mapping(data, path)
    if strict:
        no_unknown(m, _key_tree(cls), path)
    return _read(cls, m, path, strict)


def _read(cls: type[T], m: Mapping[str, Any], path: str, strict: bool) -> T:
    values: dict[str, Any] = {}
    for slot in slots(cls):
        value = _field(slot, m, path, strict)
        if value is not MISSING:
            values[slot.name] = value
    obj = cast(Callable[..., T], cls)(**values)
    refine = refiner(cls)
    return obj if refine is None else refine(obj, m, path)


def mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected an object, got {type(value).__name__}")
    return value


def _field(slot: Slot, m: Mapping[str, Any], path: str, strict: bool) -> Any:
    if slot.meta.inline:  # its keys are the parent's, checked with them
        return _read(slot.hint, m, path, strict)
    where = f"{path}.{slot.key}"
    raw = _lookup(m, slot.parts, path)
    blank = raw == "" and not strict and is_enum(optional(slot.hint)[0])
    if raw is not None and not blank:
        try:
            return _bounded(slot.meta, _value(slot.hint, slot.meta, raw, where, strict), where)
        except _Unreadable:
            pass
    if strict and slot.required:
        raise SpecError(where, slot.meta.required or "required field is missing")
    if slot.default is not MISSING:
        return MISSING  # the dataclass fills it in
    if slot.meta.missing is not MISSING:
        return slot.meta.missing
    hint, nullable = optional(slot.hint)
    if nullable:
        return None
    if hint in _ZEROS:
        return _ZEROS[hint]
    if sequence_item(hint) is not None:
        return () if typing.get_origin(hint) is tuple else []
    if is_mapping(hint):
        return {}
    return _value(slot.hint, slot.meta, None, where, strict)  # its error says what is missing


def _lookup(m: Mapping[str, Any], parts: tuple[str, ...], path: str) -> Any:
    node = m
    for i, part in enumerate(parts[:-1]):
        sub = node.get(part)
        if sub is None:
            return None
        node = mapping(sub, ".".join((path, *parts[: i + 1])))
    return node.get(parts[-1])


def _value(hint: Any, meta: Wire, raw: object, where: str, strict: bool) -> Any:
    if meta.codec is not None:
        return meta.codec.decode(raw, where)
    tp, _ = optional(hint)
    if is_record(tp):
        return decode(tp, raw, where, strict=strict)
    item = sequence_item(tp)
    if item is not None:
        if not isinstance(raw, list | tuple):
            return _wrong(strict, where, f"expected a list, got {type(raw).__name__}")
        items = (_value(item, Wire(), x, f"{where}[{i}]", strict) for i, x in enumerate(raw))
        return tuple(items) if typing.get_origin(tp) is tuple else list(items)
    if is_mapping(tp):
        return _map(raw, where, strict)
    if is_enum(tp):
        return _enum(tp, raw, where)
    if tp is datetime:
        return _time(raw, where)
    if tp is timedelta:
        return parse_duration(raw, where)
    return _scalar(tp, meta, raw, where, strict)


def _scalar(tp: Any, meta: Wire, raw: object, where: str, strict: bool) -> Any:
    if tp is str:
        if not strict:
            return str(raw)
        if isinstance(raw, str) and raw:
            return raw
        return _wrong(strict, where, f"expected a non-empty string, got {raw!r}")
    if isinstance(raw, bool):
        return raw if tp is bool else _wrong(strict, where, _expected(tp, meta, raw))
    if (tp is int and isinstance(raw, int)) or (tp is float and isinstance(raw, int | float)):
        return tp(raw)
    if tp in (int, float, bool):
        return _wrong(strict, where, _expected(tp, meta, raw))
    raise TypeError(f"{where}: no wire form for {tp!r}; give the field a codec")


def _expected(tp: Any, meta: Wire, raw: object) -> str:
    if tp is bool:
        return f"expected true or false, got {raw!r}"
    if tp is float:
        return f"expected a number, got {raw!r}"
    span = "" if meta.minimum is None and meta.maximum is None else f" {_span(meta, str)}"
    return f"expected an integer{span}, got {raw!r}"


def _wrong(strict: bool, where: str, message: str) -> Any:
    if strict:
        raise SpecError(where, message)
    raise _Unreadable


def _map(raw: object, where: str, strict: bool) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return cast(
            dict[str, str], _wrong(strict, where, f"expected an object, got {type(raw).__name__}")
        )
    out: dict[str, str] = {}
    for key, value in raw.items():
        if strict and not isinstance(value, str):
            raise SpecError(f"{where}.{key}", "values must be strings")
        out[str(key)] = str(value)
    return out


def _enum(tp: type[Enum], raw: object, where: str) -> Enum:
    try:
        return tp(raw)
    except (ValueError, TypeError):
        choices = " | ".join(str(member.value) for member in tp)
        raise SpecError(where, f"must be one of {choices}, got {raw!r}") from None


def _time(raw: object, where: str) -> datetime:
    if not isinstance(raw, str):
        raise SpecError(where, f"expected an RFC 3339 time, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(where, f"expected an RFC 3339 time, got {raw!r}") from None
    if parsed.tzinfo is None:
        raise SpecError(where, "time without a timezone")
    return parsed.astimezone(UTC)


def _bounded(meta: Wire, value: Any, where: str) -> Any:
    lo, hi = meta.minimum, meta.maximum
    below = lo is not None and (value <= lo if meta.exclusive_minimum else value < lo)
    if not below and (hi is None or value <= hi):
        return value
    if isinstance(value, timedelta):
        message = f"must be {_span(meta, format_duration)}"
    else:
        message = f"must be {_span(meta, str)}, got {value}"
    raise SpecError(where, f"{message}, {meta.hint}" if meta.hint else message)


def _span(meta: Wire, show: Callable[[Any], str]) -> str:
    """'from 1 to 100', 'longer than 0s and at most 60s', 'at least 1s'."""
    lo, hi = meta.minimum, meta.maximum
    if lo is not None and hi is not None and not meta.exclusive_minimum:
        return f"from {show(lo)} to {show(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'longer than' if meta.exclusive_minimum else 'at least'} {show(lo)}")
    if hi is not None:
        parts.append(f"at most {show(hi)}")
    return " and ".join(parts)


def _key_tree(cls: type) -> dict[str, Any]:
    """The keys ``cls`` reads: ``{key: None}`` for a value, a dict for a dotted group."""
    tree: dict[str, Any] = {}
    for slot in slots(cls):
        if slot.meta.inline:
            tree.update(_key_tree(slot.hint))
            continue
        node = tree
        for part in slot.parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node.setdefault(slot.parts[-1], None)
    return tree


def no_unknown(m: Mapping[str, Any], tree: Mapping[str, Any], path: str) -> None:
    allowed = list(tree)
    for key, value in m.items():
        if key not in tree:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {allowed}"
            raise SpecError(f"{path}.{key}", f"unknown field{hint}")
        if isinstance(tree[key], dict) and isinstance(value, Mapping):
            no_unknown(value, tree[key], f"{path}.{key}")

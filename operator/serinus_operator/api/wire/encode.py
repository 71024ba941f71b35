"""Dataclass -> the JSON the API server stores, from the fields and their wire metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from serinus_operator.api.durations import format_duration
from serinus_operator.api.wire.fields import slots


def ts(value: datetime) -> str:
    """RFC 3339 in UTC with a 'Z', microseconds kept so that round trips are exact."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def encode(obj: object, *, nulls: bool = False) -> dict[str, Any]:
    """The wire form of dataclass ``obj``: camelCase keys, enums as values, RFC 3339 times,
    Go durations, records as objects, tuples as lists.

    A ``None`` is left out, or with ``nulls`` written as null: status is written with JSON
    merge patches (RFC 7386), where a key left out keeps its stored value, so a cleared
    field must be sent as null. Records inside lists are replaced whole and carry no nulls.
    """
    out: dict[str, Any] = {}
    for slot in slots(type(obj)):
        value = getattr(obj, slot.name)
        if slot.meta.inline:
            out.update(encode(value, nulls=nulls))
            continue
        codec = slot.meta.codec
        data = codec.encode(value) if codec is not None else value_of(value, nulls=nulls)
        if data is None and not nulls:
            continue
        if slot.meta.omit_empty and isinstance(data, str | list | dict) and not data:
            continue
        node = out
        for part in slot.parts[:-1]:
            node = node.setdefault(part, {})
        node[slot.parts[-1]] = data
    return out


def value_of(value: object, *, nulls: bool = False) -> Any:
    """The wire form of one value (of a field, or an item of a list)."""
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(value, nulls=nulls)
    if isinstance(value, tuple | list):
        return [value_of(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): value_of(v) for k, v in sorted(value.items())}
    raise TypeError(f"no wire form for {type(value).__name__}: give the field a codec")

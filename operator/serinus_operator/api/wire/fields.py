"""What the mapper knows about a dataclass: its fields, their types and their wire metadata.

A field's wire key is its name in camelCase. ``wire(...)`` metadata is added only where the
wire differs: another key (dotted for a nested object, ``"template.model"``), a record
flattened into its parent (``inline``), an encoding the type does not imply (``codec``),
bounds, the message for a missing required field, and how an absent key reads back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: No value: a key absent from the wire, a field without a default.
MISSING: Final[Any] = _Missing()


@dataclass(frozen=True)
class Codec(Generic[T]):
    """An encoding the field's type does not imply; ``json_type`` is its OpenAPI type."""

    encode: Callable[[T], object]
    decode: Callable[[object, str], T]
    json_type: str


@dataclass(frozen=True)
class Wire:
    """A field's wire metadata; ``wire(...)`` says what each entry means."""

    key: str | None = None
    inline: bool = False
    codec: Codec[Any] | None = None
    omit_empty: bool = False
    required: str | None = None
    missing: object = MISSING
    minimum: Any = None
    maximum: Any = None
    exclusive_minimum: bool = False
    hint: str = ""


def wire(
    *,
    key: str | None = None,
    inline: bool = False,
    codec: Codec[Any] | None = None,
    omit_empty: bool = False,
    required: str | None = None,
    missing: object = MISSING,
    minimum: Any = None,
    maximum: Any = None,
    exclusive_minimum: bool = False,
    hint: str = "",
) -> dict[str, Wire]:
    """Field metadata: ``field(default=..., metadata=wire(key="handledActions"))``.

    ``key``: the wire name, dotted for a key inside a nested object. ``inline``: a record
    whose keys sit in the parent's object. ``codec``: how to write and read the value.
    ``omit_empty``: leave ``""``, ``[]`` and ``{}`` out. ``required``: the message when the
    key is absent from a spec (the field is then required even with a default). ``missing``:
    what an absent key reads as from a stored status. ``minimum``/``maximum``: bounds, as
    in OpenAPI; ``hint`` ends the message when one is crossed.
    """
    meta = Wire(
        key=key,
        inline=inline,
        codec=codec,
        omit_empty=omit_empty,
        required=required,
        missing=missing,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        hint=hint,
    )
    return {"wire": meta}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class Slot:
    """One dataclass field as the wire sees it."""

    name: str
    key: str  # dotted when nested
    hint: Any  # the resolved type
    meta: Wire
    default: Any  # MISSING when the field has none

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def required(self) -> bool:
        return self.default is MISSING or self.meta.required is not None


_SLOTS: dict[type, tuple[Slot, ...]] = {}


def slots(cls: type) -> tuple[Slot, ...]:
    """The fields of dataclass ``cls``, in order, with their resolved types."""
    if cls not in _SLOTS:
        _SLOTS[cls] = _slots(cls)
    return _SLOTS[cls]


def _slots(cls: type) -> tuple[Slot, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("wire", Wire())
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif default is dataclasses.MISSING:
            default = MISSING
        optional(hints[f.name])  # an unsupported union fails here, at first use
        out.append(Slot(f.name, meta.key or camel(f.name), hints[f.name], meta, default))
    return tuple(out)


def optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union {hint!r}: only X | None maps to the wire")
    return hint, False


def sequence_item(hint: Any) -> Any | None:
    """The item type of ``tuple[X, ...]`` or ``list[X]``, else ``None``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin is list:
        return args[0]
    return None


def is_mapping(hint: Any) -> bool:
    """``Mapping[str, str]`` or ``dict[str, str]``, the only maps the API has."""
    origin = typing.get_origin(hint)
    return origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping))


def is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Enum)


def is_record(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


Refiner = Callable[[T, Mapping[str, Any], str], T]
_REFINERS: dict[type, Refiner[Any]] = {}


def refines(cls: type[T]) -> Callable[[Refiner[T]], Refiner[T]]:
    """Register the rules a field's type cannot say for ``cls``, run after each decode.

    A refiner gets the decoded object, the mapping it came from (to tell an absent key from
    a null one) and its path; it raises ``SpecError`` or returns the object, perhaps changed.
    """

    def register(refine: Refiner[T]) -> Refiner[T]:
        _REFINERS[cls] = refine
        return refine

    return register


def refiner(cls: type) -> Refiner[Any] | None:
    return _REFINERS.get(cls)

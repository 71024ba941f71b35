"""Spec values whose wire form their Python type does not imply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from serinus_operator.api.errors import SpecError
from serinus_operator.api.wire import Codec, mapping, no_unknown


def _read_env(raw: object, path: str) -> Mapping[str, str]:
    """``[{name, value}]``, as in a container spec, into a map; a name set twice is an error."""
    if not isinstance(raw, list | tuple):
        raise SpecError(path, f"expected a list, got {type(raw).__name__}")
    env: dict[str, str] = {}
    for i, item in enumerate(raw):
        at = f"{path}[{i}]"
        entry = mapping(item, at)
        no_unknown(entry, dict.fromkeys(("name", "value")), at)
        name = entry.get("name")
        if name is None:
            raise SpecError(f"{at}.name", "required field is missing")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{at}.name", f"expected a non-empty string, got {name!r}")
        if name in env:
            raise SpecError(f"{at}.name", f"{name!r} is set twice; keep one entry")
        value = entry.get("value", "")
        if not isinstance(value, str):
            raise SpecError(f"{at}.value", f"expected a string (quote numbers), got {value!r}")
        env[name] = value
    return env


def _write_env(env: Mapping[str, str]) -> object:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _read_quantities(raw: object, path: str) -> Mapping[str, str]:
    """Kubernetes quantities: an integer or a string, as the CRD's int-or-string takes them."""
    out: dict[str, str] = {}
    for name, value in mapping(raw, path).items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SpecError(f"{path}.{name}", f"expected a quantity like '500m', got {value!r}")
        if isinstance(value, float):
            raise SpecError(
                f"{path}.{name}",
                f"a fractional quantity must be a string: write '{value}' or '500m', not {value!r}",
            )
        out[str(name)] = str(value)
    return out


def _write_quantities(quantities: Mapping[str, str]) -> object:
    return dict(sorted(quantities.items()))


def _read_present(raw: object, path: str) -> bool:
    mapping(raw, path)
    return True


ENV: Final = Codec(_write_env, _read_env, "array")
QUANTITIES: Final = Codec(_write_quantities, _read_quantities, "object")
#: An object whose presence is the value (a canary step's ``pause: {}``).
PRESENT: Final = Codec(lambda on: {} if on else None, _read_present, "object")

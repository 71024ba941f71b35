"""Go-style durations ("500ms", "30s", "1h30m"), as the CRD's patterns and CEL rules take them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from serinus_operator.api.errors import SpecError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, field: str) -> timedelta:
    """Parse a Go-style duration ("500ms", "30s", "2m", "1h30m"); "0" means zero."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise SpecError(field, f"expected a duration string such as '30s', got {value!r}")
    text = value.strip()
    if text == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise SpecError(
            field,
            f"invalid duration {value!r}: write a number and a unit (ms, s, m, h), "
            "e.g. '30s', '2m' or '1h30m'",
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a duration the way users write them ("1h30m", "45s", "250ms")."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)

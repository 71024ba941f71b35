"""The JSON merge patch (RFC 7386) that turns the stored status into the new one. Pure.

The operator writes status with merge patches (kopf's patches are merge patches; the
emulated API in the tests has no PUT). A merge patch leaves every key it does not mention
alone, so writing ``to_dict()`` as is would keep keys that disappeared deeper down — a
revision template's ``sha256`` after switching to a revision without one, say. This diff
names every such key with ``null``, at every depth; lists are replaced whole, as RFC 7386
does anyway.
"""

from __future__ import annotations

from typing import Any


def merge_diff(stored: Any, new: Any) -> Any:
    """The patch ``p`` with ``apply(stored, p) == new`` (``new`` holding no nulls)."""
    if not isinstance(stored, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in stored.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if value is None:
            if key in stored:
                patch[key] = None
            continue
        if key not in stored:
            patch[key] = _without_nulls(value)
        elif stored[key] != value:
            patch[key] = merge_diff(stored[key], value)
    return patch


def apply(stored: Any, patch: Any) -> Any:
    """RFC 7386: what an API server stores after a merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(stored) if isinstance(stored, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value

"""Comparing a shadow's prediction with the primary's for the same request. Pure.

Discrete outputs (class labels: integers, booleans, strings) must be exactly equal; float
outputs (scores) agree within ``abs + rel * |primary|``. Which outputs decide agreement is
the table's ``comparison.outputs``; by default the discrete ones when the model has any (a
retrained classifier's probabilities always move a little; its labels should not), else all.
The largest absolute float difference is reported either way, for the histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from serinus_serving.router.table import Comparison

_DISCRETE = {
    "BOOL", "BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verdict:
    agree: bool
    #: Largest absolute difference over float outputs; None when there are none.
    difference: float | None
    #: Why they disagree (first output that did), empty when they agree.
    reason: str = ""


class Incomparable(ValueError):
    """The two responses cannot be compared (not JSON, different outputs or shapes)."""


@dataclass(frozen=True, slots=True)
class _Output:
    name: str
    discrete: bool
    shape: tuple[int, ...]
    values: Any


def _v2_outputs(payload: Any) -> dict[str, _Output]:
    outputs = payload.get("outputs") if isinstance(payload, dict) else None
    if not isinstance(outputs, list):
        raise Incomparable("response has no 'outputs' list")
    found = {}
    for out in outputs:
        if not isinstance(out, dict) or "data" not in out:
            raise Incomparable("an output has no JSON 'data' (binary outputs are not compared)")
        found[str(out.get("name"))] = _Output(
            name=str(out.get("name")),
            discrete=out.get("datatype") in _DISCRETE,
            shape=tuple(out.get("shape") or ()),
            values=out["data"],
        )
    return found


def _v1_outputs(payload: Any) -> dict[str, _Output]:
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        raise Incomparable("response has no 'predictions' list")
    if predictions and all(isinstance(p, dict) for p in predictions):
        keys = list(predictions[0])
        columns = {k: [p.get(k) for p in predictions] for k in keys}
    else:
        columns = {"predictions": predictions}
    result = {}
    for name, column in columns.items():
        array = np.asarray(column)
        result[name] = _Output(
            name=name,
            discrete=array.dtype.kind in "biuUSO",
            shape=array.shape,
            values=column,
        )
    return result


def outputs_of(body: bytes) -> dict[str, _Output]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Incomparable(f"response is not JSON: {exc}") from None
    if isinstance(payload, dict) and "predictions" in payload:
        return _v1_outputs(payload)
    return _v2_outputs(payload)


def compare(primary: bytes, shadow: bytes, rules: Comparison) -> Verdict:
    """Agreement of two successful responses to the same request."""
    ours, theirs = outputs_of(primary), outputs_of(shadow)
    if ours.keys() != theirs.keys():
        raise Incomparable(f"outputs differ: {sorted(ours)} vs {sorted(theirs)}")
    deciding = set(rules.outputs) or ({n for n, o in ours.items() if o.discrete} or set(ours))
    missing = deciding - ours.keys()
    if missing:
        raise Incomparable(f"comparison.outputs {sorted(missing)} are not in the response")
    difference: float | None = None
    reason = ""
    for name, out in ours.items():
        other = theirs[name]
        if out.shape != other.shape:
            raise Incomparable(f"output {name!r} has shape {out.shape} vs {other.shape}")
        if out.discrete or other.discrete:
            equal = out.values == other.values
        else:
            a = np.asarray(out.values, dtype=np.float64)
            b = np.asarray(other.values, dtype=np.float64)
            if a.shape != b.shape:
                raise Incomparable(f"output {name!r} differs in size")
            gap = float(np.max(np.abs(a - b))) if a.size else 0.0
            if math.isnan(gap):
                gap = math.inf
            difference = gap if difference is None else max(difference, gap)
            equal = bool(
                np.all(np.abs(a - b) <= rules.abs_tolerance + rules.rel_tolerance * np.abs(a))
            )
        if not equal and name in deciding and not reason:
            reason = f"output {name!r} differs"
    return Verdict(agree=not reason, difference=difference, reason=reason)

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
from typing import Any, NamedTuple

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


class _Output(NamedTuple):  # a NamedTuple: several times cheaper to build than a dataclass
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
        array = _numpy().asarray(column)
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


def _numpy() -> Any:
    """numpy, imported on first need: most responses (flat OIP v2 outputs) never need it,
    and the shadow worker stays about 20 MB smaller without it."""
    import numpy

    return numpy


def _flat_numbers(values: Any) -> bool:
    return isinstance(values, list) and all(type(v) is float or type(v) is int for v in values)


def _float_gap(a_values: Any, b_values: Any, rules: Comparison, *, name: str) -> tuple[float, bool]:
    """Largest absolute difference (NaN counts as infinite) and whether every element is
    within ``abs + rel * |primary|``.

    Model outputs are mostly a few scores, which plain Python compares several times faster
    than building numpy arrays; this runs on the router's event loop for every shadow copy.
    Nested or non-numeric data goes through numpy, with the same result.
    """
    tolerance, relative = rules.abs_tolerance, rules.rel_tolerance
    if _flat_numbers(a_values) and _flat_numbers(b_values):
        if len(a_values) != len(b_values):
            raise Incomparable(f"output {name!r} differs in size")
        gap = 0.0
        equal = True
        for x, y in zip(a_values, b_values, strict=True):
            fx, fy = float(x), float(y)
            d = abs(fx - fy)
            if d != d:  # NaN
                gap, equal = math.inf, False
                continue
            if d > gap:
                gap = d
            if not d <= tolerance + relative * abs(fx):
                equal = False
        return gap, equal
    np = _numpy()
    try:
        a = np.asarray(a_values, dtype=np.float64)
        b = np.asarray(b_values, dtype=np.float64)
    except (TypeError, ValueError):
        raise Incomparable(f"output {name!r} is not numeric") from None
    if a.shape != b.shape:
        raise Incomparable(f"output {name!r} differs in size")
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, counted as an infinite gap
        diff = np.abs(a - b)
        gap = float(np.max(diff)) if a.size else 0.0
        equal = bool(np.all(diff <= tolerance + relative * np.abs(a)))
    return (math.inf if math.isnan(gap) else gap), equal


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
            gap, equal = _float_gap(out.values, other.values, rules, name=name)
            difference = gap if difference is None else max(difference, gap)
        if not equal and name in deciding and not reason:
            reason = f"output {name!r} differs"
    return Verdict(agree=not reason, difference=difference, reason=reason)

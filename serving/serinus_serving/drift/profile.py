"""The reference profile: a small, versioned JSON summary of a model's training inputs and
of its outputs on them, which the server compares live traffic with (docs/drift.md).

Parsing checks every field and names the one that is wrong, since a profile is written by
one tool and read, perhaps months later, by a server that must not half-trust it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from serinus_serving.drift.columns import KINDS, Kind, Selector
from serinus_serving.drift.stats import FloatArray

SCHEMA_VERSION = 1
KIND = "SerinusProfile"
#: Proportions written with 8 decimals may add up to 1 only within this.
_SUM_TOLERANCE = 1e-4
_SHA256 = re.compile(r"[0-9a-f]{64}")
Task = Literal["classification", "regression"]


class ProfileError(ValueError):
    """A profile that cannot be read or used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class NumericReference:
    name: str
    selector: Selector
    count: int
    missing: int
    #: Internal bin edges (strictly increasing) and the share of values in each of the
    #: ``len(edges) + 1`` right-closed bins: what PSI compares.
    edges: FloatArray
    proportions: FloatArray
    #: Quantile points (strictly increasing, first = min, last = max) and the exact share of
    #: training values at or below each: what the KS statistic compares.
    points: FloatArray
    cdf: FloatArray
    mean: float
    std: float
    kind: Kind = field(default="numeric", init=False)


@dataclass(frozen=True, slots=True)
class CategoricalReference:
    name: str
    selector: Selector
    count: int
    missing: int
    values: tuple[Any, ...]
    #: One share per value, then the share of all other values (the last entry).
    proportions: FloatArray
    kind: Kind = field(default="categorical", init=False)


Reference = NumericReference | CategoricalReference


@dataclass(frozen=True, slots=True)
class Target:
    """The output that feedback labels are compared with."""

    output: str
    task: Task


@dataclass(frozen=True, slots=True)
class Profile:
    model_sha256: str
    features: tuple[Reference, ...]
    outputs: tuple[Reference, ...]
    target: Target | None = None
    rows: int = 0
    source: str = ""
    created_at: str = ""
    model_inputs: tuple[dict[str, Any], ...] = ()
    model_outputs: tuple[dict[str, Any], ...] = ()


# ---------------------------------------------------------------------------- writing
def _floats(values: FloatArray) -> list[float]:
    return [float(v) for v in values]


def _column_json(ref: Reference, tensor_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name, tensor_key: ref.selector.tensor}
    if ref.selector.index is not None:
        out["index"] = ref.selector.index
    if ref.selector.reduce is not None:
        out["reduce"] = ref.selector.reduce
    out |= {"kind": ref.kind, "count": ref.count, "missing": ref.missing}
    if isinstance(ref, NumericReference):
        out |= {
            "mean": ref.mean,
            "std": ref.std,
            "bins": {"edges": _floats(ref.edges), "proportions": _rounded(ref.proportions)},
            "quantiles": {"points": _floats(ref.points), "cdf": _rounded(ref.cdf)},
        }
    else:
        out["categories"] = [
            {"value": v, "proportion": p}
            for v, p in zip(ref.values, _rounded(ref.proportions[:-1]), strict=True)
        ]
        out["otherProportion"] = _rounded(ref.proportions[-1:])[0]
    return out


def _rounded(values: FloatArray) -> list[float]:
    return [round(float(v), 8) for v in values]


def dump_profile(profile: Profile) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "kind": KIND,
        "createdAt": profile.created_at,
        "model": {
            "sha256": profile.model_sha256,
            "inputs": list(profile.model_inputs),
            "outputs": list(profile.model_outputs),
        },
        "data": {"source": profile.source, "rows": profile.rows},
        "features": [_column_json(ref, "input") for ref in profile.features],
        "outputs": [_column_json(ref, "output") for ref in profile.outputs],
    }
    if profile.target is not None:
        doc["target"] = {"output": profile.target.output, "task": profile.target.task}
    return _layout(doc)


def _layout(doc: Mapping[str, Any]) -> bytes:
    """JSON with one key per line and one column per line: diffable, yet small."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"    {orjson.dumps(v).decode()}" for v in value)
            lines.append(f"  {orjson.dumps(key).decode()}: [\n{items}\n  ]")
        else:
            lines.append(f"  {orjson.dumps(key).decode()}: {orjson.dumps(value).decode()}")
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


# ---------------------------------------------------------------------------- reading
class _Reader:
    """Typed access to a JSON object that names the field in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ProfileError:
        return ProfileError(f"{self.source}: {where}: {message}")

    def obj(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, got {_type(value)}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, got {_type(value)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"must be a non-empty string, got {_type(value)}")
        return value

    def integer(self, value: Any, where: str, *, minimum: int = 0) -> int:
        if type(value) is not int or value < minimum:
            raise self.fail(where, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, where: str) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.fail(where, f"must be a finite number, got {value!r}")
        return float(value)

    def numbers(self, value: Any, where: str, *, minimum: int = 0) -> FloatArray:
        items = self.items(value, where)
        if len(items) < minimum:
            raise self.fail(where, f"needs at least {minimum} values, has {len(items)}")
        return np.array(
            [self.number(v, f"{where}[{i}]") for i, v in enumerate(items)], dtype=np.float64
        )

    def shares(self, value: Any, where: str, *, minimum: int = 1) -> FloatArray:
        shares = self.numbers(value, where, minimum=minimum)
        if np.any(shares < 0) or np.any(shares > 1):
            raise self.fail(where, "every proportion must lie in [0, 1]")
        return shares


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _increasing(r: _Reader, values: FloatArray, where: str) -> None:
    if values.size > 1 and not np.all(np.diff(values) > 0):
        raise r.fail(where, "must be strictly increasing")


def _sums_to_one(r: _Reader, shares: FloatArray, where: str) -> None:
    if abs(float(shares.sum()) - 1.0) > _SUM_TOLERANCE:
        raise r.fail(where, f"proportions add up to {shares.sum():.6f}, not 1")


def _selector(r: _Reader, doc: Mapping[str, Any], where: str, tensor_key: str) -> Selector:
    tensor = r.text(doc.get(tensor_key), f"{where}.{tensor_key}")
    index = doc.get("index")
    if index is not None:
        index = r.integer(index, f"{where}.index")
    reduce = doc.get("reduce")
    if reduce is not None and reduce != "mean":
        raise r.fail(f"{where}.reduce", f"must be 'mean' or absent, got {reduce!r}")
    if reduce is not None and index is not None:
        raise r.fail(where, "'index' and 'reduce' exclude each other")
    return Selector(tensor, index=index, reduce=reduce)


def _numeric(r: _Reader, doc: Mapping[str, Any], where: str, head: dict[str, Any]) -> Reference:
    bins = r.obj(doc.get("bins"), f"{where}.bins")
    edges = r.numbers(bins.get("edges"), f"{where}.bins.edges")
    _increasing(r, edges, f"{where}.bins.edges")
    proportions = r.shares(bins.get("proportions"), f"{where}.bins.proportions")
    if proportions.size != edges.size + 1:
        raise r.fail(
            f"{where}.bins",
            f"{edges.size} edges make {edges.size + 1} bins, but there are "
            f"{proportions.size} proportions",
        )
    _sums_to_one(r, proportions, f"{where}.bins.proportions")
    quantiles = r.obj(doc.get("quantiles"), f"{where}.quantiles")
    points = r.numbers(quantiles.get("points"), f"{where}.quantiles.points", minimum=1)
    _increasing(r, points, f"{where}.quantiles.points")
    cdf = r.shares(quantiles.get("cdf"), f"{where}.quantiles.cdf")
    if cdf.size != points.size:
        raise r.fail(f"{where}.quantiles", f"{points.size} points but {cdf.size} cdf values")
    if cdf.size > 1 and np.any(np.diff(cdf) < 0):
        raise r.fail(f"{where}.quantiles.cdf", "must not decrease")
    return NumericReference(
        **head,
        edges=edges,
        proportions=proportions,
        points=points,
        cdf=cdf,
        mean=r.number(doc.get("mean"), f"{where}.mean"),
        std=r.number(doc.get("std"), f"{where}.std"),
    )


def _categorical(r: _Reader, doc: Mapping[str, Any], where: str, head: dict[str, Any]) -> Reference:
    items = r.items(doc.get("categories"), f"{where}.categories")
    values: list[Any] = []
    shares: list[float] = []
    for i, item in enumerate(items):
        entry = r.obj(item, f"{where}.categories[{i}]")
        value = entry.get("value")
        if not isinstance(value, str | int | float | bool):
            raise r.fail(
                f"{where}.categories[{i}].value",
                f"must be a string, number or boolean, got {_type(value)}",
            )
        if value in values:
            raise r.fail(f"{where}.categories[{i}].value", f"{value!r} is listed twice")
        values.append(value)
        shares.append(r.number(entry.get("proportion"), f"{where}.categories[{i}].proportion"))
    other = r.number(doc.get("otherProportion", 0.0), f"{where}.otherProportion")
    proportions = np.array([*shares, other], dtype=np.float64)
    if np.any(proportions < 0) or np.any(proportions > 1):
        raise r.fail(f"{where}.categories", "every proportion must lie in [0, 1]")
    _sums_to_one(r, proportions, f"{where}.categories")
    return CategoricalReference(**head, values=tuple(values), proportions=proportions)


def _reference(r: _Reader, item: Any, where: str, tensor_key: str) -> Reference:
    doc = r.obj(item, where)
    name = r.text(doc.get("name"), f"{where}.name")
    where = f"{where} ({name!r})"
    kind = doc.get("kind")
    if kind not in KINDS:
        raise r.fail(f"{where}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    head: dict[str, Any] = {
        "name": name,
        "selector": _selector(r, doc, where, tensor_key),
        "count": r.integer(doc.get("count"), f"{where}.count", minimum=1),
        "missing": r.integer(doc.get("missing", 0), f"{where}.missing"),
    }
    if kind == "numeric":
        return _numeric(r, doc, where, head)
    return _categorical(r, doc, where, head)


def _references(r: _Reader, value: Any, where: str, tensor_key: str) -> tuple[Reference, ...]:
    refs = tuple(
        _reference(r, item, f"{where}[{i}]", tensor_key)
        for i, item in enumerate(r.items(value, where))
    )
    names = [ref.name for ref in refs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise r.fail(where, f"names {duplicated} appear more than once")
    return refs


def parse_profile(doc: Any, *, source: str = "profile") -> Profile:
    """Validate a decoded profile document."""
    r = _Reader(source)
    top = r.obj(doc, "document")
    version = top.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise r.fail(
            "schemaVersion",
            f"{version!r} is not supported; this serinus reads schemaVersion {SCHEMA_VERSION}"
            " (rebuild the profile with this version's `serinus profile`)",
        )
    if top.get("kind", KIND) != KIND:
        raise r.fail("kind", f"must be {KIND!r}, got {top.get('kind')!r}")
    model = r.obj(top.get("model"), "model")
    sha256 = r.text(model.get("sha256"), "model.sha256").lower()
    if not _SHA256.fullmatch(sha256):
        raise r.fail("model.sha256", "must be 64 hexadecimal digits")
    features = _references(r, top.get("features"), "features", "input")
    if not features:
        raise r.fail("features", "must list at least one feature")
    outputs = _references(r, top.get("outputs", []), "outputs", "output")
    target = None
    if top.get("target") is not None:
        t = r.obj(top["target"], "target")
        task = t.get("task")
        if task not in ("classification", "regression"):
            raise r.fail("target.task", f"must be classification or regression, got {task!r}")
        target = Target(r.text(t.get("output"), "target.output"), task)
    data = top.get("data") or {}
    data = r.obj(data, "data")
    return Profile(
        model_sha256=sha256,
        features=features,
        outputs=outputs,
        target=target,
        rows=data.get("rows", 0) if type(data.get("rows")) is int else 0,
        source=str(data.get("source", "")),
        created_at=str(top.get("createdAt", "")),
        model_inputs=tuple(model.get("inputs") or ()),
        model_outputs=tuple(model.get("outputs") or ()),
    )


def read_profile(path: Path, *, source: str | None = None) -> Profile:
    """Read and validate a profile file."""
    name = source or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"{name}: not valid JSON: {exc}") from None
    return parse_profile(doc, source=name)


def references_by_tensor(refs: Sequence[Reference]) -> dict[str, list[Reference]]:
    """References grouped by the tensor they read, in first-seen order."""
    groups: dict[str, list[Reference]] = {}
    for ref in refs:
        groups.setdefault(ref.selector.tensor, []).append(ref)
    return groups

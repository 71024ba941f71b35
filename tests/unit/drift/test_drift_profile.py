"""The profile format: round trip, and a clear error for every kind of bad field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from serinus_serving.drift.profile import (
    ProfileError,
    dump_profile,
    parse_profile,
    read_profile,
)
from unit.drift.kit import tabular_profile

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(dump_profile(tabular_profile()))
    return doc


def test_a_dumped_profile_reads_back_the_same() -> None:
    profile = tabular_profile()
    again = parse_profile(orjson.loads(dump_profile(profile)))
    assert again.model_sha256 == profile.model_sha256
    assert again.target == profile.target
    assert [r.name for r in again.features] == ["a", "b", "c"]
    for before, after in zip(
        profile.features + profile.outputs, again.features + again.outputs, strict=False
    ):
        assert before.selector == after.selector
        assert before.kind == after.kind
        assert before.count == after.count
        assert np.allclose(before.proportions, after.proportions, atol=1e-8)
    a = again.features[0]
    assert a.kind == "numeric"
    assert a.edges.size == 9 and a.proportions.size == 10  # type: ignore[union-attr]
    assert a.points[0] < a.points[-1] and a.cdf[-1] == 1  # type: ignore[union-attr]
    c = again.features[2]
    assert set(c.values) == {0, 1, 2, 3}  # type: ignore[union-attr]


def test_the_file_is_small_and_one_column_per_line(tmp_path: Path) -> None:
    text = dump_profile(tabular_profile()).decode()
    assert len(text) < 10_000
    assert '  "features": [\n    {"name":"a"' in text
    path = tmp_path / "p.json"
    path.write_text(text)
    assert read_profile(path).rows == 20_000


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "schemaVersion",
            2,
            "schemaVersion: 2 is not supported; this serinus reads schemaVersion 1",
        ),
        ("schemaVersion", _DELETE, "schemaVersion: None is not supported"),
        ("kind", "Other", "kind: must be 'SerinusProfile'"),
        ("model.sha256", "abc", "model.sha256: must be 64 hexadecimal digits"),
        ("model", [], "model: must be an object, got list"),
        ("features", [], "features: must list at least one feature"),
        (
            "features.0.kind",
            "ordinal",
            "features[0] ('a').kind: must be one of numeric, categorical",
        ),
        ("features.0.input", "", "features[0] ('a').input: must be a non-empty string"),
        ("features.0.index", -1, "features[0] ('a').index: must be an integer >= 0"),
        ("features.0.reduce", "max", "features[0] ('a').reduce: must be 'mean' or absent"),
        ("features.0.reduce", "mean", "features[0] ('a'): 'index' and 'reduce' exclude each other"),
        ("features.0.count", 0, "features[0] ('a').count: must be an integer >= 1"),
        (
            "features.0.bins.edges.1",
            -100.0,
            "features[0] ('a').bins.edges: must be strictly increasing",
        ),
        (
            "features.0.bins.edges.1",
            "x",
            "features[0] ('a').bins.edges[1]: must be a finite number",
        ),
        ("features.0.bins.proportions.0", 0.5, "bins.proportions: proportions add up to 1.4"),
        ("features.0.bins.proportions.0", 1.5, "every proportion must lie in [0, 1]"),
        ("features.0.bins.proportions", [1.0], "9 edges make 10 bins, but there are 1 proportions"),
        ("features.0.quantiles.cdf", [0.5], "points but 1 cdf values"),
        ("features.0.quantiles.points", [], "quantiles.points: needs at least 1 values"),
        ("features.0.mean", None, "features[0] ('a').mean: must be a finite number, got None"),
        ("features.1.name", "a", "features: names ['a'] appear more than once"),
        (
            "features.2.categories",
            [{"value": "x", "proportion": 0.5}, {"value": "x", "proportion": 0.5}],
            "categories[1].value: 'x' is listed twice",
        ),
        ("features.2.categories.1.value", None, "categories[1].value: must be a string, number"),
        ("features.2.otherProportion", 0.5, "categories: proportions add up to 1.5"),
        ("outputs", {}, "outputs: must be a list, got dict"),
        ("target.task", "ranking", "target.task: must be classification or regression"),
    ],
)
def test_every_bad_field_is_named(
    document: dict[str, Any], path: str, value: Any, message: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(_set(document, path, value), source="p.json")
    assert str(caught.value).startswith("p.json: ")
    assert message in str(caught.value)


def test_a_document_that_is_not_an_object() -> None:
    with pytest.raises(ProfileError, match="document: must be an object"):
        parse_profile([1, 2])


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        read_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match=r"bad\.json: not valid JSON"):
        read_profile(bad)

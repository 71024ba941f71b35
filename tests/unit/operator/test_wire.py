"""The one mapper between the API's dataclasses and their JSON (``serinus_operator.api.wire``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pytest
from hypothesis import given

from serinus_operator import api
from serinus_operator.api import SpecError
from serinus_operator.api.wire import decode, encode, wire
from unit.operator.test_status import MODELS, SERVINGS

pytestmark = pytest.mark.unit


class Color(StrEnum):
    RED = "Red"
    BLUE = "Blue"


@dataclass(frozen=True)
class Inner:
    some_name: str
    when: datetime | None = None


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(metadata=wire(inline=True))
    color: Color = field(metadata=wire(missing=Color.BLUE))
    count: int = field(default=1, metadata=wire(minimum=1, maximum=9))
    wait: timedelta = field(default=timedelta(seconds=5), metadata=wire(key="timing.wait"))
    notes: str = field(default="", metadata=wire(omit_empty=True))
    items: tuple[Inner, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, metadata=wire(key="meta.labels"))


AT = datetime(2025, 1, 1, tzinfo=UTC)


def test_keys_are_camel_case_and_metadata_says_the_rest() -> None:
    value = Outer(Inner("a", AT), Color.RED, items=(Inner("b"),), labels={"z": "1", "a": "2"})
    written = {
        "someName": "a",
        "when": "2025-01-01T00:00:00Z",
        "color": "Red",
        "count": 1,
        "timing": {"wait": "5s"},
        "items": [{"someName": "b"}],  # inside a list, an absent value is left out
        "meta": {"labels": {"a": "2", "z": "1"}},
    }
    assert encode(value) | {"when": "2025-01-01T00:00:00Z"} == written
    assert encode(value, nulls=True)["items"] == [{"someName": "b"}]
    assert encode(Outer(Inner("a"), Color.RED), nulls=True)["when"] is None
    assert decode(Outer, written, "o", strict=True) == value
    assert decode(Outer, written, "o", strict=False) == value


@pytest.mark.parametrize(
    ("data", "field_", "message"),
    [
        ({"someName": "a", "colour": "Red"}, "o.colour", "did you mean 'color'?"),
        ({"someName": "a", "color": "Red", "timing": {"wiat": "1s"}}, "o.timing.wiat", "'wait'"),
        ({"color": "Red"}, "o.someName", "required field is missing"),
        ({"someName": "a", "color": "Green"}, "o.color", "one of Red | Blue, got 'Green'"),
        ({"someName": "a", "color": "Red", "count": 10}, "o.count", "from 1 to 9, got 10"),
        ({"someName": "a", "color": "Red", "count": "2"}, "o.count", "integer from 1 to 9"),
        ({"someName": "", "color": "Red"}, "o.someName", "non-empty string"),
        ({"someName": "a", "color": "Red", "items": {}}, "o.items", "expected a list"),
        ({"someName": "a", "color": "Red", "items": [1]}, "o.items[0]", "expected an object"),
        ({"someName": "a", "color": "Red", "timing": 1}, "o.timing", "expected an object"),
        ({"someName": "a", "color": "Red", "meta": {"labels": {"k": 1}}}, "o.meta.labels.k", ""),
    ],
)
def test_a_strict_read_names_the_field_and_the_fix(
    data: dict[str, object], field_: str, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        decode(Outer, data, "o", strict=True)
    assert (err.value.field, message in err.value.message) == (field_, True)


def test_a_strict_read_takes_null_as_absent_as_the_api_server_does() -> None:
    assert decode(Outer, {"someName": "a", "color": "Red", "count": None}, "o", strict=True) == (
        Outer(Inner("a"), Color.RED)
    )


def test_a_lenient_read_falls_back_to_defaults_and_ignores_unknown_keys() -> None:
    data = {"someName": 5, "color": "", "count": "x", "items": "y", "extra": 1}
    assert decode(Outer, data, "o", strict=False) == Outer(Inner("5"), Color.BLUE)
    assert decode(Inner, {}, "o", strict=False) == Inner("")
    with pytest.raises(SpecError, match="RFC 3339"):
        decode(Inner, {"when": "soon"}, "o", strict=False)


def test_a_union_other_than_optional_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd:
        value: int | str

    with pytest.raises(TypeError, match=r"only X \| None"):
        encode(Odd(1))


def test_bounds_on_durations_read_as_people_write_them() -> None:
    with pytest.raises(SpecError, match=r"longer than 0s and at most 1m$"):
        api.parse_webhooks([{"name": "a", "type": "Rollback", "url": "http://h", "timeout": "2m"}])
    with pytest.raises(SpecError, match=r"longer than 0s, e.g. '10m'$"):
        api.parse_spec(
            {
                "model": {"uri": "/m", "version": "1"},
                "strategy": {"canary": {"steps": [{"setWeight": 5}]}},
                "progressDeadline": "0s",
            }
        )


@given(MODELS, SERVINGS)
def test_the_spec_parts_in_a_status_round_trip(
    model: api.ModelSpec, serving: api.ServingSpec
) -> None:
    assert api.parse_model(model.to_dict()) == model
    assert api.parse_serving(serving.to_dict()) == serving

"""The status merge patch: applying it to the stored status gives the new one exactly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serinus_operator.rollout.patch import apply, merge_diff
from unit.operator.kit import merge_patch

pytestmark = pytest.mark.unit

KEYS = st.sampled_from(["a", "b", "c", "template", "sha256"])
LEAVES = st.one_of(st.integers(), st.text(max_size=3), st.booleans())
JSON = st.recursive(
    LEAVES | st.lists(LEAVES, max_size=3),
    lambda inner: st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=6,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored=OBJECTS, new=OBJECTS)
def test_applying_the_diff_gives_the_new_object(
    stored: dict[str, Any], new: dict[str, Any]
) -> None:
    patch = merge_diff(stored, new)
    assert apply(stored, patch) == new
    assert merge_patch(stored, patch) == new  # the test kit's independent RFC 7386


def test_a_key_gone_deep_inside_is_nulled() -> None:
    stored = {"stable": {"template": {"model": {"uri": "u1", "sha256": "aa"}}}}
    new = {"stable": {"template": {"model": {"uri": "u2"}}}}
    assert merge_diff(stored, new) == {
        "stable": {"template": {"model": {"uri": "u2", "sha256": None}}}
    }


def test_explicit_nulls_in_the_new_object_delete_and_are_not_stored() -> None:
    assert merge_diff({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"c": None, "d": None}}) == {
        "a": None,
        "b": {"c": None},
    }

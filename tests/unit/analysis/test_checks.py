"""Built-in check templates and the verdict function, including every degenerate answer."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_operator.analysis.evaluate import QueryResult, verdict_of
from serinus_operator.analysis.run import resolve, variables_for
from serinus_operator.analysis.templates import (
    BUILTIN,
    TemplateError,
    prometheus_duration,
    render,
)
from serinus_operator.analysis.verdict import Verdict
from serinus_operator.api import AnalysisSpec, MetricSpec

pytestmark = pytest.mark.unit

VARS = {
    "namespace": "ml",
    "name": "fraud",
    "stable": "7f3c",
    "candidate": "9a1e",
    "interval": "30s",
}


def test_error_rate_renders_to_the_documented_query() -> None:
    assert render(BUILTIN["error-rate"].query, VARS) == (
        '(sum(rate(serinus_requests_total{namespace="ml",model="fraud",revision="9a1e",'
        'outcome="server_error"}[30s])) or vector(0)) / sum(rate(serinus_requests_total{'
        'namespace="ml",model="fraud",revision="9a1e"}[30s]))'
    )


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_renders_completely(name: str) -> None:
    query = render(BUILTIN[name].query, VARS)
    assert "{{" not in query and "}}" not in query
    assert 'model="fraud"' in query and 'namespace="ml"' in query
    assert "9a1e" in query


def test_agreement_compares_stable_and_candidate_either_way_round() -> None:
    query = render(BUILTIN["agreement"].query, VARS)
    assert 'primary=~"7f3c|9a1e",shadow=~"7f3c|9a1e"' in query
    assert 'result="agree"' in query and 'result=~"agree|disagree"' in query


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('x{a="{{ nope }}"}', "unknown variable"),
        ('x{a="{{ stable }}"}', "has no value"),
    ],
)
def test_bad_templates_are_refused(query: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(query, {"name": "m"})


def test_values_that_could_break_out_of_a_label_are_refused() -> None:
    with pytest.raises(TemplateError, match="not a plain label value"):
        render('x{model="{{ name }}"}', {"name": 'a"} or vector(1) #'})


def test_custom_queries_and_bound_overrides() -> None:
    custom = resolve(MetricSpec("custom", query='sum(x{rev="{{ candidate }}"})', min=1), VARS)
    assert custom.query == 'sum(x{rev="9a1e"})' and custom.min == 1 and custom.max is None
    default = resolve(MetricSpec("error-rate"), VARS)
    assert default.max == 0.01
    tighter = resolve(MetricSpec("error-rate", max=0.001), VARS)
    assert tighter.max == 0.001
    with pytest.raises(TemplateError, match="not a built-in check"):
        resolve(MetricSpec("made-up"), VARS)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (60, "1m"), (90, "90s"), (7200, "2h"), (0.2, "1s")]
)
def test_prometheus_durations(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


def test_variables_take_the_interval_from_the_spec() -> None:
    spec = AnalysisSpec(metrics=(), interval=timedelta(minutes=2))
    found = variables_for(namespace="ml", name="m", stable="a", candidate="b", analysis=spec)
    assert found["interval"] == "2m"


CASES = [
    # (answer, min, max, verdict, value)
    (QueryResult((0.001,)), None, 0.01, Verdict.PASS, 0.001),
    (QueryResult((0.02,)), None, 0.01, Verdict.FAIL, 0.02),
    (QueryResult((0.01,)), None, 0.01, Verdict.PASS, 0.01),  # the bound itself passes
    (QueryResult((0.99,)), 0.97, None, Verdict.PASS, 0.99),
    (QueryResult((0.9,)), 0.97, None, Verdict.FAIL, 0.9),
    (QueryResult((5.0,)), 1, 10, Verdict.PASS, 5.0),
    (QueryResult((11.0,)), 1, 10, Verdict.FAIL, 11.0),
    (QueryResult((0.5,)), 1, 10, Verdict.FAIL, 0.5),
    (QueryResult(()), None, 0.01, Verdict.NO_DATA, None),  # empty vector
    (QueryResult((math.nan,)), None, 0.01, Verdict.NO_DATA, None),  # 0/0
    (QueryResult((math.inf,)), None, 0.5, Verdict.FAIL, None),  # all in +Inf bucket: no JSON inf
    (QueryResult((-math.inf,)), 0.97, None, Verdict.FAIL, None),
    (QueryResult(error="Prometheus unavailable: refused"), None, 0.01, Verdict.INCONCLUSIVE, None),
    (QueryResult((0.001, 0.05)), None, 0.01, Verdict.FAIL, 0.05),  # worst series
    (QueryResult((0.99, 0.5)), 0.97, None, Verdict.FAIL, 0.5),
    (QueryResult((math.nan, 0.001)), None, 0.01, Verdict.PASS, 0.001),
    (QueryResult((3.0,)), None, None, Verdict.PASS, 3.0),  # recorded only
]


@pytest.mark.parametrize(("answer", "low", "high", "verdict", "value"), CASES)
def test_verdicts(
    answer: QueryResult, low: float | None, high: float | None, verdict: Verdict, value: float
) -> None:
    result = verdict_of("m", answer, min=low, max=high)
    assert result.verdict is verdict
    assert result.value == value
    assert result.message
    assert result.value is None or math.isfinite(result.value)


@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    bound=st.floats(allow_nan=False, allow_infinity=False),
    is_max=st.booleans(),
    error=st.booleans(),
)
def test_nothing_degenerate_ever_passes(
    values: list[float], bound: float, is_max: bool, error: bool
) -> None:
    answer = QueryResult(tuple(values), error="down" if error else None)
    result = verdict_of("m", answer, **({"max": bound} if is_max else {"min": bound}))
    finite = [v for v in values if not math.isnan(v)]
    if error or not finite:
        assert result.verdict is not Verdict.PASS
    elif result.verdict is Verdict.PASS:
        assert all(v <= bound for v in finite) if is_max else all(v >= bound for v in finite)

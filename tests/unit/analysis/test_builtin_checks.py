"""The built-in checks are one list (``api.BUILTIN_CHECKS``): every name the API accepts
without a query has a query here (the CRD's CEL rule is checked against the same list on a
real API server in tests/integration/install/test_real_install.py)."""

from __future__ import annotations

import pytest

from serinus_operator import api
from serinus_operator.analysis.run import resolve, variables_for
from serinus_operator.analysis.templates import BUILTIN

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", api.BUILTIN_CHECKS)
def test_every_builtin_name_the_api_accepts_resolves_to_a_query(name: str) -> None:
    analysis = api.parse_analysis({"metrics": [{"name": name, "max": 1}]})
    assert analysis is not None
    variables = variables_for(
        namespace="ml", name="fraud", stable="s1", candidate="c1", analysis=analysis
    )
    check = resolve(analysis.metrics[0], variables)
    assert 'revision="c1"' in check.query or "c1" in check.query
    assert name in BUILTIN


def test_latency_quantiles_are_the_ones_named() -> None:
    for suffix, quantile in api.LATENCY_QUANTILES.items():
        assert f"histogram_quantile({quantile}," in BUILTIN[f"latency-{suffix}"].query


@pytest.mark.parametrize("name", ["latency-p80", "latency-p9999", "request-count", "errors"])
def test_other_names_need_a_query(name: str) -> None:
    with pytest.raises(api.SpecError, match="not a built-in metric"):
        api.parse_analysis({"metrics": [{"name": name, "max": 1}]})

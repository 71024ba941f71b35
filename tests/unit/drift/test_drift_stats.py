"""The drift statistics against scipy and numpy reference computations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from serinus_serving.drift.stats import (
    PSI_EPSILON,
    bin_counts,
    js_distance,
    ks_from_cdf,
    psi,
)

pytestmark = pytest.mark.unit

DECILES = sps.norm.ppf(np.linspace(0, 1, 11)[1:-1])
GRID = np.linspace(0, 1, 101)


def reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI written out the textbook way, with the documented floor for empty bins."""
    e = np.clip(expected / expected.sum(), PSI_EPSILON, None)
    a = np.clip(actual / actual.sum(), PSI_EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def normal_profile(train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decile edges + proportions and a 100-quantile CDF grid, as `serinus profile` makes."""
    edges = np.quantile(train, np.linspace(0, 1, 11)[1:-1])
    proportions = bin_counts(edges, train) / train.size
    points = np.unique(np.quantile(train, GRID))
    cdf = np.searchsorted(np.sort(train), points, side="right") / train.size
    return edges, proportions, points, cdf


distributions = arrays(
    np.float64,
    st.integers(2, 12),
    elements=st.floats(0, 1000, allow_nan=False, allow_infinity=False),
).filter(lambda a: a.sum() > 0)


@given(distributions, st.data())
def test_psi_matches_the_formula(expected: np.ndarray, data: st.DataObject) -> None:
    actual = data.draw(
        arrays(np.float64, expected.shape, elements=st.floats(0, 1000)).filter(
            lambda a: a.sum() > 0
        )
    )
    assert psi(expected, actual) == pytest.approx(reference_psi(expected, actual), rel=1e-9)
    assert psi(expected, actual) == pytest.approx(psi(actual, expected), rel=1e-9)
    assert psi(expected, actual) >= 0


@given(distributions)
def test_psi_of_a_distribution_with_itself_is_zero(counts: np.ndarray) -> None:
    assert psi(counts, counts * 3) == pytest.approx(0, abs=1e-12)


def test_psi_floors_an_empty_bin_at_epsilon() -> None:
    # A decile that empties adds 0.1 * ln(0.1 / 1e-4) ~= 0.69 (and its mass goes elsewhere).
    value = psi(np.full(10, 0.1), np.array([0, *[1 / 9] * 9]))
    expected = (PSI_EPSILON - 0.1) * np.log(PSI_EPSILON / 0.1) + 9 * (1 / 9 - 0.1) * np.log(
        (1 / 9) / 0.1
    )
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("shift", [0.25, 0.5, 1.0, 2.0])
def test_psi_of_a_shifted_normal_has_its_known_value(shift: float) -> None:
    """Decile bins of N(0,1) against N(shift,1): the bin masses follow from the normal CDF."""
    bounds = np.concatenate([[-np.inf], DECILES, [np.inf]])
    shifted = np.diff(sps.norm.cdf(bounds - shift))
    known = reference_psi(np.full(10, 0.1), shifted)
    live = np.random.default_rng(1).normal(shift, 1, size=400_000)
    assert psi(np.full(10, 0.1), bin_counts(DECILES, live)) == pytest.approx(known, rel=0.03)


def test_psi_without_drift_is_near_zero_and_over_the_bound_with_a_2_sigma_shift() -> None:
    rng = np.random.default_rng(2)
    edges, proportions, _, _ = normal_profile(rng.normal(size=50_000))
    assert psi(proportions, bin_counts(edges, rng.normal(size=1000))) < 0.05
    assert psi(proportions, bin_counts(edges, rng.normal(2, 1, size=1000))) > 0.2


def test_bins_are_right_closed() -> None:
    edges = np.array([0.0, 1.0])
    counts = bin_counts(edges, np.array([-1.0, 0.0, 0.5, 1.0, 1.5, np.inf, -np.inf]))
    assert counts.tolist() == [3, 2, 2]  # (-inf, 0], (0, 1], (1, inf)


@given(
    shift=st.floats(-3, 3),
    scale=st.floats(0.3, 3),
    n=st.integers(50, 2000),
    seed=st.integers(0, 2**32 - 1),
)
def test_ks_from_the_quantile_grid_brackets_scipy_ks_2samp(
    shift: float, scale: float, n: int, seed: int
) -> None:
    """The grid statistic is a lower bound of the exact two-sample statistic against the
    training data, short by at most the largest mass between two grid points."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=5000)
    live = rng.normal(shift, scale, size=n)
    _, _, points, cdf = normal_profile(train)
    approx = ks_from_cdf(points, cdf, live)
    exact = sps.ks_2samp(train, live).statistic
    live_cdf = np.searchsorted(np.sort(live), points, side="right") / n
    gap = max(np.max(np.diff(cdf, prepend=0)), np.max(np.diff(live_cdf, prepend=0)))
    assert approx <= exact + 1e-12
    assert exact <= approx + gap + 1e-12


def test_ks_is_near_zero_without_drift_and_known_for_a_shift() -> None:
    rng = np.random.default_rng(3)
    _, _, points, cdf = normal_profile(rng.normal(size=100_000))
    assert ks_from_cdf(points, cdf, rng.normal(size=5000)) < 0.03
    # N(0,1) against N(2,1): sup |Phi(x) - Phi(x - 2)| = 2 Phi(1) - 1 = 0.6827 at x = 1.
    known = 2 * sps.norm.cdf(1) - 1
    assert ks_from_cdf(points, cdf, rng.normal(2, 1, size=50_000)) == pytest.approx(
        known, abs=0.015
    )


def test_ks_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="empty"):
        ks_from_cdf(np.array([0.0]), np.array([1.0]), np.array([]))


@given(distributions, st.data())
def test_js_distance_matches_scipy(p: np.ndarray, data: st.DataObject) -> None:
    q = data.draw(
        arrays(np.float64, p.shape, elements=st.floats(0, 1000)).filter(lambda a: a.sum() > 0)
    )
    expected = jensenshannon(p, q, base=2)
    if np.isnan(expected):  # scipy's sqrt of a rounding error below 0, for equal shares
        expected = 0.0
    assert js_distance(p, q) == pytest.approx(expected, abs=1e-7)


def test_js_distance_bounds() -> None:
    assert js_distance([0.2, 0.3, 0.5], [2, 3, 5]) == pytest.approx(0, abs=1e-12)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1)


@pytest.mark.parametrize(
    "bad",
    [[], [0, 0], [-1, 2], [np.nan, 1], [[1, 2]]],
)
def test_distributions_are_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="distribution"):
        psi([1, 1], bad)
    with pytest.raises(ValueError, match="distribution"):
        js_distance(bad, [1, 1])


def test_bin_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="bins"):
        psi([1, 1, 1], [1, 1])

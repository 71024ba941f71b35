"""The sequential compare-to-baseline decision: worked numbers, hostile input, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from serinus_operator.analysis.latency import compare_latency, threshold_for_quantile
from serinus_operator.analysis.sequential import (
    Comparison,
    Counts,
    Paired,
    Settings,
    as_metric_result,
    compare_paired,
    compare_rates,
    half_width,
    p_value,
)
from serinus_operator.analysis.verdict import Verdict

pytestmark = pytest.mark.unit

ERRORS = Settings(max_degradation=0.005, confidence=0.95, min_samples=100)
ACCURACY = Settings(max_degradation=0.01, confidence=0.95, min_samples=100)
RANK = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


def test_half_width_worked_example() -> None:
    # tau² = 1e-4 = V: w = sqrt(2·V·(V+tau²)/tau² · (ln 20 + ½ ln 2)) = sqrt(4e-4 · 3.34237)
    assert half_width(1e-4, scale=0.01, confidence=0.95) == pytest.approx(0.0365639, rel=1e-5)


def test_pass_worked_example() -> None:
    """1% vs 1% errors, margin 0.5 pt: variance at the margin, p_b = 1051/110002, p_c = +0.005.

    V = 0.014554·0.985446/10000 + 0.009554·0.990446/100000 = 1.52885e-6; tau²/V = 16.352;
    w² = 2·V·(V + tau²)/tau²·(ln 20 + ½ ln 17.352) = 1.43502e-5, w = 0.0037882 < 0.005.
    """
    result = compare_rates(
        Counts(100, 10_000), Counts(1000, 100_000), settings=ERRORS, higher_is_better=False
    )
    assert result.verdict == Verdict.PASS
    assert result.difference == pytest.approx(0.0)
    assert result.lower == pytest.approx(-0.0037882, rel=1e-4)
    assert result.upper == pytest.approx(0.0037882, rel=1e-4)
    assert result.p_value == pytest.approx(0.0018774, rel=1e-3)
    assert result.bound == 0.005
    assert (result.candidate_n, result.baseline_n) == (10_000, 100_000)
    assert result.message.startswith("Pass: candidate 0.01 vs baseline 0.01, difference +0")


@pytest.mark.parametrize(
    ("candidate", "baseline", "higher_is_better", "settings", "verdict", "lower", "upper"),
    [
        # 3% vs 1% errors: worse by 2 points, well past the 0.5-point margin.
        ((300, 10_000), (1000, 100_000), False, ERRORS, Verdict.FAIL, 0.015990, 0.024010),
        # 1.5% vs 1%: worse by exactly the margin, and the interval straddles it.
        ((150, 10_000), (1000, 100_000), False, ERRORS, Verdict.INCONCLUSIVE, 0.001155, 0.008845),
        # Accuracy 87% vs 90% (higher is better): 3 points lost, margin 1 point.
        ((8700, 10_000), (9000, 10_000), True, ACCURACY, Verdict.FAIL, -0.043796, -0.016204),
        # 89.9% vs 90%: fine, but 10,000 unpaired labels cannot show it within 1 point.
        ((8990, 10_000), (9000, 10_000), True, ACCURACY, Verdict.INCONCLUSIVE, -0.013961, 0.011961),
    ],
)
def test_worked_rates(
    candidate: tuple[int, int],
    baseline: tuple[int, int],
    higher_is_better: bool,
    settings: Settings,
    verdict: Verdict,
    lower: float,
    upper: float,
) -> None:
    result = compare_rates(
        Counts(*candidate), Counts(*baseline), settings=settings, higher_is_better=higher_is_better
    )
    assert result.verdict == verdict, result.message
    assert result.lower == pytest.approx(lower, abs=2e-6)
    assert result.upper == pytest.approx(upper, abs=2e-6)
    assert result.message.startswith(f"{verdict.value}: ")


@pytest.mark.parametrize(
    ("pairs", "verdict"),
    [
        (Paired(8500, 200, 500, 800), Verdict.FAIL),  # 87% vs 90% on the same 10,000 labels
        (Paired(8700, 300, 300, 700), Verdict.PASS),  # equal: pairing shows it within 1 point
        (Paired(870, 30, 30, 70), Verdict.INCONCLUSIVE),  # equal, but 1,000 labels are too few
    ],
)
def test_worked_paired(pairs: Paired, verdict: Verdict) -> None:
    result = compare_paired(pairs, settings=ACCURACY)
    assert result.verdict == verdict, result.message
    assert (
        result.candidate_n
        == result.baseline_n
        == sum((pairs.both_right, pairs.only_candidate, pairs.only_baseline, pairs.both_wrong))
    )


def test_pairing_needs_fewer_labels_than_two_independent_samples() -> None:
    paired = compare_paired(Paired(8700, 300, 300, 700), settings=ACCURACY)
    unpaired = compare_rates(
        Counts(9000, 10_000), Counts(9000, 10_000), settings=ACCURACY, higher_is_better=True
    )
    assert paired.upper is not None
    assert unpaired.upper is not None
    assert paired.upper < unpaired.upper / 1.5  # variance 6% vs 2 x 9%: sqrt(3) narrower
    assert (paired.verdict, unpaired.verdict) == (Verdict.PASS, Verdict.INCONCLUSIVE)


@pytest.mark.parametrize(
    ("candidate", "baseline", "why"),
    [
        (Counts(0, 0), Counts(0, 0), "not enough data yet"),
        (Counts(5, 99), Counts(50, 10_000), "not enough data yet"),
        (Counts(11, 10), Counts(5, 1000), "11 events out of 10"),
        (Counts(math.nan, 1000), Counts(5, 1000), "not all finite"),
        (Counts(1, math.inf), Counts(5, 1000), "not all finite"),
        (Counts(-1, 1000), Counts(5, 1000), "negative count"),
        (Counts("7", 1000), Counts(5, 1000), "not all finite"),  # type: ignore[arg-type]
        (Counts(None, 1000), Counts(5, 1000), "not all finite"),  # type: ignore[arg-type]
        (Counts(1, 10**400), Counts(5, 1000), "not all finite"),
    ],
)
def test_odd_counts_are_inconclusive_with_a_reason(
    candidate: Counts, baseline: Counts, why: str
) -> None:
    result = compare_rates(candidate, baseline, settings=ERRORS, higher_is_better=False)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert why in result.message
    assert result.lower is None


def test_a_count_going_down_is_a_counter_reset() -> None:
    first = compare_rates(
        Counts(100, 10_000), Counts(1000, 100_000), settings=ERRORS, higher_is_better=False
    )
    after_restart = compare_rates(
        Counts(3, 400), Counts(1000, 101_000), settings=ERRORS, higher_is_better=False,
        previous=first,
    )  # fmt: skip
    assert after_restart.verdict == Verdict.INCONCLUSIVE
    assert "counter reset" in after_restart.message
    jitter = compare_rates(  # increase() extrapolation: a fraction of a count less
        Counts(99.6, 9_990), Counts(1000, 100_000), settings=ERRORS, higher_is_better=False,
        previous=first,
    )  # fmt: skip
    assert jitter.verdict == Verdict.PASS


def test_paired_hostile_input() -> None:
    for pairs in (Paired(math.nan, 1, 1, 1), Paired(-1, 1, 1, 200), Paired(0, 0, 0, 0)):
        assert compare_paired(pairs, settings=ACCURACY).verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"confidence": 1.0},
        {"confidence": 0.0},
        {"confidence": math.nan},
        {"max_degradation": -0.01},
        {"max_degradation": math.inf},
        {"min_samples": -1},
        {"effect_scale": 0.0},
    ],
)
def test_settings_refuse_what_a_spec_must_not_say(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Settings(**{"max_degradation": 0.01, "confidence": 0.95, "min_samples": 10, **kwargs})


def test_scale_defaults_to_the_margin() -> None:
    assert ERRORS.scale == 0.005
    assert Settings(max_degradation=0, confidence=0.9, min_samples=0).scale == 0.01
    assert Settings(0.01, 0.9, 0, effect_scale=0.02).scale == 0.02


def test_as_metric_result_judges_against_baseline_plus_margin() -> None:
    result = compare_rates(
        Counts(8700, 10_000), Counts(9000, 10_000), settings=ACCURACY, higher_is_better=True
    )
    metric = as_metric_result("accuracy", result)
    assert (metric.name, metric.verdict, metric.value) == ("accuracy", Verdict.FAIL, 0.87)
    assert metric.threshold == pytest.approx(0.89)
    assert as_metric_result("x", Comparison(Verdict.INCONCLUSIVE, "why")).threshold is None


HISTOGRAM = {0.05: 800.0, 0.1: 950.0, 0.25: 990.0, 0.5: 1000.0, math.inf: 1000.0}


def test_latency_counts_the_requests_above_the_threshold_bucket() -> None:
    slow = {0.05: 500.0, 0.1: 700.0, 0.25: 800.0, 0.5: 990.0, math.inf: 1000.0}
    result = compare_latency(slow, HISTOGRAM, threshold=0.3, settings=ERRORS)
    assert result.verdict == Verdict.FAIL  # 20% vs 1% slower than 0.25 s (snapped from 0.3)
    assert result.candidate == pytest.approx(0.2)
    assert result.baseline == pytest.approx(0.01)
    assert result.message.startswith("share slower than 0.25s: Fail")


@pytest.mark.parametrize(
    ("candidate", "threshold", "why"),
    [
        ({0.05: 800.0, 0.1: 950.0}, 0.1, "no +Inf bucket"),
        ({0.05: 800.0, 0.1: 700.0, math.inf: 1000.0}, 0.1, "not cumulative"),
        ({0.05: math.nan, 0.1: 950.0, math.inf: 1000.0}, 0.1, "not finite"),
        (HISTOGRAM, 0.01, "no histogram bucket bound"),
        ({0.07: 800.0, math.inf: 1000.0}, 0.1, "no histogram bucket bound"),
    ],
)
def test_odd_histograms_are_inconclusive(
    candidate: dict[float, float], threshold: float, why: str
) -> None:
    result = compare_latency(candidate, HISTOGRAM, threshold=threshold, settings=ERRORS)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert why in result.message


def test_threshold_for_quantile() -> None:
    assert threshold_for_quantile(HISTOGRAM, 0.5) == 0.05
    assert threshold_for_quantile(HISTOGRAM, 0.95) == 0.1
    assert threshold_for_quantile(HISTOGRAM, 0.999) == 0.5
    assert threshold_for_quantile({0.1: 5.0, math.inf: 10.0}, 0.99) is None  # in +Inf
    assert threshold_for_quantile({0.1: 5.0}, 0.5) is None
    assert threshold_for_quantile(HISTOGRAM, 1.5) is None


# Properties.

totals = st.integers(min_value=1, max_value=200_000)
confidences = st.sampled_from([0.8, 0.9, 0.95, 0.99])
margins = st.sampled_from([0.0, 0.001, 0.005, 0.02, 0.1])


@st.composite
def counts(draw: st.DrawFn) -> Counts:
    total = draw(totals)
    return Counts(draw(st.integers(0, total)), total)


def _settings(margin: float, confidence: float, min_samples: int = 0) -> Settings:
    return Settings(max_degradation=margin, confidence=confidence, min_samples=min_samples)


@given(counts(), counts(), margins, confidences, st.booleans())
def test_more_harm_never_moves_the_verdict_towards_pass(
    candidate: Counts, baseline: Counts, margin: float, confidence: float, higher: bool
) -> None:
    """One more bad outcome for the candidate (an error, or a wrong answer) never helps it."""
    worse = candidate.events - 1 if higher else candidate.events + 1
    assume(0 <= worse <= candidate.total)
    settings = _settings(margin, confidence)
    before = compare_rates(candidate, baseline, settings=settings, higher_is_better=higher)
    after = compare_rates(
        Counts(worse, candidate.total), baseline, settings=settings, higher_is_better=higher
    )
    assert RANK[after.verdict] >= RANK[before.verdict], (before.message, after.message)


@given(counts(), counts(), margins, confidences)
def test_counting_failures_instead_of_successes_changes_nothing(
    candidate: Counts, baseline: Counts, margin: float, confidence: float
) -> None:
    """Errors (lower is better) and successes (higher is better) are the same test."""
    settings = _settings(margin, confidence)
    errors = compare_rates(candidate, baseline, settings=settings, higher_is_better=False)
    successes = compare_rates(
        Counts(candidate.total - candidate.events, candidate.total),
        Counts(baseline.total - baseline.events, baseline.total),
        settings=settings,
        higher_is_better=True,
    )
    assert errors.verdict == successes.verdict
    assert errors.lower == pytest.approx(-(successes.upper or 0), abs=1e-12)
    assert errors.upper == pytest.approx(-(successes.lower or 0), abs=1e-12)


@given(counts(), counts(), margins, confidences, st.integers(1, 300_000))
def test_below_min_samples_there_is_no_verdict(
    candidate: Counts, baseline: Counts, margin: float, confidence: float, minimum: int
) -> None:
    settings = _settings(margin, confidence, minimum)
    result = compare_rates(candidate, baseline, settings=settings, higher_is_better=False)
    if min(candidate.total, baseline.total) < minimum:
        assert result.verdict == Verdict.INCONCLUSIVE
        assert "not enough data yet" in result.message
    assert result == compare_rates(candidate, baseline, settings=settings, higher_is_better=False)


@given(counts(), counts(), margins, confidences, st.booleans())
def test_the_interval_decides_and_the_p_value_agrees(
    candidate: Counts, baseline: Counts, margin: float, confidence: float, higher: bool
) -> None:
    result = compare_rates(
        candidate, baseline, settings=_settings(margin, confidence), higher_is_better=higher
    )
    assert result.lower is not None
    assert result.upper is not None
    assert result.difference is not None
    assert result.bound is not None
    assert result.p_value is not None
    assert result.lower <= result.difference <= result.upper
    worse_side = (lambda x: x < result.bound) if higher else (lambda x: x > result.bound)
    if result.verdict == Verdict.FAIL:
        assert worse_side(result.lower if not higher else result.upper)
    decisive = result.verdict != Verdict.INCONCLUSIVE
    alpha = 1 - confidence
    assume(not math.isclose(result.p_value, alpha, rel_tol=1e-6))
    assert decisive == (result.p_value < alpha)


@given(st.floats(1e-12, 1.0), st.floats(1e-12, 1.0), st.floats(1e-4, 1.0), confidences)
def test_the_interval_narrows_as_evidence_grows(
    v1: float, v2: float, scale: float, confidence: float
) -> None:
    small, large = sorted((v1, v2))
    assert half_width(small, scale=scale, confidence=confidence) <= half_width(
        large, scale=scale, confidence=confidence
    )
    assert p_value(0.0, small, margin=0.0, scale=scale) == 1.0


@given(
    st.tuples(*[st.integers(0, 20_000)] * 4),
    st.sampled_from([0.0, 0.005, 0.01, 0.05]),
    confidences,
)
def test_paired_one_more_loss_never_moves_towards_pass(
    cells: tuple[int, int, int, int], margin: float, confidence: float
) -> None:
    """Turning one request the candidate alone got right into one only the baseline got
    right never helps the candidate."""
    both, only_c, only_b, wrong = cells
    assume(only_c > 0)
    settings = _settings(margin, confidence, 1)
    before = compare_paired(Paired(both, only_c, only_b, wrong), settings=settings)
    after = compare_paired(Paired(both, only_c - 1, only_b + 1, wrong), settings=settings)
    assert RANK[after.verdict] >= RANK[before.verdict], (before.message, after.message)


anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.none(),
    st.text(max_size=3),
)


@given(anything, anything, anything, anything, st.booleans())
def test_nothing_a_query_returns_raises(
    a: object, b: object, c: object, d: object, h: bool
) -> None:
    result = compare_rates(Counts(a, b), Counts(c, d), settings=ERRORS, higher_is_better=h)  # type: ignore[arg-type]
    assert isinstance(result, Comparison)
    assert isinstance(compare_paired(Paired(a, b, c, d), settings=ACCURACY), Comparison)  # type: ignore[arg-type]


bounds = st.one_of(st.floats(allow_nan=True), st.sampled_from([0.05, 0.1, 0.25, math.inf]))


@given(
    st.dictionaries(bounds, anything, max_size=6),
    st.dictionaries(bounds, anything, max_size=6),
    st.floats(allow_nan=True),
)
def test_no_histogram_raises(
    candidate: dict[float, float], baseline: dict[float, float], t: float
) -> None:
    assert isinstance(
        compare_latency(candidate, baseline, threshold=t, settings=ERRORS), Comparison
    )
    threshold_for_quantile(candidate, 0.99)

"""Compare-to-baseline checks that stay valid when looked at every interval. Pure.

The operator asks, every interval, for counts *since the rollout started* (errors/requests,
correct/labelled, slow/requests) for the candidate and the stable revision, and decides:

- **Fail** when the data show, with ``confidence``, that the candidate is worse than the
  baseline by more than ``max_degradation``;
- **Pass** when they show it is *not* worse by more than ``max_degradation``
  (non-inferiority);
- **Inconclusive** otherwise, below ``min_samples``, and on any input that cannot be counts.

Method: a time-uniform confidence sequence for the *harm* d (how much worse the candidate
is, in the metric's units), the normal-mixture boundary of Robbins (1970), as used for
A/B tests by Johari, Koomen, Pekelis & Walsh, "Always valid inference" (Oper. Res. 2022;
their mSPRT for a difference of means) and Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences" (Ann. Stat. 2021, §3.5).
With D the observed harm and V its variance (even with unequal, changing group sizes, D - d
is a Brownian motion in the information time 1/V), the mixture likelihood ratio against
d = t is

    LR(t) = sqrt(V / (V + tau²)) · exp(tau² (D - t)² / (2 V (V + tau²)))

a nonnegative martingale when d = t, so by Ville's inequality P(ever LR(d) >= 1/alpha) <=
alpha: ``{t : LR(t) < 1/alpha} = D ± w(V)`` covers d at *every* look at once with
probability >= 1 - alpha. Fail is ``D - w > max_degradation``, Pass is
``D + w <= max_degradation``; each is wrong with probability at most alpha = 1 - confidence
however often (and whenever) one looks. ``p_value = min(1, 1/LR(max_degradation))`` is the
matching always-valid p-value. tau (``effect_scale``) sets where the boundary is tightest:
tau = ``max_degradation`` is near-optimal for deciding against that margin (Howard et al.,
eq. 15), and any tau fixed in advance keeps the guarantee.

Why this and not a Bernoulli mSPRT or an empirical-Bernstein sequence: one closed form
serves proportions, paired accuracy and latency fractions; it needs no scipy in the
operator; and its guarantee rests on the normal approximation only, which the
simulation (tests/unit/analysis/test_sequential_simulation.py, docs/analysis.md) checks
where it is weakest: rare events, little traffic, the margin itself. V is the variance
*at the margin* (a score-type estimate, see :func:`rate_harm`), so [D - w, D + w] is exact
for deciding against ``max_degradation`` rather than a general-purpose interval. Counts
may be non-integers (Prometheus ``increase`` extrapolates).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from serinus_operator.analysis.verdict import MetricResult, Verdict

#: Mixture scale when ``max_degradation`` is 0 and no ``effect_scale`` is given: one point.
DEFAULT_SCALE = 0.01


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative counts for one revision: ``events`` (errors, correct, slow) of ``total``."""

    events: float
    total: float


@dataclass(frozen=True, slots=True)
class Paired:
    """Labelled requests both revisions answered, by who was right (McNemar's table)."""

    both_right: float
    only_candidate: float
    only_baseline: float
    both_wrong: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """One decision with everything needed to explain it.

    ``difference``, ``lower``, ``upper`` and ``bound`` are candidate - baseline in the
    metric's units; the verdict compares the confidence sequence [lower, upper] with
    ``bound`` (-max_degradation when higher is better, +max_degradation otherwise).
    ``counts`` are the inputs, kept to detect a counter reset at the next look.
    """

    verdict: Verdict
    message: str
    candidate: float | None = None
    baseline: float | None = None
    difference: float | None = None
    lower: float | None = None
    upper: float | None = None
    bound: float | None = None
    p_value: float | None = None
    candidate_n: float = 0.0
    baseline_n: float = 0.0
    confidence: float = 0.0
    counts: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """What a compare check's spec says; validated once, here."""

    max_degradation: float
    confidence: float
    min_samples: float
    effect_scale: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if not (math.isfinite(self.max_degradation) and self.max_degradation >= 0.0):
            raise ValueError(f"maxDegradation must be finite and >= 0: {self.max_degradation!r}")
        if not (math.isfinite(self.min_samples) and self.min_samples >= 0):
            raise ValueError(f"minSamples must be finite and >= 0, got {self.min_samples!r}")
        scale = self.effect_scale
        if scale is not None and not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"effectScale must be finite and > 0, got {scale!r}")

    @property
    def scale(self) -> float:
        if self.effect_scale is not None:
            return self.effect_scale
        return self.max_degradation if self.max_degradation > 0.0 else DEFAULT_SCALE


def rate_harm(
    candidate: Counts, baseline: Counts, *, higher_is_better: bool, margin: float
) -> tuple[float, float]:
    """Observed harm (how much worse the candidate is) and its variance at the margin.

    The variance is the one the rates would have if the harm were exactly ``margin``
    (baseline rate from both groups, candidate = baseline ± margin), as in Farrington &
    Manning's score test, not the observed rates': with few events the observed variance
    shrinks exactly when the candidate got lucky, which made the plug-in version promote a
    candidate worse by the margin 6% of the time at 95% confidence in the simulation.
    """
    sign = -1.0 if higher_is_better else 1.0
    x_c, n_c, x_b, n_b = candidate.events, candidate.total, baseline.events, baseline.total
    harm = sign * (x_c / n_c - x_b / n_b)
    shift, eps = sign * margin, 1.0 / (n_c + n_b + 2.0)
    p_b = (x_c - shift * n_c + x_b + 1.0) / (n_c + n_b + 2.0)
    p_b = min(max(p_b, eps, eps - shift), 1.0 - eps, 1.0 - eps - shift)
    p_c = min(max(p_b + shift, eps), 1.0 - eps)
    return harm, p_c * (1.0 - p_c) / n_c + p_b * (1.0 - p_b) / n_b


def paired_harm(pairs: Paired, *, margin: float) -> tuple[float, float]:
    """Accuracy lost on the same requests, and its variance at the margin.

    Each labelled request scores -1/0/+1 (only the candidate / both or neither / only the
    baseline right); the harm is their mean. The variance uses Tango's (1998) restricted
    estimate of the discordant shares given harm = ``margin``, with half a discordant pair
    added each way, so that a lucky run of agreement is not taken as proof.
    """
    b, c = pairs.only_baseline + 0.5, pairs.only_candidate + 0.5
    rest = pairs.both_right + pairs.both_wrong
    n, big_n = b + c + rest - 1.0, b + c + rest
    harm = (pairs.only_baseline - pairs.only_candidate) / n
    m = min(margin, 1.0)
    lin = b * (1.0 - m) + c * (1.0 - 3.0 * m) - 2.0 * rest * m
    const = c * m * (1.0 - m)
    only_c = (lin + math.sqrt(lin * lin + 8.0 * big_n * const)) / (4.0 * big_n)
    spread = 2.0 * only_c + m - m * m  # Var(score) = P(discordant) - margin²
    return harm, max(spread, 1.0 / big_n) / n


def half_width(variance: float, *, scale: float, confidence: float) -> float:
    """Half-width w of the normal-mixture confidence sequence D ± w at this variance."""
    tau2 = scale * scale
    log_term = math.log(1.0 / (1.0 - confidence)) + 0.5 * math.log1p(tau2 / variance)
    return math.sqrt(2.0 * variance * (variance + tau2) / tau2 * log_term)


def p_value(harm: float, variance: float, *, margin: float, scale: float) -> float:
    """Always-valid p-value of "the harm is exactly the margin" (1/Λ, capped at 1)."""
    tau2 = scale * scale
    log_lr = -0.5 * math.log1p(tau2 / variance) + tau2 * (harm - margin) ** 2 / (
        2.0 * variance * (variance + tau2)
    )
    return math.exp(-log_lr) if log_lr > 0.0 else 1.0


def verdict_for(lower: float, upper: float, *, margin: float) -> Verdict:
    """Fail when even the best case is worse than the margin; Pass when the worst is not."""
    if lower > margin:
        return Verdict.FAIL
    if upper <= margin:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def as_metric_result(name: str, comparison: Comparison) -> MetricResult:
    """The engine's view: the candidate's value against baseline ± maxDegradation."""
    threshold = None
    if comparison.baseline is not None and comparison.bound is not None:
        threshold = comparison.baseline + comparison.bound
    return MetricResult(
        name, comparison.verdict, comparison.candidate, threshold, comparison.message
    )


def compare_rates(
    candidate: Counts,
    baseline: Counts,
    *,
    settings: Settings,
    higher_is_better: bool,
    previous: Comparison | None = None,
) -> Comparison:
    """Decide on two revisions' cumulative rates (error rate, accuracy, slow fraction)."""
    counts = (candidate.events, candidate.total, baseline.events, baseline.total)
    problem = _invalid(counts, previous) or _not_rates(candidate, baseline)
    if problem is None:
        problem = _too_few(candidate.total, baseline.total, settings)
    if problem is not None:
        return Comparison(Verdict.INCONCLUSIVE, problem, counts=counts, **_sizes(counts, 1, 3))
    harm, variance = rate_harm(
        candidate,
        baseline,
        higher_is_better=higher_is_better,
        margin=settings.max_degradation,
    )
    return _decide(
        harm,
        variance,
        settings,
        higher_is_better=higher_is_better,
        values=(candidate.events / candidate.total, baseline.events / baseline.total),
        counts=counts,
        sizes=(candidate.total, baseline.total),
    )


def compare_paired(
    pairs: Paired, *, settings: Settings, previous: Comparison | None = None
) -> Comparison:
    """Decide on accuracy when both revisions answered the same labelled requests.

    Pairing removes the variance both share (the requests' difficulty): with 90% accuracy
    and 5% disagreement it needs several times fewer labels than :func:`compare_rates`.
    """
    counts = (pairs.both_right, pairs.only_candidate, pairs.only_baseline, pairs.both_wrong)
    problem = _invalid(counts, previous)
    if problem is not None:
        return Comparison(Verdict.INCONCLUSIVE, problem, counts=counts)
    n = math.fsum(counts)
    problem = _too_few(n, n, settings)
    if problem is not None:
        return Comparison(Verdict.INCONCLUSIVE, problem, candidate_n=n, baseline_n=n, counts=counts)
    harm, variance = paired_harm(pairs, margin=settings.max_degradation)
    return _decide(
        harm,
        variance,
        settings,
        higher_is_better=True,
        values=(
            (pairs.both_right + pairs.only_candidate) / n,
            (pairs.both_right + pairs.only_baseline) / n,
        ),
        counts=counts,
        sizes=(n, n),
    )


def _decide(
    harm: float,
    variance: float,
    settings: Settings,
    *,
    higher_is_better: bool,
    values: tuple[float, float],
    counts: tuple[float, ...],
    sizes: tuple[float, float],
) -> Comparison:
    margin = settings.max_degradation
    w = half_width(variance, scale=settings.scale, confidence=settings.confidence)
    verdict = verdict_for(harm - w, harm + w, margin=margin)
    sign = -1.0 if higher_is_better else 1.0
    comparison = Comparison(
        verdict,
        "",
        candidate=values[0],
        baseline=values[1],
        difference=values[0] - values[1],
        lower=min(sign * (harm - w), sign * (harm + w)),
        upper=max(sign * (harm - w), sign * (harm + w)),
        bound=sign * margin,
        p_value=p_value(harm, variance, margin=margin, scale=settings.scale),
        candidate_n=sizes[0],
        baseline_n=sizes[1],
        confidence=settings.confidence,
        counts=counts,
    )
    return _explained(comparison)


_OUTCOME = {
    Verdict.FAIL: "worse than baseline by more than",
    Verdict.PASS: "not worse than baseline by more than",
    Verdict.INCONCLUSIVE: "not yet known to be within or beyond",
}


def _explained(c: Comparison) -> Comparison:
    assert c.difference is not None
    assert c.lower is not None
    assert c.upper is not None
    assert c.bound is not None
    assert c.p_value is not None
    text = (
        f"{c.verdict.value}: candidate {c.candidate:.4g} vs baseline {c.baseline:.4g}, "
        f"difference {c.difference:+.4g} ({c.confidence:.0%} always-valid interval "
        f"[{c.lower:+.4g}, {c.upper:+.4g}]) is {_OUTCOME[c.verdict]} {abs(c.bound):g} "
        f"(n={c.candidate_n:.0f} vs {c.baseline_n:.0f}, p={c.p_value:.3g})"
    )
    return dataclasses.replace(c, message=text)


def _invalid(counts: tuple[float, ...], previous: Comparison | None) -> str | None:
    """Why these cannot be counts, or None. A count that went down is a counter reset."""
    if not all(finite(x) for x in counts):
        return f"no verdict: counts are not all finite numbers {counts}"
    if any(x < 0 for x in counts):
        return f"no verdict: negative count in {counts} (a counter reset?)"
    # increase() extrapolates, so allow a little jitter; a restart loses far more.
    if (
        previous is not None
        and len(previous.counts) == len(counts)
        and any(
            now < then - max(1.0, 0.005 * then)
            for now, then in zip(counts, previous.counts, strict=True)
        )
    ):
        return (
            f"no verdict: counts went down since the last look ({previous.counts} -> "
            f"{counts}): a counter reset; the test cannot go on from these counts"
        )
    return None


def _not_rates(candidate: Counts, baseline: Counts) -> str | None:
    for who, c in (("candidate", candidate), ("baseline", baseline)):
        if c.events > c.total:
            return (
                f"no verdict: {who} has {c.events:g} events out of {c.total:g} (queries disagree?)"
            )
    return None


def _too_few(candidate_n: float, baseline_n: float, settings: Settings) -> str | None:
    if min(candidate_n, baseline_n) > 0 and min(candidate_n, baseline_n) >= settings.min_samples:
        return None
    return (
        f"not enough data yet: n={candidate_n:g} (candidate) and {baseline_n:g} (baseline), "
        f"minSamples {settings.min_samples:g}"
    )


def _sizes(counts: tuple[float, ...], *at: int) -> dict[str, float]:
    if not all(finite(counts[i]) for i in at):
        return {}
    return {"candidate_n": float(counts[at[0]]), "baseline_n": float(counts[at[1]])}


def finite(x: object) -> bool:
    """A real, finite number (an int too large for a float is not one)."""
    try:
        return isinstance(x, numbers.Real) and math.isfinite(x)
    except OverflowError:
        return False

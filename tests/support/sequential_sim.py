"""Simulated rollouts for the sequential compare-to-baseline test. Seeded numpy.

Each rollout draws traffic interval by interval (a varying request count, split between
candidate and stable by a canary weight schedule, or mirrored whole to a shadow), draws the
events of each revision from its true rate, and asks the *production* decision (the
building blocks of ``serinus_operator.analysis.sequential``) for a verdict on the cumulative
counts at every look. Rates of "ever Fail" and "ever Pass" over the rollout are what the
guarantee bounds. ``python -m support.sequential_sim`` (from tests/) prints the table in
docs/analysis.md.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from serinus_operator.analysis.sequential import (
    Counts,
    Paired,
    Settings,
    half_width,
    paired_harm,
    rate_harm,
    verdict_for,
)
from serinus_operator.analysis.verdict import Verdict

Ints = npt.NDArray[np.int64]

#: The canary's share of traffic over a rollout: 5%, then 10, 25 and 50%, by quarters.
CANARY = (0.05, 0.10, 0.25, 0.50)


@dataclass(frozen=True)
class Scenario:
    """True rates, the check's settings and the traffic of one kind of rollout.

    ``candidate``/``baseline`` are true rates (errors: lower is better; accuracy: higher).
    ``paired`` rollouts are shadows judged on labels: ``disagree`` is the share of labelled
    requests on which exactly one of the two models is right.
    """

    name: str
    candidate: float
    baseline: float
    max_degradation: float
    higher_is_better: bool = False
    confidence: float = 0.95
    min_samples: int = 100
    looks: int = 40
    traffic: tuple[int, int] = (200, 2000)  # requests (or labels) per interval, uniform
    shadow: bool = False  # True: the candidate sees every request; False: CANARY weights
    paired: bool = False
    disagree: float = 0.06
    rollouts: int = 2000

    @property
    def harm(self) -> float:
        d = self.candidate - self.baseline
        return -d if self.higher_is_better or self.paired else d

    @property
    def harmless(self) -> bool:
        """Not worse than the margin: a Fail would be a false rollback."""
        return self.harm <= self.max_degradation or math.isclose(self.harm, self.max_degradation)

    @property
    def harmful(self) -> bool:
        """Worse than or at the margin: a Pass would be a false promotion."""
        return self.harm >= self.max_degradation or math.isclose(self.harm, self.max_degradation)


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    ever_fail: int  # rollouts with a Fail at some look
    ever_pass: int
    first_fail: int  # rollouts whose first decisive look said Fail
    first_pass: int
    mean_samples: float  # candidate samples at the first decisive look (decided ones)

    @property
    def rollouts(self) -> int:
        return self.scenario.rollouts


def simulate(scenario: Scenario, *, seed: int) -> Outcome:
    counts = counts_of(scenario, seed=seed)
    return _summarise(scenario, verdicts_of(scenario, counts), counts[..., 0])


def settings_of(scenario: Scenario) -> Settings:
    return Settings(
        max_degradation=scenario.max_degradation,
        confidence=scenario.confidence,
        min_samples=scenario.min_samples,
    )


def counts_of(scenario: Scenario, *, seed: int) -> Ints:
    """Cumulative counts, shape (rollouts, looks, 4 or 5): see the two functions below."""
    rng = np.random.default_rng(seed)
    return _paired_counts(scenario, rng) if scenario.paired else _rate_counts(scenario, rng)


def _rate_counts(s: Scenario, rng: np.random.Generator) -> Ints:
    """Cumulative (candidate n, candidate events, baseline n, baseline events) per look."""
    shape = (s.rollouts, s.looks)
    total = rng.integers(s.traffic[0], s.traffic[1] + 1, size=shape)
    if s.shadow:
        n_c, n_b = total, total
    else:
        weight = np.array(CANARY)[np.arange(s.looks) * len(CANARY) // s.looks]
        n_c = rng.binomial(total, weight)
        n_b = total - n_c
    x_c = rng.binomial(n_c, s.candidate)
    x_b = rng.binomial(n_b, s.baseline)
    return np.cumsum(np.stack([n_c, x_c, n_b, x_b], axis=-1), axis=1)


def _paired_counts(s: Scenario, rng: np.random.Generator) -> Ints:
    """Cumulative (n, both right, only candidate, only baseline, both wrong) per look."""
    gain = s.candidate - s.baseline
    only_c, only_b = (s.disagree + gain) / 2, (s.disagree - gain) / 2
    both = s.baseline - only_b
    probs = np.array([both, only_c, only_b, 1.0 - both - only_c - only_b])
    assert (probs >= 0).all(), f"{s.name}: impossible accuracies for this disagreement"
    total = rng.integers(s.traffic[0], s.traffic[1] + 1, size=(s.rollouts, s.looks))
    cells = rng.multinomial(total, probs)
    return np.cumsum(np.concatenate([total[..., None], cells], axis=-1), axis=1)


def verdicts_of(s: Scenario, counts: Ints) -> npt.NDArray[np.int8]:
    """+1 Fail, -1 Pass, 0 Inconclusive at every look, by the production functions.

    The same decision as ``compare_rates``/``compare_paired`` without their validation and
    message (ten times the cost); a test checks that the two agree.
    """
    rows = counts.reshape(-1, counts.shape[-1]).tolist()
    decide = _decider(s)
    return np.array(list(map(decide, rows)), dtype=np.int8).reshape(counts.shape[:2])


def _decider(s: Scenario) -> Callable[[list[int]], int]:
    settings = settings_of(s)
    margin, scale, confidence = settings.max_degradation, settings.scale, settings.confidence
    minimum, higher = s.min_samples, s.higher_is_better

    def judge(harm: float, variance: float) -> int:
        w = half_width(variance, scale=scale, confidence=confidence)
        verdict = verdict_for(harm - w, harm + w, margin=margin)
        return 1 if verdict is Verdict.FAIL else -1 if verdict is Verdict.PASS else 0

    def paired(row: list[int]) -> int:
        if row[0] < minimum:
            return 0
        return judge(*paired_harm(Paired(*row[1:]), margin=margin))

    def rates(row: list[int]) -> int:
        if row[0] < minimum or row[2] < minimum:
            return 0
        candidate, baseline = Counts(row[1], row[0]), Counts(row[3], row[2])
        return judge(*rate_harm(candidate, baseline, higher_is_better=higher, margin=margin))

    return paired if s.paired else rates


def _summarise(s: Scenario, verdicts: npt.NDArray[np.int8], samples: Ints) -> Outcome:
    decided = verdicts != 0
    first = np.argmax(decided, axis=1)
    any_decided = decided.any(axis=1)
    rows = np.arange(s.rollouts)
    first_verdict = np.where(any_decided, verdicts[rows, first], 0)
    at_decision = samples[rows, first][any_decided]
    return Outcome(
        scenario=s,
        ever_fail=int((verdicts == 1).any(axis=1).sum()),
        ever_pass=int((verdicts == -1).any(axis=1).sum()),
        first_fail=int((first_verdict == 1).sum()),
        first_pass=int((first_verdict == -1).sum()),
        mean_samples=float(at_decision.mean()) if at_decision.size else float("nan"),
    )


def error_rate(name: str, candidate: float, **kw: object) -> Scenario:
    return Scenario(name, candidate, 0.01, 0.005, **kw)  # type: ignore[arg-type]


LOW = {"looks": 60, "traffic": (20, 200)}

SCENARIOS = (
    error_rate("errors A/A", 0.01),
    error_rate("errors A/A, shadow", 0.01, shadow=True),
    error_rate("errors +0.2 pt (harmless)", 0.012),
    error_rate("errors +0.5 pt (= margin)", 0.015),
    error_rate("errors +0.5 pt (= margin)", 0.015, confidence=0.9),
    error_rate("errors +0.5 pt (= margin)", 0.015, confidence=0.99),
    error_rate("errors +1.5 pt (harmful)", 0.025),
    Scenario("rare errors A/A (0.1%, margin 0.2 pt)", 0.001, 0.001, 0.002),
    Scenario("rare errors +0.2 pt (= margin)", 0.003, 0.001, 0.002),
    Scenario("rare errors +0.5 pt (harmful)", 0.006, 0.001, 0.002),
    Scenario("rare errors A/A, low traffic", 0.001, 0.001, 0.002, **LOW),  # type: ignore[arg-type]
    Scenario("rare errors +0.5 pt, low traffic", 0.006, 0.001, 0.002, **LOW),  # type: ignore[arg-type]
    Scenario("accuracy A/A, canary", 0.9, 0.9, 0.01, higher_is_better=True),
    Scenario("accuracy -1 pt (= margin), canary", 0.89, 0.9, 0.01, higher_is_better=True),
    Scenario("accuracy -3 pt, canary", 0.87, 0.9, 0.01, higher_is_better=True),
    Scenario("shadow accuracy A/A, paired", 0.9, 0.9, 0.01, paired=True, traffic=(20, 200)),
    Scenario("shadow accuracy -1 pt (= margin), paired", 0.89, 0.9, 0.01, paired=True),
    Scenario("shadow accuracy -3 pt, paired", 0.87, 0.9, 0.01, paired=True, traffic=(20, 200)),
)


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| scenario | looks | requests per look | confidence | false rollback | false promotion "
        "| first decision Fail | Pass | undecided | candidate samples at decision |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        s = o.scenario
        undecided = o.rollouts - o.first_fail - o.first_pass
        samples = "-" if math.isnan(o.mean_samples) else f"{o.mean_samples:,.0f}"
        lines.append(
            f"| {s.name} | {s.looks} | {s.traffic[0]}-{s.traffic[1]} | {s.confidence:g} "
            f"| {_rate(o.ever_fail, o) if s.harmless else '-'} "
            f"| {_rate(o.ever_pass, o) if s.harmful else '-'} "
            f"| {_rate(o.first_fail, o)} | {_rate(o.first_pass, o)} | {_rate(undecided, o)} "
            f"| {samples} |"
        )
    return "\n".join(lines)


def _rate(k: int, o: Outcome) -> str:
    return f"{k / o.rollouts:.1%}"


if __name__ == "__main__":
    sys.stdout.write(table([simulate(s, seed=i) for i, s in enumerate(SCENARIOS)]) + "\n")

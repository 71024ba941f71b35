"""False-rollback and false-promotion rates of the sequential test, by simulation.

Every scenario of ``support.sequential_sim`` is run with 1,000 seeded rollouts, each judged
at every interval. A rate is asserted through its exact (Clopper-Pearson) 99.9% bound, so an
assertion holds because the simulation *shows* it, not because a seed happened to land well:

- a candidate no worse than the margin must be failed (rolled back) at some look in at most
  1 - confidence of the rollouts;
- a candidate worse by the margin or more must be passed at some look at most as often;
- power (a decision, and the right one, within the rollout) must stay where it is now, so
  that a change making the test blunter shows up here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from serinus_operator.analysis.sequential import Counts, Paired, compare_paired, compare_rates
from serinus_operator.analysis.verdict import Verdict
from support.sequential_sim import (
    SCENARIOS,
    Outcome,
    Scenario,
    counts_of,
    settings_of,
    simulate,
    verdicts_of,
)

pytestmark = pytest.mark.unit

ROLLOUTS = 1000  # 4,000 at confidence 0.99, to resolve a rate below 1%
RISK = 0.001  # of a wrong assertion about a rate, per bound

#: Scenario name -> (verdict the rollout should reach first, lower bound of how often).
POWER = {
    "errors A/A": ("Pass", 0.8),
    "errors A/A, shadow": ("Pass", 0.95),
    "errors +0.2 pt (harmless)": ("Pass", 0.2),
    "errors +1.5 pt (harmful)": ("Fail", 0.97),
    "rare errors A/A (0.1%, margin 0.2 pt)": ("Pass", 0.8),
    "rare errors +0.5 pt (harmful)": ("Fail", 0.9),
    "accuracy A/A, canary": ("Pass", 0.4),
    "accuracy -3 pt, canary": ("Fail", 0.97),
    "shadow accuracy A/A, paired": ("Pass", 0.35),
    "shadow accuracy -3 pt, paired": ("Fail", 0.97),
}


def _rollouts(s: Scenario) -> int:
    return ROLLOUTS if s.confidence <= 0.95 else 4 * ROLLOUTS


def _upper(k: int, n: int) -> float:
    return 1.0 if k == n else float(stats.beta.ppf(1 - RISK, k + 1, n - k))


def _lower(k: int, n: int) -> float:
    return 0.0 if k == 0 else float(stats.beta.ppf(RISK, k, n - k + 1))


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[str, float], Outcome]:
    runs = [dataclasses.replace(s, rollouts=_rollouts(s)) for s in SCENARIOS]
    return {(s.name, s.confidence): simulate(s, seed=i) for i, s in enumerate(runs)}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.name} @{s.confidence:g}")
def test_false_decisions_stay_within_one_minus_confidence(
    scenario: Scenario, outcomes: dict[tuple[str, float], Outcome]
) -> None:
    outcome = outcomes[scenario.name, scenario.confidence]
    alpha, n = 1 - scenario.confidence, outcome.rollouts
    if scenario.harmless:
        assert _upper(outcome.ever_fail, n) <= alpha, f"false rollbacks {outcome}"
    if scenario.harmful:
        assert _upper(outcome.ever_pass, n) <= alpha, f"false promotions {outcome}"


@pytest.mark.parametrize(("name", "expected"), POWER.items())
def test_power(
    name: str, expected: tuple[str, float], outcomes: dict[tuple[str, float], Outcome]
) -> None:
    outcome = outcomes[name, 0.95]
    verdict, at_least = expected
    right = outcome.first_pass if verdict == "Pass" else outcome.first_fail
    assert _lower(right, ROLLOUTS) >= at_least, outcome


def test_too_little_traffic_stays_inconclusive(
    outcomes: dict[tuple[str, float], Outcome],
) -> None:
    """1,500 candidate requests cannot show a 0.1% error rate within 0.2 points: no guess."""
    outcome = outcomes["rare errors A/A, low traffic", 0.95]
    assert outcome.ever_pass == outcome.ever_fail == 0


CROSS_CHECKED = (
    "errors A/A, shadow",
    "errors +1.5 pt (harmful)",
    "accuracy -3 pt, canary",
    "shadow accuracy A/A, paired",
    "shadow accuracy -3 pt, paired",
)


@pytest.mark.parametrize("name", CROSS_CHECKED)
def test_the_simulator_decides_as_the_operator_would(name: str) -> None:
    """The simulator uses the decision's building blocks for speed; the full functions,
    validation and all, must agree with it at every look."""
    scenario = dataclasses.replace(next(s for s in SCENARIOS if s.name == name), rollouts=5)
    paired = scenario.paired
    counts = counts_of(scenario, seed=7)
    fast = verdicts_of(scenario, counts)
    settings = settings_of(scenario)
    code = {Verdict.FAIL: 1, Verdict.PASS: -1, Verdict.INCONCLUSIVE: 0}
    for (r, k), expected in np.ndenumerate(fast):
        row = [int(x) for x in counts[r, k]]
        if paired:
            result = compare_paired(Paired(*row[1:]), settings=settings)
        else:
            candidate, baseline = Counts(row[1], row[0]), Counts(row[3], row[2])
            result = compare_rates(
                candidate, baseline, settings=settings, higher_is_better=scenario.higher_is_better
            )
        assert code[result.verdict] == expected, (r, k, result.message)
    assert (fast != 0).any(), "a cross-check where nothing is decided checks little"

"""Regressions found by review after the first round of engine fixes, one test each."""

from __future__ import annotations

import pytest

from serinus_operator.rollout.observed import RevisionObservation
from serinus_operator.rollout.status import Outcome, PauseReason, Phase
from unit.operator.kit import ANALYSIS, SHADOW, M, S, Sim, spec_dict

pytestmark = pytest.mark.unit


def test_a_rollback_for_staying_below_full_size_does_not_crash_the_next_step() -> None:
    """Below full size, then unready, then back below full size after the deadline: the
    rollback clears the candidate and the same decision must not touch it any more."""
    sim = Sim.started(spec_dict("v1", strategy=SHADOW))
    revision = sim.new_version("v2")
    sim.step()
    sim.step(S)
    sim.pin(revision, RevisionObservation(2, 1, True))
    sim.step(S)
    sim.step(9 * M)
    sim.pin(revision, RevisionObservation(2, 0, False))
    sim.step(S)
    sim.pin(revision, RevisionObservation(2, 1, True))
    sim.step(2 * M)
    assert sim.status.phase is Phase.ROLLED_BACK
    assert sim.status.candidate is None
    assert sim.status.traffic.stable == 100


def test_a_first_revision_that_is_ready_is_not_replaced_outright() -> None:
    """Its readiness had not been recorded yet (no decision ran since it came up): a new
    revision must still be rolled out as a canary, not swapped in unready."""
    sim = Sim(spec_dict("v1"))
    sim.step()
    assert sim.world[sim.status.stable.ref.revision].ready
    sim.new_version("v2")
    sim.step(M)
    assert sim.status.stable is not None and sim.status.stable.ref.version == "v1"
    assert sim.status.candidate is not None and sim.status.candidate.ref.version == "v2"
    assert [h.outcome for h in sim.status.history] == [Outcome.PROMOTED]
    assert sim.status.traffic.stable == 100


@pytest.mark.parametrize("how", ["manual", "inconclusive"])
def test_editing_the_steps_keeps_a_pause_someone_asked_for(how: str) -> None:
    from serinus_operator.analysis.verdict import Verdict

    steps = [{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"setWeight": 50}, {"pause": {}}]
    analysis = ANALYSIS | {"noData": "Pass", "minRequests": 0}
    sim = Sim.started(
        spec_dict("v1", analysis=analysis, strategy={"type": "Canary", "canary": {"steps": steps}})
    )
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    if how == "manual":
        sim.step(S, action="pause")
        reason = PauseReason.MANUAL
    else:
        for _ in range(3):
            sim.step(30 * S, verdict=Verdict.INCONCLUSIVE)
        reason = PauseReason.INCONCLUSIVE
    assert sim.status.phase is Phase.PAUSED
    sim.raw["strategy"]["canary"]["steps"].append({"setWeight": 80})
    sim.generation += 1
    sim.step(S)
    assert sim.status.phase is Phase.PAUSED
    assert sim.status.candidate is not None and sim.status.candidate.pause is not None
    assert sim.status.candidate.pause.reason is reason


def _switched_blue_green() -> Sim:
    """A blue-green rollout of v2 driven past its switch, into post-promotion."""
    from serinus_operator.analysis.verdict import Verdict
    from serinus_operator.rollout.status import Stage
    from unit.operator.kit import BLUE_GREEN

    sim = Sim.started(spec_dict("v1", strategy=BLUE_GREEN, analysis=ANALYSIS | {"minRequests": 0}))
    sim.new_version("v2")
    sim.step()
    sim.step(S)
    for _ in range(12):
        sim.step(30 * S, verdict=Verdict.PASS)
        if sim.status.candidate is not None and sim.status.candidate.stage == Stage.POST_PROMOTION:
            return sim
    raise AssertionError("the blue-green rollout never reached post-promotion")


def test_an_invalid_spec_after_a_switch_keeps_the_switch() -> None:
    """Post-promotion the candidate serves everything and the old stable may be cold: an
    invalid spec must not send all traffic back to it."""
    from serinus_operator import api
    from serinus_operator.rollout import invalid
    from serinus_operator.rollout.actions import SetTraffic

    sim = _switched_blue_green()
    assert sim.status.traffic.candidate == 100
    error = api.SpecError("spec.analysis.metrics[0].max", "expected a number")
    decision = invalid(sim.status, error, 9, sim.now + S)
    (traffic,) = [a for a in decision.actions if isinstance(a, SetTraffic)]
    assert traffic.candidate_weight == 100 and traffic.mirror_percent == 0
    assert decision.status.traffic.candidate == 100


def test_a_huge_malformed_annotation_is_stored_bounded() -> None:
    from serinus_operator import api
    from serinus_operator.rollout import decide
    from serinus_operator.rollout.actions import Notify
    from serinus_operator.rollout.observed import Observed
    from unit.operator.kit import manifest

    obj = manifest(spec_dict("v1"))
    obj["metadata"]["annotations"] = {"serinus.dev/action": "x" * 100_000}
    md = api.parse(obj)
    assert md.invalid_request is not None
    sim = Sim.started(spec_dict("v1"))
    observed = Observed(sim.generation, dict(sim.world), None, md.invalid_request)
    decision = decide(sim.spec, sim.status, observed, [], sim.now + S)
    assert max(len(h) for h in decision.status.handled) <= 100
    assert all(len(n.message) <= 300 for n in decision.actions if isinstance(n, Notify))
    again = decide(sim.spec, decision.status, observed, [], sim.now + 2 * S)
    assert not [n for n in again.actions if isinstance(n, Notify)]  # handled once


def test_a_candidate_flapping_faster_than_the_interval_is_never_promoted_unmeasured() -> None:
    """Each recovery restarts the measurement window, so a candidate never ready for a whole
    interval is never measured; the stage timer must not promote it on no evidence."""
    from serinus_operator.analysis.verdict import Verdict

    analysis = ANALYSIS | {"interval": "1m", "noData": "Fail", "failureLimit": 0}
    sim = Sim.started(spec_dict("v1", strategy=SHADOW, analysis=analysis))
    revision = sim.new_version("v2")
    sim.step()
    sim.step(S)
    for _ in range(16):  # ~14 minutes: past the 10 m shadow
        sim.pin(revision, RevisionObservation(2, 2, True))
        sim.step(41 * S)
        sim.pin(revision, RevisionObservation(2, 0, False))
        sim.step(11 * S)
    assert sim.status.candidate is not None, "promoted with no measurement"
    assert [h.outcome for h in sim.status.history] == [Outcome.PROMOTED]  # only v1's
    # steady again: the first measurement that counts lets it finish
    sim.pin(revision, RevisionObservation(2, 2, True))
    sim.step(S)
    for _ in range(4):
        if sim.status.candidate is None:
            break
        sim.step(M, verdict=Verdict.PASS)
    assert sim.status.candidate is None
    assert sim.status.stable is not None and sim.status.stable.ref.version == "v2"


def test_time_spent_degraded_does_not_count_toward_the_stage() -> None:
    """Nothing is analysed while the spec is invalid: fixing it 30 minutes later must not
    finish the stage at once on the old clock."""
    from serinus_operator import api
    from serinus_operator.analysis.verdict import Verdict
    from serinus_operator.rollout import invalid

    sim = _switched_blue_green()
    sim.step(30 * S, verdict=Verdict.PASS)
    error = api.SpecError("spec.analysis.metrics[0].max", "expected a number")
    sim.status = invalid(sim.status, error, 9, sim.now + S).status
    sim.now += 30 * M
    sim.step()
    assert sim.status.phase is Phase.PROMOTING, "the post-promotion stage restarts its clock"
    assert sim.status.candidate is not None

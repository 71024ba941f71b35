"""Evidence: exposure grows only on a passing measurement taken after it last grew.

Exposure is the candidate's live weight, its mirrored share, or a blue-green switch. With
analysis configured, every step that raises it, and every promotion, needs *evidence*: the
latest counted measurement passed (every gating check), and it was taken after the
exposure last grew, with its whole window (the ``interval`` before it) after that moment, so
that it saw only traffic at the current exposure; :func:`record_growth` restarts the
measurement window so that the next measurement is exactly that. An Inconclusive or failed latest
measurement, or none yet, holds the current exposure (never lowering safety, never raising
exposure) until ``inconclusiveLimit`` pauses the rollout or ``failureLimit`` rolls it back.

Two things stand in for a measurement, both explicit:

- the *first* exposure of a candidate that has never had traffic: with no traffic there is
  nothing to measure (a canary's first ``setWeight``, a shadow's mirror). Its PreRollout
  webhooks, if any, are its gate;
- a person's ``promote``, which approves the next step once.

Worked example, steps ``[setWeight 10, pause 1m, setWeight 50, pause 1m]``, interval 30s,
candidate ready at t0:

    t0     weight 0 -> 10 (first exposure, no evidence needed); exposed_at = t0
    t30s   measurement (window t0..t30s) Pass; passed_at = t30s
    t60s   pause done; setWeight 50: passed_at > exposed_at -> 10 -> 50; exposed_at = t60s
    t90s   measurement Inconclusive (Prometheus down); passed_at = None
    t120s  pause done; end of steps, promotion held: no pass since t60s
    t150s  measurement Pass; passed_at = t150s > t60s -> promoted
"""

from __future__ import annotations

from dataclasses import replace

from serinus_operator.rollout.status import RolloutStatus, Traffic
from serinus_operator.rollout.work import Work


def _analysed(w: Work) -> bool:
    a = w.spec.analysis
    return a is not None and bool(a.metrics)


def _passed_since_growth(w: Work) -> bool:
    """The latest measurement passed, and its whole window (the ``interval`` before it, as
    every built-in query reads) lies after exposure last grew."""
    c, a = w.candidate, w.spec.analysis
    assert c is not None
    assert a is not None
    if c.passed_at is None:
        return False
    return c.exposed_at is None or c.passed_at >= c.exposed_at + a.interval


def may_grow(w: Work) -> bool:
    """Whether exposure may be raised now (a canary weight step)."""
    c = w.candidate
    if c is None or not _analysed(w) or c.exposed_at is None:
        return True
    approved = c.approved_at is not None and c.approved_at > c.exposed_at
    return approved or _passed_since_growth(w)


def proven(w: Work) -> bool:
    """Whether the candidate may be promoted or switched to: a pass at today's exposure."""
    if w.candidate is None or not _analysed(w):
        return True
    return _passed_since_growth(w)


def grew(before: RolloutStatus, after: RolloutStatus) -> bool:
    """Whether this decision exposed the candidate more. A different candidate (a new
    rollout, a retry, the spec going back to a superseded one) starts from nothing, even
    if the traffic numbers it takes over are the same as its predecessor's."""
    b, a = before.candidate, after.candidate
    same = (
        b is not None
        and a is not None
        and (b.ref.revision, b.started_at)
        == (
            a.ref.revision,
            a.started_at,
        )
    )
    old = before.traffic if same else Traffic()
    new = after.traffic
    return new.candidate > old.candidate or new.mirror > old.mirror


def record_growth(w: Work) -> None:
    """Exposure grew now: evidence must be newer, and so must the measurement window."""
    if w.candidate is None:
        return
    w.set_candidate(exposed_at=w.now)
    a = w.status.analysis
    if a is not None:
        w.set(analysis=replace(a, last_measured_at=w.now))

"""Bounded, fair reconcile passes (issue 19): the pure decisions of scheduling.py, then the
async shell (passes.py) with real tasks."""

from __future__ import annotations

import asyncio
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator.passes import PassGate
from serinus_operator.scheduling import Key, Scheduler, Urgency, phase, resync_delay
from serinus_operator.telemetry import Telemetry

pytestmark = pytest.mark.unit

DUE, RESYNC = Urgency.DUE, Urgency.RESYNC


def k(name: str) -> Key:
    return ("ml", name)


def names(entries: list) -> list[str]:  # type: ignore[type-arg]
    return [e.key[1] for e in entries]


# ------------------------------------------------------------------ order


@pytest.mark.parametrize(
    ("requests", "limit", "first"),
    [
        # (name, urgency) in arrival order -> the names granted first, in order
        ([("a", RESYNC), ("b", RESYNC), ("c", DUE)], 1, ["c"]),
        ([("a", RESYNC), ("b", DUE), ("c", DUE)], 2, ["b", "c"]),
        ([("a", DUE), ("b", DUE), ("c", DUE)], 2, ["a", "b"]),  # first come, first served
        ([("a", RESYNC), ("b", RESYNC)], 5, ["a", "b"]),  # idle ones run when slots are free
        ([("a", RESYNC), ("a", DUE), ("b", DUE)], 1, ["a"]),  # promoted, keeps its place
        ([("a", DUE), ("a", RESYNC), ("b", DUE)], 2, ["a", "b"]),  # never demoted
    ],
)
def test_due_passes_go_before_idle_resyncs(
    requests: list[tuple[str, Urgency]], limit: int, first: list[str]
) -> None:
    s = Scheduler(limit)
    for t, (name, urgency) in enumerate(requests):
        s.request(k(name), urgency, float(t))
    assert names(s.grant()) == first


def test_a_change_promotes_a_queued_resync_ahead_of_idle_ones() -> None:
    s = Scheduler(1)
    s.request(k("busy"), DUE, 0)
    assert names(s.grant()) == ["busy"]
    for name in ("idle1", "idle2", "rollout"):
        s.request(k(name), RESYNC, 1)
    s.promote(k("rollout"))  # its canary's analysis interval ended / someone edited it
    s.finish(k("busy"))
    assert names(s.grant()) == ["rollout"]


def test_promote_leaves_an_object_that_asked_for_nothing_alone() -> None:
    s = Scheduler(4)
    s.promote(k("sleeping"))  # its loop wakes and asks itself; a deleted one never will
    assert s.depth == 0 and s.grant() == []


# ------------------------------------------------------------------ coalescing


def test_a_wake_while_queued_does_not_queue_twice() -> None:
    s = Scheduler(1)
    s.request(k("busy"), DUE, 0)
    s.grant()
    for _ in range(5):
        s.request(k("a"), DUE, 1)
        s.promote(k("a"))
    assert s.depth == 1
    s.finish(k("busy"))
    assert names(s.grant()) == ["a"]
    assert s.finish(k("a")) is None  # nothing owed: the wakes were this one pass
    assert s.grant() == []


def test_a_wake_while_running_owes_exactly_one_more_pass() -> None:
    s = Scheduler(2)
    s.request(k("a"), RESYNC, 0)
    s.grant()
    s.promote(k("a"))
    s.request(k("a"), RESYNC, 1)
    s.promote(k("a"))
    assert s.depth == 0  # not queued while it runs
    assert s.finish(k("a")) == DUE
    assert s.finish(k("a")) is None


def test_a_cancelled_request_leaves_the_queue() -> None:
    s = Scheduler(1)
    s.request(k("a"), DUE, 0)
    s.cancel(k("a"))
    assert s.depth == 0 and s.grant() == []


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one pass"):
        Scheduler(0)


# ------------------------------------------------------------------ properties

_ops = st.lists(
    st.tuples(
        st.sampled_from(["request", "promote", "grant", "finish", "cancel"]),
        st.sampled_from([k(str(i)) for i in range(8)]),
        st.sampled_from([DUE, RESYNC]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 5), ops=_ops)
def test_the_bound_the_order_and_one_entry_per_object_hold_whatever_happens(
    limit: int, ops: list[tuple[str, Key, Urgency]]
) -> None:
    s = Scheduler(limit)
    for t, (op, key, urgency) in enumerate(ops):
        if op == "request":
            s.request(key, urgency, float(t))
        elif op == "promote":
            s.promote(key)
        elif op == "finish":
            s.finish(key)
        elif op == "cancel":
            s.cancel(key)
        else:
            waiting = sorted(s.queued.values(), key=lambda e: e.order)
            started = s.grant()
            # the most urgent, oldest first; a resync only when no due pass waits
            assert started == waiting[: len(started)]
            if any(e.urgency == RESYNC for e in started):
                assert all(e.urgency == RESYNC for e in s.queued.values())
            # work conserving: a free slot is never left idle while something waits
            assert len(s.running) == limit or s.depth == 0
        assert len(s.running) <= limit
        assert not (set(s.queued) & s.running)  # queued once, or running, never both
        assert set(s.again) <= s.running


# ------------------------------------------------------------------ jitter


def test_resyncs_of_a_fleet_are_spread_over_the_period() -> None:
    period, buckets = 30.0, 10
    keys = [("team-" + str(i % 7), f"model-{i}") for i in range(2000)]
    counts = [0] * buckets
    for key in keys:
        delay = resync_delay(key, period, now=1000.0)
        assert 0.1 <= delay < period + 0.1  # a moment too close to now moves a period on
        counts[min(int(delay / period * buckets), buckets - 1)] += 1
    assert min(counts) > 0.7 * len(keys) / buckets  # no wave: every tenth of the period
    assert max(counts) < 1.3 * len(keys) / buckets
    assert statistics.pstdev(counts) < 0.15 * len(keys) / buckets


@given(
    namespace=st.text(min_size=1, max_size=20),
    name=st.text(min_size=1, max_size=40),
    period=st.floats(1, 3600),
    now=st.floats(0, 1e7),
)
def test_each_object_resyncs_at_its_own_stable_moment_every_period(
    namespace: str, name: str, period: float, now: float
) -> None:
    key = (namespace, name)
    assert 0 <= phase(key) < 1 and phase(key) == phase((namespace, name))
    delay = resync_delay(key, period, now, minimum=0.1)
    assert 0.1 <= delay <= period + 0.1
    # the next one falls a whole period later (up to float rounding)
    later = resync_delay(key, period, now + delay + 0.2, minimum=0.1)
    assert later == pytest.approx(period - 0.2, abs=1e-6 * max(1.0, now))


# ------------------------------------------------------------------ the async shell


def test_the_gate_runs_at_most_limit_passes_and_counts_them() -> None:
    async def scenario() -> tuple[int, int, float, float]:
        telemetry = Telemetry()
        gate = PassGate(3, telemetry)
        running = peak = done = 0

        async def one_pass(i: int) -> None:
            nonlocal running, peak, done
            async with gate.slot(k(str(i)), DUE if i % 2 else RESYNC):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.01)
                running -= 1
                done += 1

        await asyncio.gather(*(one_pass(i) for i in range(20)))
        depth = telemetry.registry.get_sample_value("serinus_reconcile_queue_depth") or 0.0
        waits = telemetry.registry.get_sample_value(
            "serinus_reconcile_wait_seconds_count", {"urgency": "due"}
        )
        return peak, done, depth, waits or 0.0

    peak, done, depth, waits = asyncio.run(scenario())
    assert peak == 3 and done == 20
    assert depth == 0 and waits == 10


def test_a_loop_cancelled_while_queued_gives_its_place_up() -> None:
    async def scenario() -> list[str]:
        gate = PassGate(1)
        order: list[str] = []
        release = asyncio.Event()

        async def hold() -> None:
            async with gate.slot(k("holder"), DUE):
                await release.wait()

        async def one(name: str) -> None:
            async with gate.slot(k(name), DUE):
                order.append(name)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        stopped = asyncio.create_task(one("stopped"))
        after = asyncio.create_task(one("after"))
        await asyncio.sleep(0)
        stopped.cancel()  # the daemon is cancelled (object deleted, operator stopping)
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, after)
        assert gate.scheduler.depth == 0 and not gate.scheduler.running
        return order

    assert asyncio.run(scenario()) == ["after"]

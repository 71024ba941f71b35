"""The router ↔ shadow worker protocol, and the comparison's fast path for flat scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_serving.router.compare import _float_gap
from serinus_serving.router.shadow_protocol import (
    COPY,
    DIFFERENCE_BUCKETS,
    SNAPSHOT,
    TARGET,
    FrameError,
    FrameReader,
    ShadowTotals,
    Target,
    decode_copy,
    encode_copy,
    frame,
)
from serinus_serving.router.table import Comparison

pytestmark = pytest.mark.unit

names = st.text(min_size=1, max_size=12)
payloads = st.binary(max_size=300)


@given(
    st.lists(st.tuples(st.sampled_from([COPY, TARGET, SNAPSHOT]), payloads), max_size=8),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_frames_survive_any_chunking(frames: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(frame(kind, payload) for kind, payload in frames)
    reader = FrameReader(max_frame=1 << 20)
    got: list[tuple[bytes, bytes]] = []
    offset, i = 0, 0
    while offset < len(stream):
        size = cuts[i % len(cuts)]
        got += reader.feed(stream[offset : offset + size])
        offset += size
        i += 1
    assert got == frames


def test_an_oversized_or_empty_frame_is_refused() -> None:
    with pytest.raises(FrameError, match="limit 10"):
        FrameReader(max_frame=10).feed(frame(COPY, b"x" * 20))
    with pytest.raises(FrameError):
        FrameReader(max_frame=10).feed(b"\x00\x00\x00\x00")


@given(st.integers(0, 2**32 - 1), names, payloads, payloads)
def test_a_copy_round_trips(generation: int, primary: str, request: bytes, body: bytes) -> None:
    encoded = encode_copy(generation, primary.encode(), request, body)
    [(kind, payload)] = FrameReader(max_frame=1 << 20).feed(encoded)
    assert kind == COPY
    copy = decode_copy(payload)
    assert (copy.generation, copy.primary_revision, copy.request, copy.primary_body) == (
        generation,
        primary,
        request,
        body,
    )


def test_a_truncated_copy_is_refused() -> None:
    payload = encode_copy(1, b"old", b"request", b"body")[5:]
    with pytest.raises(FrameError):
        decode_copy(payload[:12])


def test_a_target_round_trips_and_a_bad_one_is_refused() -> None:
    target = Target(
        generation=3,
        revision="new",
        host="127.0.0.1",
        port=8080,
        timeout_seconds=2.5,
        max_concurrency=7,
        comparison=Comparison(outputs=("label",), abs_tolerance=0.01, rel_tolerance=0.0),
    )
    [(kind, payload)] = FrameReader(max_frame=1 << 20).feed(target.encode())
    assert kind == TARGET and Target.decode(payload) == target
    with pytest.raises(FrameError):
        Target.decode(b'{"generation": 1}')


counts = st.dictionaries(
    st.tuples(names, names, st.sampled_from(["agree", "disagree", "error", "dropped"])),
    st.integers(0, 10**9),
    max_size=6,
)
observations = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 10, allow_nan=False)), max_size=20
)


def totals_of(
    count: dict[tuple[str, str, str], int], seen: list[tuple[str, float]]
) -> ShadowTotals:
    totals = ShadowTotals()
    totals.counts.update(count)
    for primary, value in seen:
        totals.difference[primary, "shadow"].observe(value)
    return totals


@given(counts, observations, st.integers(0, 4096))
def test_totals_round_trip(
    count: dict[tuple[str, str, str], int], seen: list[tuple[str, float]], inflight: int
) -> None:
    totals = totals_of(count, seen)
    totals.inflight = inflight
    [(kind, payload)] = FrameReader(max_frame=1 << 20).feed(totals.encode())
    back = ShadowTotals.decode(payload)
    assert kind == SNAPSHOT
    assert dict(back.counts) == dict(totals.counts) and back.inflight == inflight
    assert {k: (h.counts, h.total) for k, h in back.difference.items()} == {
        k: (h.counts, h.total) for k, h in totals.difference.items()
    }


@given(counts, observations, counts, observations)
def test_adding_totals_adds_every_count_and_bucket(
    c1: dict[tuple[str, str, str], int],
    o1: list[tuple[str, float]],
    c2: dict[tuple[str, str, str], int],
    o2: list[tuple[str, float]],
) -> None:
    merged = ShadowTotals()
    merged.add(totals_of(c1, o1))
    merged.add(totals_of(c2, o2))
    both = totals_of({}, o1 + o2)
    for key in set(c1) | set(c2):
        assert merged.counts[key] == c1.get(key, 0) + c2.get(key, 0)
    for pair, hist in both.difference.items():
        assert merged.difference[pair].counts == hist.counts
        assert merged.difference[pair].total == pytest.approx(hist.total)
    assert all(len(h.counts) == len(DIFFERENCE_BUCKETS) + 1 for h in merged.difference.values())


def test_a_bad_snapshot_is_refused() -> None:
    with pytest.raises(FrameError):
        ShadowTotals.decode(b'{"counts": [["a", "b"]], "difference": [], "inflight": 0}')
    with pytest.raises(FrameError):
        ShadowTotals.decode(b'{"counts": [], "difference": [["a", "b", [1], 0.5]], "inflight": 0}')


scores = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.integers(-(2**40), 2**40)


@given(
    st.lists(st.tuples(scores, scores), max_size=12),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_the_fast_path_judges_flat_scores_as_numpy_does(
    pairs: list[tuple[float, float]], abs_tolerance: float, rel_tolerance: float
) -> None:
    """Nested lists take the numpy path; the same numbers flat take plain Python."""
    rules = Comparison(abs_tolerance=abs_tolerance, rel_tolerance=rel_tolerance)
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    fast = _float_gap(a, b, rules, name="p")
    reference = _float_gap([[x] for x in a], [[y] for y in b], rules, name="p")
    assert fast[1] == reference[1]
    assert fast[0] == reference[0] or (math.isinf(fast[0]) and math.isinf(reference[0]))


def test_an_infinite_difference_survives_a_snapshot() -> None:
    """A NaN output makes the difference infinite; JSON has no infinity (orjson writes
    null), and the router must still read the worker's totals."""
    totals = ShadowTotals()
    totals.difference["a", "b"].observe(math.inf)
    [(_, payload)] = FrameReader(max_frame=1 << 20).feed(totals.encode())
    assert ShadowTotals.decode(payload).difference["a", "b"].total == math.inf


class _Wire:
    """A transport that keeps what is written (the router's end) or drops it (the worker's)."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_router_and_worker_forget_the_same_targets() -> None:
    """Copies of many table generations, old ones again after 16 newer ones: the worker
    always knows the target of every copy it gets, because the router sends a target again
    once the worker has forgotten it."""
    import asyncio

    from serinus_serving.router.shadow_channel import ShadowChannel, _Link
    from serinus_serving.router.shadow_protocol import KEPT_TARGETS
    from serinus_serving.router.shadow_worker import ShadowWorker

    def target(generation: int) -> Target:
        return Target(generation, "new", "127.0.0.1", 9, 1.0, 10_000, Comparison())

    async def play() -> tuple[int, dict[tuple[str, str, str], int]]:
        channel = ShadowChannel()
        link = _Link(channel)
        router_end = _Wire()
        link.transport = router_end  # type: ignore[assignment]
        channel.link, channel.ready = link, True
        worker = ShadowWorker(asyncio.get_running_loop().create_future())
        worker.transport = _Wire()  # type: ignore[assignment]
        order = [*range(1, 41), 1, 2, 3, *range(20, 41), 5, 40, 39]
        for generation in order:
            copy = encode_copy(generation, b"old", b"GET / HTTP/1.1\r\n\r\n", b"{}")
            assert channel.offer(target(generation), copy, primary="old")
        worker.data_received(bytes(router_end.sent))
        assert len(worker.targets) == KEPT_TARGETS
        accepted = worker.totals.inflight
        for task in worker.tasks:
            task.cancel()
        return accepted, dict(worker.totals.counts)

    accepted, counts = asyncio.run(play())
    assert counts == {}  # nothing dropped for an unknown target
    assert accepted == 40 + 3 + 21 + 3


def test_a_busy_worker_queues_a_bounded_backlog_then_stops_reading() -> None:
    import asyncio

    from serinus_serving.router.shadow_worker import BACKLOG, ShadowWorker

    async def play() -> tuple[int, int, bool, dict[tuple[str, str, str], int]]:
        worker = ShadowWorker(asyncio.get_running_loop().create_future())
        wire = _Wire()
        worker.transport = wire  # type: ignore[assignment]
        worker.remember(Target(1, "new", "127.0.0.1", 9, 1.0, 2, Comparison()))
        copies = b"".join(encode_copy(1, b"old", b"x", b"{}") for _ in range(BACKLOG + 44))
        worker.data_received(copies)
        state = (worker.totals.inflight, len(worker.backlog), wire.paused)
        worker.finish()  # the router went away: what never started counts as dropped
        return (*state, dict(worker.totals.counts))

    inflight, waiting, paused, counts = asyncio.run(play())
    assert (inflight, waiting, paused) == (2, BACKLOG + 42, True)
    assert counts == {("old", "new", "dropped"): BACKLOG + 42}

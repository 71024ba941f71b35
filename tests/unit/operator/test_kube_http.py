"""The API client's watch-stream framing (platforms/kube_http.py): events split across
chunks, several in one chunk, blank keep-alive lines, and a line that never ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serinus_operator.platforms import kube_http
from serinus_operator.platforms.kube_http import lines

pytestmark = pytest.mark.unit


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


def _collect(data: bytes, cuts: list[int]) -> list[bytes]:
    async def go() -> list[bytes]:
        return [line async for line in lines(_chunks(data, cuts))]

    return asyncio.run(go())


@given(
    st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip())),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_lines_are_the_events_however_the_stream_is_cut(
    events: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(e + b"\n" + (b"\n" if i % 3 == 0 else b"") for i, e in enumerate(events))
    assert _collect(data, [c for c in cuts if c <= len(data)]) == events


def test_a_line_that_never_ends_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken (or hostile) stream cannot grow the operator without bound."""
    monkeypatch.setattr(kube_http, "MAX_EVENT_BYTES", 1000)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 100

    async def go() -> None:
        async for _ in lines(endless()):
            pass

    with pytest.raises(ValueError, match="over 1000 bytes"):
        asyncio.run(go())

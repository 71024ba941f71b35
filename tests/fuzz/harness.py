"""What the fuzz targets share: an in-memory transport, the loop that drives a protocol,
the fuzzer-chosen splits of an input, and the libFuzzer entry point.

Nothing here imports ``serinus_serving``: each target imports the modules it fuzzes inside
``atheris.instrument_imports`` so that their bytecode reports coverage, and a module
imported earlier would not be instrumented.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

#: Ready callbacks an input may run before its loop counts as spinning (a livelock).
MAX_LOOP_STEPS = 20_000


class FakeTransport(asyncio.Transport):
    """A connection's transport in memory, with the semantics of asyncio's and uvloop's
    socket transports that the protocols rely on: ``close()`` and ``abort()`` call
    ``connection_lost`` on a later loop iteration, writes after ``close()`` are dropped
    (both loops drop them), a write after ``write_eof()`` raises as both loops do, and
    ``pause_reading()`` stops delivery until ``resume_reading()``.

    ``pause_writes``: after every write the buffer counts as full (``pause_writing``),
    and it drains on the next loop iteration (``resume_writing``), as for a slow reader.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: Any, *, pause_writes: bool = False
    ) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.pause_writes = pause_writes
        self.written: list[bytes] = []
        self.dropped: list[bytes] = []  # written after close(): never sent
        self.closed = False
        self.lost = False
        self.eof_written = False
        self.reading = True
        self.writing_paused = False

    # asyncio.WriteTransport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.closed:
            self.dropped.append(bytes(data))
            return
        self.written.append(bytes(data))
        if self.pause_writes and not self.writing_paused:
            self.writing_paused = True
            self.protocol.pause_writing()
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        if self.writing_paused and not self.lost:
            self.writing_paused = False
            self.protocol.resume_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.closed:
            self.eof_written = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self._lose)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    # asyncio.ReadTransport
    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def output(self) -> bytes:
        return b"".join(self.written)


def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop until nothing is ready to run (timers in the future are left alone)."""

    async def step() -> None:
        await asyncio.sleep(0)

    for _ in range(MAX_LOOP_STEPS):
        # BaseEventLoop's queue of ready callbacks: no public way to ask "anything left?".
        if not loop._ready:  # type: ignore[attr-defined]
            return
        loop.run_until_complete(step())
    raise AssertionError(f"the event loop was still busy after {MAX_LOOP_STEPS} steps")


def splits(data: bytes) -> tuple[int, Iterator[bytes]]:
    """The input's option bits and its stream, cut where the fuzzer chose.

    Layout: byte 0, byte 1, ``k`` bytes of chunk lengths (each ``byte + 1``), then the
    stream. Byte 1's low 3 bits are ``k`` (0 to 7); the option bits are byte 0 (bits 1 to
    128) and byte 1's high 5 bits (bits 256 to 4096). The stream is cut into chunks of the
    given lengths, cycling through them until it ends; with ``k = 0`` it is one chunk. So
    ``b"\\x00\\x01\\x00"`` + stream feeds the stream one byte at a time.
    """
    if len(data) < 2:
        return 0, iter(())
    flags, count = data[0] | (data[1] >> 3) << 8, data[1] & 7
    lengths = [b + 1 for b in data[2 : 2 + count]]
    stream = data[2 + count :]

    def chunks() -> Iterator[bytes]:
        if not lengths:
            if stream:
                yield stream
            return
        at, i = 0, 0
        while at < len(stream):
            n = lengths[i % len(lengths)]
            yield stream[at : at + n]
            at, i = at + n, i + 1

    return flags, chunks()


def frame(flags: int, stream: bytes, lengths: tuple[int, ...] = ()) -> bytes:
    """The input that :func:`splits` turns into ``flags`` and ``stream`` cut at ``lengths``."""
    assert flags < 1 << 13 and len(lengths) <= 7 and all(1 <= n <= 256 for n in lengths)
    head = [flags & 255, (flags >> 8) << 3 | len(lengths), *(n - 1 for n in lengths)]
    return bytes(head) + stream


class Problems(logging.Handler):
    """Collects the ERROR log records of the modules under test (a logged traceback is how
    the servers report their own bugs) and the loop's unhandled exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(self.format(record))

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.seen.append(f"{context.get('message')}: {exc!r}")

    def attach(self, loop: asyncio.AbstractEventLoop, *loggers: str) -> None:
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        for name in loggers:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.propagate = False
        loop.set_exception_handler(self.loop_exception)

    def check(self) -> None:
        if self.seen:
            found, self.seen = self.seen, []
            raise AssertionError("logged an error:\n" + "\n".join(found))


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], dict[str, bytes]]) -> None:
    """``python tests/fuzz/TARGET.py [libFuzzer flags] [corpus dirs]`` fuzzes;
    ``python tests/fuzz/TARGET.py --write-seeds DIR`` writes the hand-made seeds into DIR."""
    import atheris

    if sys.argv[1:2] == ["--write-seeds"]:
        from pathlib import Path

        folder = Path(sys.argv[2])
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds().items():
            (folder / name).write_bytes(data)
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""How ``kubectl serinus`` fails: one line on stderr and an exit code, never a traceback.

=====  =======================================================================
code   meaning
=====  =======================================================================
0      done
1      an error: kubeconfig, API server unreachable, 401, 403, 404, ...
2      bad arguments (argparse)
3      the operator answered the action and did not apply it (``Ignored``)
4      the ModelDeployment did not acknowledge the action in time
130    interrupted (Ctrl-C) while waiting for an answer
=====  =======================================================================

``SERINUS_DEBUG=1`` lets an unexpected exception through with its traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Final

EXIT_ERROR: Final = 1
EXIT_IGNORED: Final = 3
EXIT_NOT_ACKNOWLEDGED: Final = 4
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """A failure the user can act on: its message is the one line printed."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, clipped: an error is never a paragraph."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def run(main: Callable[[], Awaitable[int]], *, interrupted: int = EXIT_INTERRUPTED) -> int:
    """Run ``main`` on a fresh event loop; a :class:`CliError` becomes ``error: ...`` on
    stderr and its code, Ctrl-C the ``interrupted`` code, anything else one line too."""
    try:
        return asyncio.run(_call(main))
    except CliError as exc:
        _fail(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return interrupted
    except BrokenPipeError:  # `... -w | head`: the reader left; nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # the promise: never a traceback (unless asked for)
        if os.environ.get("SERINUS_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {one_line(exc)} (SERINUS_DEBUG=1 shows more)")
        return EXIT_ERROR


async def _call(main: Callable[[], Awaitable[int]]) -> int:
    return await main()


def _fail(message: str) -> None:
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)

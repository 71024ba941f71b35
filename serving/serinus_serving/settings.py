"""Settings of one ``serinus serve`` process: the one place they are declared.

Each field carries its type, its default and, in its ``Opt``, why it exists. From that come
its ``serinus serve`` flag, its environment variable, the checks of its values and its row
in docs/serving.md (a unit test keeps the table in step):

- the flag is ``--`` and the field's name with ``-`` for ``_``; ``model_uri`` is
  ``--model``, the ``drift`` section's fields are ``--profile``, ``--drift-*`` and
  ``--feedback-*``;
- the environment variable is ``SERINUS_SERVE_`` and the flag's name upper-cased with
  ``_`` for ``-``: ``--max-batch-size`` is ``SERINUS_SERVE_MAX_BATCH_SIZE``, ``--model`` is
  ``SERINUS_SERVE_MODEL``;
- a flag given on the command line wins over the variable, which wins over the default; an
  empty variable counts as unset.

Only the standard library is imported: the ``serinus`` command reads this at start-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from serinus_serving import flags
from serinus_serving.drift.config import DriftSettings
from serinus_serving.options import Opt, Setting, SettingsError, construct, resolve, settings_of

ENV_PREFIX = "SERINUS_SERVE_"
#: The same as loading.DEFAULT_MAX_BYTES (a unit test checks): loading imports httpx.
DEFAULT_MAX_MODEL_BYTES = 4 << 30
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

__all__ = ["DriftSettings", "ServeSettings", "SettingsError", "load_serve_settings"]


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What one ``serinus serve`` process serves, and how."""

    model_uri: Annotated[
        str,
        Opt(
            "the model: a path, file://, pvc://, http(s)://, s3://, gs://, az://, oci:// or "
            "models:/ URI (docs/models.md)",
            flag="--model",
            metavar="URI",
        ),
    ]
    name: Annotated[str, Opt("the model name in URL paths and metric labels", metavar="NAME")]
    version: Annotated[
        str, Opt("the model version, in URL paths, metadata and metric labels", metavar="V")
    ] = "1"
    revision: Annotated[
        str | None,
        Opt(
            "the rollout revision (the operator's hash) on metrics, which tells a canary's "
            "series from the stable's",
            metavar="R",
            shown_default="the version",
        ),
    ] = None
    sha256: Annotated[
        str | None,
        Opt(
            "expected sha256 of the model file; a file with another digest is never loaded",
            metavar="HEX",
        ),
    ] = None
    host: Annotated[str, Opt("listen address; 0.0.0.0 in a container", metavar="ADDR")] = (
        "127.0.0.1"
    )
    port: Annotated[int, Opt("listen port", minimum=0, maximum=65535, metavar="PORT")] = 8080
    max_batch_size: Annotated[
        int,
        Opt(
            "rows per merged runtime call: concurrent requests share one ONNX Runtime call; "
            "0 turns adaptive batching off",
            minimum=0,
        ),
    ] = 32
    max_batch_latency_ms: Annotated[
        float,
        Opt(
            "longest wait for requests still arriving before a batch runs", minimum=0, metavar="MS"
        ),
    ] = 2.0
    max_request_rows: Annotated[
        int,
        Opt(
            "largest batch (first dimension) one request may carry; a larger one gets 400",
            minimum=0,
        ),
    ] = 10_000
    max_body_bytes: Annotated[
        int, Opt("largest request body; larger ones get 413", minimum=0, shown_default="32 MiB")
    ] = 32 << 20
    max_header_bytes: Annotated[
        int,
        Opt(
            "largest request head (request line and headers); larger ones get 431",
            minimum=1024,
            shown_default="64 KiB",
        ),
    ] = 64 << 10
    max_buffered_bytes: Annotated[
        int,
        Opt(
            "request bytes the server holds at once, over all connections (arriving, queued "
            "or being answered); past it, the request holding most of what is still arriving "
            "gets 503. Raised to --max-body-bytes when below it",
            minimum=0,
            shown_default="256 MiB",
        ),
    ] = 256 << 20
    read_timeout: Annotated[
        float,
        Opt(
            "a request that has begun arriving and then sends nothing for this long gets 408 "
            "and its connection is closed",
            minimum=0.1,
            metavar="S",
        ),
    ] = 30.0
    keep_alive_timeout: Annotated[
        float,
        Opt(
            "an idle keep-alive connection (or one that never sends a request) is closed "
            "after this long",
            minimum=0.1,
            metavar="S",
        ),
    ] = 75.0
    model_dir: Annotated[
        Path | None,
        Opt(
            "where downloaded models and profiles are kept (one with the expected sha256 is "
            "not downloaded again)",
            metavar="DIR",
            shown_default="a temporary directory",
        ),
    ] = None
    prefetched: Annotated[
        bool,
        Opt(
            "the model was fetched into --model-dir by `serinus fetch` (a pod's init "
            "container): use that copy, checked again against the digest it recorded, "
            "rather than download it again; with none there, fetch it"
        ),
    ] = False
    max_model_bytes: Annotated[
        int, Opt("largest model file to download or load", minimum=0, shown_default="4 GiB")
    ] = DEFAULT_MAX_MODEL_BYTES
    intra_op_threads: Annotated[
        int,
        Opt(
            "ONNX Runtime threads within an operator: under many small requests, more threads "
            "spin and take the event loop's core; 0 lets ONNX Runtime choose",
            minimum=0,
        ),
    ] = 1
    inter_op_threads: Annotated[
        int, Opt("ONNX Runtime threads across operators; 0 lets ONNX Runtime choose", minimum=0)
    ] = 1
    drain_seconds: Annotated[
        float,
        Opt(
            "on SIGTERM, report unready but keep serving this long, so that endpoints and load "
            "balancers stop sending first",
            minimum=0,
            metavar="S",
        ),
    ] = 5.0
    shutdown_timeout: Annotated[
        float,
        Opt(
            "then wait this long for in-flight requests before cancelling them",
            minimum=0,
            metavar="S",
        ),
    ] = 30.0
    access_log: Annotated[bool, Opt("log every request")] = False
    log_level: Annotated[str, Opt("log level", choices=LOG_LEVELS)] = "info"
    drift: Annotated[DriftSettings, Opt("drift and feedback (docs/drift.md)")] = field(
        default_factory=DriftSettings
    )

    @property
    def effective_revision(self) -> str:
        return self.revision or self.version


@functools.cache
def serve_settings() -> tuple[Setting, ...]:
    """Every setting of ``serinus serve`` (``drift.*`` included), in declaration order."""
    return settings_of(ServeSettings, ENV_PREFIX)


def load_serve_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> ServeSettings:
    """ServeSettings from explicit values over environment variables over the defaults.

    ``overrides`` are keyed by field (``"max_batch_size"``, ``"drift.window"``); a value may
    be typed or a string to parse. ``env`` is ``os.environ`` unless given. Raises
    :class:`SettingsError` naming every bad or missing value and the flag or variable it
    came from. ``drift.min_samples`` is capped at ``drift.window``.
    """
    values = resolve(serve_settings(), overrides or {}, os.environ if env is None else env)
    settings = construct(ServeSettings, values)
    drift = settings.drift
    if drift.min_samples > drift.window:
        drift = dataclasses.replace(drift, min_samples=drift.window)
        settings = dataclasses.replace(settings, drift=drift)
    return settings


def add_serve_flags(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """The ``serinus serve`` flags, one per setting (see the module's docstring)."""
    flags.add_flags(parser, serve_settings(), os.environ if env is None else env)


def settings_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> ServeSettings:
    """The settings of parsed ``serinus serve`` flags and the environment; on a bad value,
    a message on stderr and exit 2 (argparse's usage-error code)."""
    try:
        return load_serve_settings(flags.overrides(args, serve_settings()), env)
    except SettingsError as exc:
        print(f"serinus serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def settings_table() -> str:
    """The Markdown table of docs/serving.md#settings."""
    return flags.markdown_table(serve_settings())

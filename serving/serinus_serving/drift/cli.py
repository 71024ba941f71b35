"""``serinus profile`` and the drift/feedback flags of ``serinus serve``.

Only argparse is imported at module level: the ``serinus`` command builds every
subcommand's parser at start-up, and numpy or ONNX Runtime would slow down all of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serinus_serving.drift.config import (
    DEFAULT_MIN_SAMPLES,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_SECONDS,
    DriftSettings,
)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``serinus profile``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "profile",
        help="build a model's reference profile from its training data, for drift detection",
        description="Run the model on its training data and write a reference profile: "
        "per-feature quantile bins (numeric) or category frequencies (categorical), and the "
        "distribution of each output. `serinus serve --profile` compares live traffic with "
        "it. See docs/drift.md.",
    )
    p.add_argument("--model", required=True, help="ONNX model: path, file:// or http(s)://")
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="training data: .csv (with a header), .parquet (needs pyarrow), .npy or .npz",
    )
    p.add_argument(
        "-o", "--output", required=True, type=Path, help="where to write the profile (JSON)"
    )
    p.add_argument(
        "--features",
        type=_names,
        action="extend",
        help="for a model whose only input is 2-D [N, F]: the F data columns to feed it, in "
        "order (comma-separated; default: all columns of the file)",
    )
    p.add_argument(
        "--categorical",
        type=_names,
        action="extend",
        default=[],
        help="feature names to treat as categories (strings and booleans always are)",
    )
    p.add_argument("--bins", type=_at_least(2), default=10, help="PSI bins (default: 10)")
    p.add_argument(
        "--quantiles", type=_at_least(2), default=100, help="KS grid points (default: 100)"
    )
    p.add_argument(
        "--max-rows",
        type=_at_least(1),
        default=200_000,
        help="profile a random sample of at most this many rows (default: 200000)",
    )
    p.add_argument(
        "--max-categories",
        type=_at_least(1),
        default=64,
        help="most frequent categories kept per feature; the rest count as 'other' (default: 64)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the row sample (default: 0)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build and write the profile; 0 on success, 2 on bad input (with a message)."""
    from serinus_serving.drift.build import BuildError, ProfileOptions, build_profile
    from serinus_serving.drift.profile import dump_profile

    options = ProfileOptions(
        features=args.features,
        categorical=frozenset(args.categorical or ()),
        bins=args.bins,
        quantiles=args.quantiles,
        max_rows=args.max_rows,
        max_categories=args.max_categories,
        seed=args.seed,
    )
    try:
        profile = build_profile(args.model, args.data, options)
        args.output.write_bytes(dump_profile(profile))
    except BuildError as exc:
        print(f"serinus profile: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"serinus profile: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    kinds = [ref.kind for ref in profile.features]
    print(
        f"wrote {args.output}: {profile.rows} rows, {len(kinds)} features "
        f"({kinds.count('categorical')} categorical), {len(profile.outputs)} output columns"
        + (f", target {profile.target.output} ({profile.target.task})" if profile.target else ""),
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------------------- serve flags
def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serinus serve`` flags for drift and feedback."""
    g = parser.add_argument_group("drift and feedback (docs/drift.md)")
    g.add_argument(
        "--profile",
        help="reference profile from `serinus profile` (path, file:// or http(s)://); turns "
        "the serinus_drift_* metrics on",
    )
    g.add_argument(
        "--drift-window",
        type=_at_least(1),
        default=DEFAULT_WINDOW,
        help=f"rows in the sliding window (default: {DEFAULT_WINDOW})",
    )
    g.add_argument(
        "--drift-window-seconds",
        type=float,
        default=DEFAULT_WINDOW_SECONDS,
        help=f"and none older than this (default: {DEFAULT_WINDOW_SECONDS:g})",
    )
    g.add_argument(
        "--drift-min-samples",
        type=_at_least(1),
        default=DEFAULT_MIN_SAMPLES,
        help=f"rows the window needs before drift is exported (default: {DEFAULT_MIN_SAMPLES})",
    )
    g.add_argument(
        "--drift-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"PSI over which a feature counts as drifted (default: {DEFAULT_THRESHOLD:g})",
    )
    g.add_argument(
        "--feedback-max-ids",
        type=_at_least(0),
        default=100_000,
        help="predictions kept by request id for feedback labels (default: 100000; 0: off)",
    )
    g.add_argument(
        "--feedback-ttl-seconds",
        type=float,
        default=3600.0,
        help="labels for older predictions are refused as expired (default: 3600)",
    )
    g.add_argument(
        "--feedback-window",
        type=_at_least(1),
        default=1000,
        help="labelled rows behind live accuracy / error (default: 1000)",
    )


def serve_settings(args: argparse.Namespace) -> DriftSettings:
    """The parsed ``serinus serve`` flags; exits with a usage error when inconsistent."""
    settings = DriftSettings(
        profile=args.profile,
        window=args.drift_window,
        window_seconds=args.drift_window_seconds,
        min_samples=min(args.drift_min_samples, args.drift_window),
        threshold=args.drift_threshold,
        feedback_max_ids=args.feedback_max_ids,
        feedback_ttl_seconds=args.feedback_ttl_seconds,
        feedback_window=args.feedback_window,
    )
    problems = settings.problems()
    if problems:
        print(f"serinus serve: {'; '.join(problems)}", file=sys.stderr)
        raise SystemExit(2)
    return settings

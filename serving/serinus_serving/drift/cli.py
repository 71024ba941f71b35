"""``serinus profile``, and the drift part of ``serinus serve``'s parsed flags.

Only argparse is imported at module level: the ``serinus`` command builds every
subcommand's parser at start-up, and numpy or ONNX Runtime would slow down all of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serinus_serving.drift.config import DriftSettings


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
def serve_settings(args: argparse.Namespace) -> DriftSettings:
    """The drift part of parsed ``serinus serve`` flags and the environment; exits with a
    usage error when a value is bad. The flags themselves are declared on DriftSettings
    and added by serinus_serving.settings.add_serve_flags."""
    from serinus_serving.settings import settings_from_args

    return settings_from_args(args).drift

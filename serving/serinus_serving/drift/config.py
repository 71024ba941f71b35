"""Drift and feedback settings of ``serinus serve`` (no heavy imports: the CLI reads this).

Each field's ``Opt`` is its flag's help and its row in docs/serving.md; see
serinus_serving.options for how flags and environment variables are derived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from serinus_serving.options import Opt

#: Defaults, and why (docs/drift.md): with 10 bins PSI's sampling noise is about 9/N per
#: feature, so 300 rows keep the largest of 20 undrifted features near 0.06, well under 0.2.
DEFAULT_WINDOW = 1000
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MIN_SAMPLES = 300
DEFAULT_THRESHOLD = 0.2


@dataclass(frozen=True, slots=True)
class DriftSettings:
    profile: Annotated[
        str | None,
        Opt(
            "reference profile from `serinus profile` (path, file:// or http(s)://); turns "
            "the `serinus_drift_*` metrics on",
            flag="--profile",
            metavar="URI",
            shown_default="off",
        ),
    ] = None
    window: Annotated[
        int, Opt("the sliding window holds at most this many of the latest rows", minimum=1)
    ] = DEFAULT_WINDOW
    window_seconds: Annotated[
        float, Opt("and none older than this many seconds", above=0, metavar="S")
    ] = DEFAULT_WINDOW_SECONDS
    min_samples: Annotated[
        int,
        Opt(
            "rows a column needs in the window before its statistics are exported (no data, "
            "not 0, below that); capped at the window",
            minimum=1,
        ),
    ] = DEFAULT_MIN_SAMPLES
    threshold: Annotated[
        float,
        Opt(
            "a feature whose PSI is over this counts as drifted "
            "(`serinus_drift_drifted_features_ratio`)",
            above=0,
            metavar="PSI",
        ),
    ] = DEFAULT_THRESHOLD
    feedback_max_ids: Annotated[
        int,
        Opt(
            "predictions remembered by request id for feedback labels; 0 turns feedback off",
            flag="--feedback-max-ids",
            minimum=0,
        ),
    ] = 100_000
    feedback_ttl_seconds: Annotated[
        float,
        Opt(
            "a label for a prediction older than this is refused as expired",
            flag="--feedback-ttl-seconds",
            above=0,
            metavar="S",
        ),
    ] = 3600.0
    feedback_window: Annotated[
        int,
        Opt(
            "live accuracy / error is computed over this many latest labelled rows",
            flag="--feedback-window",
            minimum=1,
        ),
    ] = 1000

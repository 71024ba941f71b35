"""Drift and feedback settings of ``serinus serve`` (no heavy imports: the CLI reads this)."""

from __future__ import annotations

from dataclasses import dataclass

#: Defaults, and why (docs/drift.md): with 10 bins PSI's sampling noise is about 9/N per
#: feature, so 300 rows keep the largest of 20 undrifted features near 0.06, well under 0.2.
DEFAULT_WINDOW = 1000
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MIN_SAMPLES = 300
DEFAULT_THRESHOLD = 0.2


@dataclass(frozen=True, slots=True)
class DriftSettings:
    #: Reference profile: a path, file:// or http(s):// URI; None turns drift metrics off.
    profile: str | None = None
    #: The window holds at most this many of the latest rows ...
    window: int = DEFAULT_WINDOW
    #: ... none older than this many seconds.
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    #: Below this many rows in the window no drift statistic is exported (no data, not 0).
    min_samples: int = DEFAULT_MIN_SAMPLES
    #: A feature whose PSI is over this counts as drifted (serinus_drift_drifted_features_ratio).
    threshold: float = DEFAULT_THRESHOLD
    #: Predictions remembered by request id for feedback; 0 turns feedback off.
    feedback_max_ids: int = 100_000
    #: A label for a prediction older than this is refused as expired.
    feedback_ttl_seconds: float = 3600.0
    #: Live accuracy / error is computed over this many latest labelled rows.
    feedback_window: int = 1000

    def problems(self) -> list[str]:
        """What is inconsistent, as messages naming the flag."""
        out: list[str] = []
        if self.window < 1:
            out.append(f"--drift-window must be >= 1, got {self.window}")
        if self.window_seconds <= 0:
            out.append(f"--drift-window-seconds must be > 0, got {self.window_seconds}")
        if not 1 <= self.min_samples <= self.window:
            out.append(
                f"--drift-min-samples must be between 1 and --drift-window ({self.window}), "
                f"got {self.min_samples}"
            )
        if self.threshold <= 0:
            out.append(f"--drift-threshold must be > 0, got {self.threshold}")
        if self.feedback_max_ids < 0:
            out.append(f"--feedback-max-ids must be >= 0, got {self.feedback_max_ids}")
        if self.feedback_ttl_seconds <= 0:
            out.append(f"--feedback-ttl-seconds must be > 0, got {self.feedback_ttl_seconds}")
        if self.feedback_window < 1:
            out.append(f"--feedback-window must be >= 1, got {self.feedback_window}")
        return out

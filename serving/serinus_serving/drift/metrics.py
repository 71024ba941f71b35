"""Prometheus metrics of drift and feedback, computed when scraped.

Names and labels are part of the analysis contract (the ``drift`` check reads
``serinus_drift_score``); docs/drift.md lists them. A statistic that has too few samples
behind it is left out rather than exported as 0, so that a check sees "no data" and not a
false "no drift".
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serinus_serving.drift.feedback import RESULTS, FeedbackStore
from serinus_serving.drift.monitor import ColumnDrift, DriftMonitor
from serinus_serving.metrics import ModelLabels

_PER_COLUMN = (
    ("psi", "population stability index against the profile (10 quantile bins)"),
    ("ks", "Kolmogorov-Smirnov statistic against the profile's quantiles (numeric)"),
    ("js", "Jensen-Shannon distance (base 2) against the profile (categorical)"),
)


class DriftCollector(Collector):
    def __init__(
        self,
        labels: ModelLabels,
        *,
        monitor: DriftMonitor | None,
        feedback: FeedbackStore | None,
    ) -> None:
        self.base = {"model": labels.model, "revision": labels.revision, "version": labels.version}
        self.monitor = monitor
        self.feedback = feedback

    def _keyed(self, **extra: str) -> tuple[list[str], list[str]]:
        merged = sorted({**self.base, **extra}.items())
        return [k for k, _ in merged], [v for _, v in merged]

    def _gauge(self, name: str, help_text: str, value: float, **extra: str) -> Metric:
        names, values = self._keyed(**extra)
        gauge = GaugeMetricFamily(name, help_text, labels=names)
        gauge.add_metric(values, value)
        return gauge

    def collect(self) -> Iterator[Metric]:
        if self.monitor is not None:
            yield from self._drift(self.monitor)
        if self.feedback is not None:
            yield from self._feedback(self.feedback)

    def _drift(self, monitor: DriftMonitor) -> Iterator[Metric]:
        snapshot = monitor.snapshot()
        yield self._gauge(
            "serinus_drift_window_samples",
            "Rows in the drift window now (bounded by count and by age).",
            snapshot.window_samples,
        )
        yield self._gauge(
            "serinus_drift_profile_info",
            "Constant 1, labelled with the reference profile's model sha256.",
            1,
            profile_sha256=monitor.profile.model_sha256,
        )
        if snapshot.score is not None and snapshot.drifted_ratio is not None:
            yield self._gauge(
                "serinus_drift_score",
                "Overall input drift: the largest feature PSI in the window.",
                snapshot.score,
            )
            yield self._gauge(
                "serinus_drift_drifted_features_ratio",
                "Share of features whose PSI is over the drift threshold.",
                snapshot.drifted_ratio,
            )
        yield from self._columns("feature", "feature", snapshot.features)
        yield from self._columns("prediction", "output", snapshot.outputs)

    def _columns(
        self, prefix: str, label: str, columns: tuple[ColumnDrift, ...]
    ) -> Iterator[Metric]:
        names, _ = self._keyed(**{label: ""})
        for stat, help_text in _PER_COLUMN:
            family = GaugeMetricFamily(
                f"serinus_drift_{prefix}_{stat}", f"Per {label}: {help_text}.", labels=names
            )
            for column in columns:
                value = getattr(column, stat)
                if value is not None:
                    family.add_metric(self._keyed(**{label: column.name})[1], value)
            yield family

    def _feedback(self, feedback: FeedbackStore) -> Iterator[Metric]:
        names, _ = self._keyed(result="")
        labels = CounterMetricFamily(
            "serinus_feedback_labels",
            "Feedback labels received, by result (matched, unknown_id, expired, duplicate).",
            labels=names,
        )
        for result in RESULTS:
            labels.add_metric(self._keyed(result=result)[1], feedback.results[result])
        yield labels
        yield self._gauge(
            "serinus_feedback_tracked_ids",
            "Request ids whose predictions are kept for feedback (bounded).",
            feedback.tracked,
        )
        yield self._gauge(
            "serinus_live_window_samples",
            "Labelled rows behind serinus_live_accuracy / serinus_live_error.",
            feedback.window_samples,
        )
        value = feedback.live_value()
        if value is None:
            return
        if feedback.task == "classification":
            yield self._gauge(
                "serinus_live_accuracy",
                "Share of the latest labelled rows the model predicted right.",
                value,
            )
        else:
            yield self._gauge(
                "serinus_live_error",
                "Mean absolute error over the latest labelled rows.",
                value,
            )

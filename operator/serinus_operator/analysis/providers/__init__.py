"""Metric providers behind one Protocol, made by :func:`make_provider`."""

from serinus_operator.analysis.providers.base import MetricProvider

__all__ = ["MetricProvider"]

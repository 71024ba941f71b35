"""What analysis asks the world: metric providers behind one Protocol, ``base.MetricProvider``
(``prometheus.py``, made by the operator's runner and by ``serinus local``), and
``webhook.py``, which calls the spec's webhooks."""

from serinus_operator.analysis.providers.base import MetricProvider

__all__ = ["MetricProvider"]

"""The API's names and limits, and the one list of built-in checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

GROUP: Final = "serinus.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
ACTION_ANNOTATION: Final = f"{GROUP}/action"
MAX_NAME_LENGTH: Final = 52  # "<name>-<revision>" must fit a 63-character label value
REVISION_LENGTH: Final = 10
#: A webhook answers within this, or it counts as not answering.
MAX_WEBHOOK_TIMEOUT: Final = timedelta(seconds=60)
#: The latency checks' quantiles, by the suffix of their name (``latency-p99``).
LATENCY_QUANTILES: Final = {
    "p50": 0.5,
    "p75": 0.75,
    "p90": 0.9,
    "p95": 0.95,
    "p99": 0.99,
    "p999": 0.999,
}
#: Every check a metric may name without a query: the one list. analysis/templates.py has a
#: query for each, and the CRD's CEL rule is tested against it on a real API server.
#: Built-in checks that can be judged against the stable revision (``compare``): each a
#: rate with a numerator and a denominator per revision (analysis/templates.py ``COUNTS``);
#: a latency check as the share of requests slower than a fixed threshold.
COMPARABLE_CHECKS: Final = (
    "error-rate",
    "client-error-rate",
    "accuracy",
    *(f"latency-{q}" for q in LATENCY_QUANTILES),
)
BUILTIN_CHECKS: Final = (
    "error-rate",
    "client-error-rate",
    "accuracy",
    "drift",
    "agreement",
    *(f"latency-{q}" for q in LATENCY_QUANTILES),
)

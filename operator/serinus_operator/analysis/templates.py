"""Built-in analysis checks: PromQL templates over the metrics ``serinus serve`` and
``serinus router`` export, with the bounds used when a check names none. Pure.

Every query is scoped by ``namespace`` and ``model`` (the ModelDeployment) and the
revision(s) it judges, and yields a single number per evaluation. Rates use the analysis
interval as their window, so a verdict reflects only what happened since the last one.
Ratios read ``(numerator or vector(0)) / denominator``: a series that was never created
(no error yet) counts as zero, while no traffic at all still yields no data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from serinus_operator.api import LATENCY_QUANTILES

#: Variables a query may use, as ``{{ name }}``. ``since``: the time since the analysis
#: run started (a PromQL range), for counts cumulated over the whole run. ``start``: when
#: it started (Unix seconds, for PromQL's ``@``), to read what came before it.
VARIABLES = ("namespace", "name", "stable", "candidate", "interval", "since", "start")
_VAR = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Check:
    query: str
    description: str
    min: float | None = None
    max: float | None = None


_CANDIDATE = 'namespace="{{ namespace }}",model="{{ name }}",revision="{{ candidate }}"'
_PAIR = (
    'namespace="{{ namespace }}",model="{{ name }}",'
    'primary=~"{{ stable }}|{{ candidate }}",shadow=~"{{ stable }}|{{ candidate }}"'
)


def _latency(quantile: float) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) ("
        f"rate(serinus_request_duration_seconds_bucket{{{_CANDIDATE}}}[{{{{ interval }}}}])))"
    )


BUILTIN: Mapping[str, Check] = {
    "error-rate": Check(
        query=(
            f'(sum(rate(serinus_requests_total{{{_CANDIDATE},outcome="server_error"}}'
            "[{{ interval }}])) or vector(0))"
            f" / sum(rate(serinus_requests_total{{{_CANDIDATE}}}[{{{{ interval }}}}]))"
        ),
        description="share of the candidate's requests answered with a 5xx",
        max=0.01,
    ),
    "client-error-rate": Check(
        query=(
            f'(sum(rate(serinus_requests_total{{{_CANDIDATE},outcome="client_error"}}'
            "[{{ interval }}])) or vector(0))"
            f" / sum(rate(serinus_requests_total{{{_CANDIDATE}}}[{{{{ interval }}}}]))"
        ),
        # Clients send some bad requests to any revision; what matters is a candidate that
        # refuses what the stable accepts (a changed input signature): best with compare.
        description="share of the candidate's requests refused with a 4xx",
    ),
    **{
        f"latency-{suffix}": Check(
            _latency(quantile),
            f"{quantile * 100:g}th-percentile request latency of the candidate, seconds",
            # p99 has a default bound; other quantiles are too workload-specific for one.
            max=0.5 if suffix == "p99" else None,
        )
        for suffix, quantile in LATENCY_QUANTILES.items()
    },
    "request-count": Check(
        query=f"sum(increase(serinus_requests_total{{{_CANDIDATE}}}[{{{{ interval }}}}]))",
        description="requests the candidate served in the interval (no verdict on no traffic)",
        min=1,
    ),
    "drift": Check(
        query=f"max(serinus_drift_score{{{_CANDIDATE}}})",
        description="the candidate's overall input drift score against its training profile",
        max=0.2,
    ),
    "accuracy": Check(
        query=(
            f"(sum(rate(serinus_feedback_correct_total{{{_CANDIDATE}}}[{{{{ interval }}}}]))"
            " or vector(0))"
            f" / sum(rate(serinus_feedback_labelled_total{{{_CANDIDATE}}}[{{{{ interval }}}}]))"
        ),
        description="share of the candidate's labelled answers that were right (feedback)",
    ),
    "agreement": Check(
        query=(
            f'(sum(rate(serinus_shadow_requests_total{{{_PAIR},result="agree"}}'
            "[{{ interval }}])) or vector(0))"
            f' / sum(rate(serinus_shadow_requests_total{{{_PAIR},result=~"agree|disagree"}}'
            "[{{ interval }}]))"
        ),
        description="share of compared requests on which candidate and stable agree",
        min=0.97,
    ),
}


@dataclass(frozen=True, slots=True)
class Counted:
    """A rate as its two counts per revision, cumulated since the analysis run started:
    what a compare-to-baseline check judges (analysis/sequential.py). ``{{ REVISION }}``
    becomes ``{{ candidate }}`` or ``{{ stable }}`` (:func:`for_revision`)."""

    events: str
    total: str
    higher_is_better: bool


_REVISION = 'namespace="{{ namespace }}",model="{{ name }}",revision="{{ REVISION }}"'
_SERVER_ERRORS = _REVISION + ',outcome="server_error"'
_CLIENT_ERRORS = _REVISION + ',outcome="client_error"'


def _increase(metric: str, selector: str) -> str:
    return f"sum(increase({metric}{{{selector}}}[{{{{ since }}}}]))"


#: The built-in checks a ``compare`` can judge (api.names.COMPARABLE_CHECKS).
COUNTS: Mapping[str, Counted] = {
    "error-rate": Counted(
        events=f"({_increase('serinus_requests_total', _SERVER_ERRORS)} or vector(0))",
        total=_increase("serinus_requests_total", _REVISION),
        higher_is_better=False,
    ),
    "client-error-rate": Counted(
        events=f"({_increase('serinus_requests_total', _CLIENT_ERRORS)} or vector(0))",
        total=_increase("serinus_requests_total", _REVISION),
        higher_is_better=False,
    ),
    "accuracy": Counted(
        events=f"({_increase('serinus_feedback_correct_total', _REVISION)} or vector(0))",
        total=_increase("serinus_feedback_labelled_total", _REVISION),
        higher_is_better=True,
    ),
}

_DURATIONS = "serinus_request_duration_seconds_bucket"

#: A revision's latency histogram since the analysis run started: one series per ``le``.
LATENCY_BUCKETS = f"sum by (le) (increase({_DURATIONS}{{{_REVISION}}}[{{{{ since }}}}]))"

#: The stable's latency histogram in the hour before the analysis run started. Read at a
#: fixed moment (``@``), it yields the same threshold at every look, which the sequential
#: test needs (analysis/latency.py).
STABLE_LATENCY_BEFORE = (
    f"sum by (le) (increase({_DURATIONS}{{{_REVISION}}}[1h] @ {{{{ start }}}}))".replace(
        "{{ REVISION }}", "{{ stable }}"
    )
)


def higher_is_better(name: str) -> bool:
    """A comparable check's direction: accuracy up; error rate and the share of slow
    requests (``latency-pNN``) down."""
    counted = COUNTS.get(name)
    return counted is not None and counted.higher_is_better


#: A shadow judged on labels against the stable on the same requests: the router's four
#: cells of (primary = stable, shadow = candidate), in sequential.Paired's order.
PAIRED_OUTCOMES = ("both_right", "only_shadow_right", "only_primary_right", "both_wrong")


def paired_accuracy(outcome: str) -> str:
    """One cell's count since the analysis run started (0 while it has never happened)."""
    selector = (
        'namespace="{{ namespace }}",model="{{ name }}",primary="{{ stable }}",'
        f'shadow="{{{{ candidate }}}}",outcome="{outcome}"'
    )
    return f"({_increase('serinus_feedback_paired_total', selector)} or vector(0))"


def for_revision(template: str, role: str) -> str:
    """A :class:`Counted` template for ``role`` (``candidate`` or ``stable``)."""
    return template.replace("{{ REVISION }}", "{{ " + role + " }}")


def render(query: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{{ var }}``; an unknown or missing variable is an error, never left in."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in VARIABLES:
            raise TemplateError(
                f"unknown variable {{{{ {name} }}}} in query; known: {', '.join(VARIABLES)}"
            )
        if name not in variables:
            raise TemplateError(f"variable {{{{ {name} }}}} has no value here")
        value = variables[name]
        if not _SAFE.fullmatch(value):
            raise TemplateError(f"{{{{ {name} }}}} = {value!r} is not a plain label value")
        return value

    return _VAR.sub(substitute, query)


# Kubernetes names and revision hashes: safe inside "..." and inside =~ alternations alike.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def prometheus_duration(seconds: float) -> str:
    """A PromQL range such as ``30s``; at least 1s."""
    whole = max(1, round(seconds))
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"

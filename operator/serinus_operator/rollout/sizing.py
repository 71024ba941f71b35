"""How many pods a revision needs for the traffic it takes: right-sized candidates.

A candidate does not run at full size from the start (a 10% canary of a 10-replica model
would otherwise run 10 pods beside the 10 stable ones): it runs enough pods for the share
of traffic it has or is about to take, and it is scaled up *before* that traffic moves to
it. A promotion or a switch needs it at full size. Worked examples of :func:`share`:

    replicas 10, 10%  -> 1      (1.0)
    replicas 10, 25%  -> 3      (2.5 rounds up: never fewer pods than the traffic needs)
    replicas 2,  10%  -> 1      (0.2 rounds up)
    replicas 4,  0%   -> 1      (a candidate always runs at least one pod)
    replicas 3,  100% -> 3
"""

from __future__ import annotations


def share(replicas: int, percent: int) -> int:
    """Pods for ``percent`` % of the traffic that ``replicas`` pods serve at 100%."""
    return max(1, -(-replicas * percent // 100))

"""RFC 7386 JSON merge patch, written independently of ``serinus_operator.rollout.patch`` so
that tests of the operator's diffs (and the fake API server that applies them) do not check
the package against itself."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as kopf sends status updates: null deletes a key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out

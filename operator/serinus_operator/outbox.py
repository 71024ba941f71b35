"""Events exactly once per transition: written with the status, posted after it, by name.

A transition and its Event must not part ways. Posting an Event before the status write
that records its transition repeats it whenever that write fails (the next pass decides the
same transition again); posting after the write loses it when the operator dies in between.
So a pass writes its new Events into ``status.pendingEvents`` in the same write that records
the transition, each with a name fixed at that moment, then posts them. The next pass posts
whatever is still pending under the same names (the API server answers 409 for one that
exists, which counts as posted) and clears the list. No failure point repeats an Event or
loses one, as long as the Event API itself takes it eventually.

Names are ``<object>.<digest>``: the digest covers the object's uid, the resourceVersion
the write was conditioned on and the pass's time, so two successful writes never share one
(a store without resourceVersions, ``serinus local``'s, still has the time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from serinus_operator.rollout.actions import EventType, Notify, Reason

KEY: Final = "pendingEvents"
LIMIT: Final = 50  # pending Events kept in status; a pass makes a handful at most
MESSAGE_LIMIT: Final = 1024  # what an Event's message holds


@dataclass(frozen=True)
class Outgoing:
    """A Notify with the name it will be posted under."""

    name: str
    notify: Notify

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.notify.reason.value,
            "type": self.notify.type.value,
            "message": self.notify.message[:MESSAGE_LIMIT],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Outgoing | None:
        """None for an entry that is not one of ours (edited by hand): dropped, not fatal."""
        if not isinstance(data, Mapping):
            return None
        try:
            reason = Reason(str(data.get("reason")))
            kind = EventType(str(data.get("type") or EventType.NORMAL))
        except ValueError:
            return None
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return None
        return cls(name, Notify(reason, str(data.get("message") or ""), kind))


def pending(status: Mapping[str, Any]) -> list[Outgoing]:
    found = status.get(KEY)
    if not isinstance(found, list):
        return []
    return [o for o in (Outgoing.from_dict(x) for x in found) if o is not None]


def named(
    object_name: str,
    *,
    uid: str,
    resource_version: str,
    at: datetime,
    notifies: Sequence[Notify],
) -> list[Outgoing]:
    """Fix a name for each new Event of a pass (see the module docstring)."""
    out = []
    for i, n in enumerate(notifies):
        key = f"{uid}\0{resource_version}\0{at.isoformat()}\0{i}\0{n.reason}".encode()
        digest = hashlib.sha256(key).hexdigest()[:16]
        out.append(Outgoing(f"{object_name[:200]}.{digest}", n))
    return out


def with_pending(status: dict[str, Any], outgoing: Sequence[Outgoing]) -> dict[str, Any]:
    """The status to write: the newest ``LIMIT`` Events still to post, or none (null)."""
    status[KEY] = [o.to_dict() for o in outgoing[-LIMIT:]] or None
    return status

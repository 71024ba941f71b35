"""The stored ModelDeployment of ``serinus local``: the API server's part, in one file.

It behaves as the API server does for the loop: ``metadata.generation`` grows when the spec
changes (and only then), ``resourceVersion`` on every write, a status write is a JSON merge
patch refused with :class:`~serinus_operator.platforms.base.Conflict` when stale, and
annotations (the ``serinus.dev/action`` of manual actions) come from the applied manifest.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from serinus_operator.platforms.base import Conflict
from serinus_operator.platforms.local_state import StateDir
from serinus_operator.rollout.patch import apply as merge_patch


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectStore:
    def __init__(self, state: StateDir, stored: Mapping[str, Any] | None = None) -> None:
        self.state = state
        self.object: dict[str, Any] = copy.deepcopy(dict(stored)) if stored else {}

    @property
    def resource_version(self) -> str | None:
        value = (self.object.get("metadata") or {}).get("resourceVersion")
        return None if value is None else str(value)

    def _bump(self) -> None:
        meta = self.object.setdefault("metadata", {})
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        self.state.save_object(self.object)

    def apply(self, manifest: Mapping[str, Any]) -> bool:
        """Store ``manifest``'s spec, labels and annotations as ``kubectl apply`` would;
        returns whether anything changed. Status is kept."""
        meta_in = manifest.get("metadata") or {}
        old_meta = self.object.get("metadata") or {}
        spec = copy.deepcopy(manifest.get("spec"))
        spec_changed = _canonical(spec) != _canonical(self.object.get("spec"))
        generation = int(old_meta.get("generation") or 0)
        if spec_changed or not generation:
            generation += 1
        meta = {
            "name": meta_in.get("name"),
            "namespace": meta_in.get("namespace") or "default",
            "uid": old_meta.get("uid") or f"local-{meta_in.get('name')}",
            "generation": generation,
            "creationTimestamp": old_meta.get("creationTimestamp") or _now(),
            "resourceVersion": old_meta.get("resourceVersion") or "0",
        }
        for key in ("labels", "annotations"):
            if meta_in.get(key):
                meta[key] = copy.deepcopy(meta_in[key])
        new = {
            "apiVersion": manifest.get("apiVersion"),
            "kind": manifest.get("kind"),
            "metadata": meta,
            "spec": spec,
        }
        if "status" in self.object:
            new["status"] = self.object["status"]
        if _canonical(new) == _canonical(self.object):
            return False
        self.object = new
        self._bump()
        return True

    def write_status(
        self, patch: Mapping[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        if resource_version is not None and resource_version != self.resource_version:
            raise Conflict(
                f"stored object is at resourceVersion {self.resource_version}, "
                f"not {resource_version}"
            )
        self.object["status"] = merge_patch(self.object.get("status") or {}, dict(patch))
        self._bump()
        return copy.deepcopy(self.object)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.object)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)

"""What a revision's pods run: the model and how it is served. Their hash is the revision."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from serinus_operator.api.codecs import ENV, QUANTITIES
from serinus_operator.api.errors import SpecError
from serinus_operator.api.names import REVISION_LENGTH
from serinus_operator.api.wire import encode, refines, wire

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URI_PREFIXES: Final = ("http://", "https://", "file://", "/")


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    version: str
    sha256: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@refines(ModelSpec)
def _check_model(model: ModelSpec, _: Mapping[str, Any], path: str) -> ModelSpec:
    if not model.uri.startswith(_URI_PREFIXES):
        raise SpecError(
            f"{path}.uri",
            f"unsupported location {model.uri!r}: use https://, http://, file:// or an "
            "absolute path",
        )
    if model.sha256 is not None and not _SHA256.match(model.sha256):
        raise SpecError(f"{path}.sha256", "expected 64 lowercase hex digits (sha256sum output)")
    if model.profile is not None and not model.profile.startswith(_URI_PREFIXES):
        raise SpecError(f"{path}.profile", "use https://, http://, file:// or an absolute path")
    return model


@dataclass(frozen=True)
class BatchingSpec:
    max_batch_size: int = field(default=0, metadata=wire(minimum=0, maximum=4096))
    max_latency_ms: float = field(default=2.0, metadata=wire(minimum=0, maximum=1000))

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class ResourcesSpec:
    requests: Mapping[str, str] = field(
        default_factory=dict, metadata=wire(codec=QUANTITIES, omit_empty=True)
    )
    limits: Mapping[str, str] = field(
        default_factory=dict, metadata=wire(codec=QUANTITIES, omit_empty=True)
    )

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class ServingSpec:
    """How each revision's pods serve the model; part of the revision hash."""

    image: str | None = None
    resources: ResourcesSpec = field(default_factory=ResourcesSpec, metadata=wire(omit_empty=True))
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    env: Mapping[str, str] = field(default_factory=dict, metadata=wire(codec=ENV, omit_empty=True))

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


def revision_of(model: ModelSpec, serving: ServingSpec) -> str:
    """Short stable hash of what the pods run; a new one starts a rollout."""
    canonical = json.dumps(
        {"model": model.to_dict(), "serving": serving.to_dict()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]

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
#: What ``serinus serve --model`` fetches (docs/models.md); the CRD's pattern says the same.
_URI_PREFIXES: Final = (
    "http://", "https://", "file://", "/", "s3://", "gs://", "az://", "oci://", "pvc://",
    "models:/",
)  # fmt: skip
_SCHEMES: Final = "https://, http://, s3://, gs://, az://, oci://, models:/, pvc://, file://"
#: A Kubernetes object name (RFC 1123 subdomain): Secrets and ServiceAccounts.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CLAIM_NAME = re.compile(r"^pvc://([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)/[^/]")


@dataclass(frozen=True)
class SecretRef:
    name: str


@dataclass(frozen=True)
class CredentialsSpec:
    """Where the pods find the store's credentials: a Secret whose keys are the variables
    the store's SDK reads (``AWS_ACCESS_KEY_ID``, ``MLFLOW_TRACKING_TOKEN``, …), given to
    the server as its environment. The values never reach the spec, status or Events."""

    secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    version: str
    sha256: str | None = None
    profile: str | None = None
    credentials: CredentialsSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@refines(ModelSpec)
def _check_model(model: ModelSpec, _: Mapping[str, Any], path: str) -> ModelSpec:
    if not model.uri.startswith(_URI_PREFIXES):
        raise SpecError(
            f"{path}.uri",
            f"unsupported location {model.uri!r}: use {_SCHEMES} or an absolute path",
        )
    if model.uri.startswith("pvc://") and not _CLAIM_NAME.match(model.uri):
        raise SpecError(f"{path}.uri", "expected pvc://CLAIM/PATH with CLAIM a PVC's name")
    secret = model.credentials.secret_ref if model.credentials else None
    if secret is not None and not _OBJECT_NAME.match(secret.name):
        raise SpecError(f"{path}.credentials.secretRef.name", "expected a Secret's name")
    if model.sha256 is not None and not _SHA256.match(model.sha256):
        raise SpecError(f"{path}.sha256", "expected 64 lowercase hex digits (sha256sum output)")
    if model.profile is not None and not model.profile.startswith(_URI_PREFIXES):
        raise SpecError(f"{path}.profile", f"use {_SCHEMES} or an absolute path")
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
    #: The pods' ServiceAccount, for workload identity (IRSA, GKE, Azure) to the model store.
    service_account_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@refines(ServingSpec)
def _check_serving(serving: ServingSpec, _: Mapping[str, Any], path: str) -> ServingSpec:
    name = serving.service_account_name
    if name is not None and not _OBJECT_NAME.match(name):
        raise SpecError(f"{path}.serviceAccountName", "expected a ServiceAccount's name")
    return serving


def pvc_claim(uri: str) -> str | None:
    """The claim a ``pvc://CLAIM/PATH`` model is on."""
    match = _CLAIM_NAME.match(uri)
    return match[1] if match else None


_MOVING = re.compile(r"^(models:/[^/@]+@.+|oci://[^@]+)$")


def moves(uri: str) -> bool:
    """Whether ``uri`` can name other bytes tomorrow without changing: an MLflow alias or
    an OCI tag (``platforms.pinning`` pins them). A URL can too, but only its content can
    pin it: ``sha256``."""
    return _MOVING.match(uri) is not None


def identity(model: ModelSpec) -> dict[str, Any]:
    """What makes a model the same model. With ``sha256`` the content is pinned, so the
    URI's query — a presigned URL's signature and expiry, an endpoint — is not part of it:
    a re-signed URL to the same bytes is no new revision. (The rest of the URI stays, so
    every revision hash from before this rule, none of which had a query, is unchanged.)"""
    out = model.to_dict()
    if model.sha256 is not None:
        out["uri"] = model.uri.partition("?")[0].partition("#")[0]
    return out


def revision_of(model: ModelSpec, serving: ServingSpec) -> str:
    """Short stable hash of what the pods run; a new one starts a rollout."""
    canonical = json.dumps(
        {"model": identity(model), "serving": serving.to_dict()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]

"""Reading and watching the ModelDeployment YAML that ``serinus local up`` runs.

The file is the one a user applies to a cluster. Two local conveniences: a model or
profile given as a relative path is taken relative to the file (a cluster would refuse it),
and a missing namespace is ``default``, as ``kubectl apply`` makes it. An edit that is not
a readable ModelDeployment is refused with the reason and the last good one kept, as the
API server refuses a bad apply; one that parses but is invalid reaches the engine, which
reports it (phase ``Degraded``), as on a cluster.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serinus_operator.api import GROUP, KIND, VERSION

_SCHEMES = ("http://", "https://", "file://", "/")


class ManifestError(ValueError):
    """The file is not a readable ModelDeployment."""


def _resolve(value: object, base: Path) -> object:
    if isinstance(value, str) and value and not value.startswith(_SCHEMES) and ":" not in value:
        return str((base / value).resolve())
    return value


def parse_manifest(text: str, *, base: Path) -> dict[str, Any]:
    """The first ModelDeployment in ``text`` (YAML), relative model paths resolved."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"not valid YAML: {exc}") from None
    found = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if not found:
        raise ManifestError(f"no document of kind {KIND} (apiVersion {GROUP}/{VERSION})")
    manifest: dict[str, Any] = copy.deepcopy(found[0])
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}":
        raise ManifestError(
            f"apiVersion must be {GROUP}/{VERSION}, got {manifest.get('apiVersion')!r}"
        )
    meta = manifest.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ManifestError("metadata.name is required")
    meta.setdefault("namespace", "default")
    spec = manifest.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("model"), dict):
        model = spec["model"]
        for key in ("uri", "profile"):
            if key in model:
                model[key] = _resolve(model[key], base)
    return manifest


def identity(manifest: Mapping[str, Any]) -> tuple[str, str]:
    meta = manifest.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


@dataclass
class Change:
    manifest: dict[str, Any] | None = None
    error: str | None = None


class ManifestWatcher:
    """Notices edits of the file by content (editors that replace the file included).

    :meth:`load` reads the file the first time; :meth:`poll` compares later contents with
    the bytes last read, so an edit made at any moment after :meth:`load` is seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[str, str] = ("", "")
        self._digest: str | None = None

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self._digest = hashlib.sha256(raw).hexdigest()
        text = raw.decode("utf-8", errors="replace")
        return parse_manifest(text, base=self.path.resolve().parent)

    def load(self) -> dict[str, Any]:
        """The manifest as the file says now; raises :class:`ManifestError`."""
        manifest = self._read()
        self.identity = identity(manifest)
        return manifest

    def poll(self) -> Change | None:
        """None when the file is unchanged; else the new manifest or why it was refused."""
        try:
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None  # mid-replace, or deleted: keep what runs
        if digest == self._digest:
            return None
        try:
            manifest = self._read()
        except ManifestError as exc:
            return Change(error=f"{self.path}: {exc}; keeping the last good version")
        if identity(manifest) != self.identity:
            ns, name = self.identity
            return Change(
                error=f"{self.path}: the ModelDeployment is {ns}/{name}; a new name or "
                "namespace is another ModelDeployment: stop this one and run "
                "`serinus local up` again; keeping the last good version"
            )
        return Change(manifest=manifest)

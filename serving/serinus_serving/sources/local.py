"""A path, ``file://``, or ``pvc://CLAIM/PATH``: used where it is, never copied.

``pvc://`` names a file on a PersistentVolumeClaim. On Kubernetes the operator mounts the
claim (read-only) at ``/mnt/models/CLAIM`` and the server reads it there; outside a pod,
``SERINUS_PVC_ROOT`` (default ``/mnt/models``) says where claims are found.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from serinus_serving.errors import ModelLoadError
from serinus_serving.sources.base import Fetched, Limits, pick_model

PVC_ROOT = "/mnt/models"


def pvc_path(uri: str) -> Path:
    """Where ``pvc://CLAIM/PATH`` is mounted."""
    parsed = urllib.parse.urlparse(uri)
    relative = urllib.parse.unquote(parsed.path).lstrip("/")
    if not parsed.netloc or ".." in Path(relative).parts:
        raise ModelLoadError(f"{uri!r} is not pvc://CLAIM/PATH (a path inside the claim)")
    return Path(os.environ.get("SERINUS_PVC_ROOT") or PVC_ROOT) / parsed.netloc / relative


class LocalSource:
    def fetch(self, uri: str, into: Path, *, limits: Limits) -> Fetched:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme == "file":
            path = Path(urllib.parse.unquote(parsed.path))
        elif parsed.scheme == "pvc":
            path = pvc_path(uri)
        else:
            path = Path(uri)
        root = None
        if path.is_dir():
            root, path = path, pick_model(path, uri=uri)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist or is not a file")
        files = [p for p in root.rglob("*") if p.is_file()] if root else [path]
        size = sum(p.stat().st_size for p in files)
        if size > limits.max_bytes:
            raise ModelLoadError(
                f"model {root or path} is {size} bytes, over the limit of {limits.max_bytes}"
            )
        return Fetched(path, root)

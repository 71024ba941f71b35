"""A moving reference made still: the operator asks which bytes a URI names *now*, so that
every pod of a revision fetches the same ones and a rollout starts only when they change.

``models:/NAME@ALIAS`` becomes ``models:/NAME/VERSION`` and ``oci://…:TAG`` becomes
``oci://…@sha256:DIGEST``; every other URI already names fixed bytes or can only be pinned
by its content (``spec.model.sha256``), and is returned as it is. Credentials come from
``env`` (the keys of the model's Secret and ``spec.serving.env``), never from this
process's own environment, since one operator resolves for every namespace.
"""

from __future__ import annotations

from collections.abc import Mapping

from serinus_serving.sources.base import Limits
from serinus_serving.sources.mlflow import pin_alias
from serinus_serving.sources.oci import pin_tag

#: Nothing is downloaded while pinning: only a manifest or an alias's JSON is read.
_NO_BYTES = 0


def pin(uri: str, *, env: Mapping[str, str], timeout: float = 10.0, attempts: int = 2) -> str:
    """``uri`` with its moving part (an alias, a tag) replaced by what it names now.

    Raises :class:`~serinus_serving.errors.ModelLoadError` with a message fit for a status
    condition (it never holds a credential)."""
    limits = Limits(max_bytes=_NO_BYTES, timeout=timeout, attempts=attempts)
    if uri.startswith("models:/"):
        return pin_alias(uri, limits=limits, env=env)
    if uri.startswith("oci://"):
        return pin_tag(uri, limits=limits, env=env)
    return uri

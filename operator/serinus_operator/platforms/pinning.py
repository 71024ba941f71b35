"""Which bytes a model URI with a moving part names now: aliases and tags, pinned.

``models:/NAME@ALIAS`` and ``oci://…:TAG`` can point at new bytes without the spec
changing. Each pass asks (at most every ``refresh`` seconds per ModelDeployment) what they
name and decides on the pinned URI — ``models:/NAME/VERSION``, ``oci://…@sha256:…`` — so
the revision hash, and with it a rollout, follows the bytes: an alias moved to another
version starts a rollout, asking again and getting the same version does not. The pinned
URI is what the revision's pods fetch (it is in ``status.stable/candidate.template.model``),
so every pod of a revision serves the same bytes however the alias moves later.

The asking itself is injected (``Pin``: ``serinus_serving.sources.pinning.pin``, wired by
the CLI), since the operator does not import the data plane.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from serinus_operator.api import ModelDeployment
from serinus_operator.api.model import moves

log = logging.getLogger("serinus.pinning")

#: Seconds between two asks for the same ModelDeployment's alias or tag.
REFRESH_SECONDS = 60.0


class PinError(Exception):
    """The store could not say what the URI names (its message is fit for a status: it
    never holds a credential)."""


#: ``pin(uri, env)``: the URI with its moving part replaced; blocking (run in a thread);
#: raises :class:`PinError`. ``env`` holds what the pods' environment would: the keys of
#: ``spec.model.credentials.secretRef`` and ``spec.serving.env``.
Pin = Callable[[str, Mapping[str, str]], str]


@dataclass(frozen=True)
class _Pinned:
    uri: str  # as the spec writes it
    env: str  # digest of the environment it was asked with
    pinned: str
    at: float


def _fingerprint(env: Mapping[str, str]) -> str:
    """Changed credentials or tracking server mean asking again; only a digest is kept."""
    digest = hashlib.sha256()
    for key in sorted(env):
        digest.update(f"{key}\0{env[key]}\0".encode())
    return digest.hexdigest()


class ModelPins:
    def __init__(
        self,
        pin: Pin,
        *,
        refresh: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pin = pin
        self.refresh = refresh
        self._clock = clock
        self._last: dict[tuple[str, str], _Pinned] = {}

    async def pinned(
        self, md: ModelDeployment, env: Callable[[], Awaitable[Mapping[str, str]]]
    ) -> ModelDeployment:
        """``md`` with its model's URI pinned (unchanged when nothing in it moves).

        When the store cannot be asked, the last answer for the same URI stands (a registry
        outage must not look like a change); with no answer yet, :class:`PinError`."""
        uri = md.spec.model.uri
        if not moves(uri):
            return md
        key = (md.namespace, md.name)
        last = self._last.get(key)
        now = self._clock()
        if last is None or last.uri != uri or now - last.at >= self.refresh:
            last = await self._ask(key, uri, await env(), now=now, last=last)
        model = replace(md.spec.model, uri=last.pinned)
        return replace(md, spec=replace(md.spec, model=model))

    async def _ask(
        self,
        key: tuple[str, str],
        uri: str,
        env: Mapping[str, str],
        *,
        now: float,
        last: _Pinned | None,
    ) -> _Pinned:
        fingerprint = _fingerprint(env)
        try:
            pinned = await asyncio.to_thread(self._pin, uri, env)
        except PinError as exc:
            if last is None or last.uri != uri or last.env != fingerprint:
                raise
            log.warning("%s/%s: %s; keeping %s", *key, exc, last.pinned)
            pinned = last.pinned
        if last is not None and last.uri == uri and last.pinned != pinned:
            log.info("%s/%s: %s now names %s (was %s)", *key, uri, pinned, last.pinned)
        fresh = _Pinned(uri=uri, env=fingerprint, pinned=pinned, at=now)
        self._last[key] = fresh
        return fresh

    def recheck_in(self, obj: Mapping[str, Any]) -> float | None:
        """Seconds until the stored object's alias or tag is due to be asked again (None:
        its URI does not move), so an idle ModelDeployment still sees an alias move."""
        spec = obj.get("spec")
        model = spec.get("model") if isinstance(spec, Mapping) else None
        uri = model.get("uri") if isinstance(model, Mapping) else None
        return self.refresh if isinstance(uri, str) and moves(uri) else None

    def forget(self, namespace: str, name: str) -> None:
        self._last.pop((namespace, name), None)

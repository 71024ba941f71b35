"""A whole ModelDeployment object: its metadata, its spec and a manual action request."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serinus_operator.api.enums import ManualAction
from serinus_operator.api.errors import SpecError
from serinus_operator.api.names import ACTION_ANNOTATION, MAX_NAME_LENGTH
from serinus_operator.api.parse import parse_spec
from serinus_operator.api.spec import ModelDeploymentSpec
from serinus_operator.api.wire import mapping

#: Service names (RFC 1035 labels) must start with a letter.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ActionRequest:
    """A manual action read from the ``serinus.dev/action`` annotation ("<action>:<nonce>")."""

    action: ManualAction
    nonce: str


@dataclass(frozen=True)
class InvalidRequest:
    """A ``serinus.dev/action`` annotation that does not parse: ignored with a warning.

    It never degrades the object: a typo in a request must not freeze a rollout.
    """

    value: str
    error: str


@dataclass(frozen=True)
class ModelDeployment:
    name: str
    namespace: str
    generation: int
    spec: ModelDeploymentSpec
    request: ActionRequest | None = None
    invalid_request: InvalidRequest | None = None


def parse_action(
    value: object, field: str = f"metadata.annotations[{ACTION_ANNOTATION}]"
) -> ActionRequest:
    """Parse "<action>:<nonce>"; the nonce makes each request apply exactly once."""
    if not isinstance(value, str) or ":" not in value:
        raise SpecError(
            field,
            f"expected '<action>:<nonce>' such as 'promote:1712345678', got {value!r}",
        )
    action, _, nonce = value.partition(":")
    try:
        kind = ManualAction(action.strip())
    except ValueError:
        choices = ", ".join(a.value for a in ManualAction)
        raise SpecError(field, f"unknown action {action!r}: use one of {choices}") from None
    if not nonce.strip():
        raise SpecError(field, "the nonce after ':' is empty; use e.g. the current Unix time")
    return ActionRequest(action=kind, nonce=nonce.strip())


def _text(meta: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = meta.get(key)
    if value is None and default is not None:
        return default
    if value is None:
        raise SpecError(f"metadata.{key}", "required field is missing")
    if not isinstance(value, str) or not value:
        raise SpecError(f"metadata.{key}", f"expected a non-empty string, got {value!r}")
    return value


def parse(obj: Mapping[str, Any]) -> ModelDeployment:
    """Parse a whole ModelDeployment object (as the API server or a YAML file gives it)."""
    meta = mapping(obj.get("metadata", {}), "metadata")
    name = _text(meta, "name")
    if len(name) > MAX_NAME_LENGTH or not _DNS_1035.match(name):
        raise SpecError(
            "metadata.name",
            f"use at most {MAX_NAME_LENGTH} lowercase letters, digits and '-', starting with "
            "a letter, so that '<name>-<revision>' stays a valid Service name",
        )
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise SpecError("metadata.generation", f"expected an integer, got {generation!r}")
    annotations = mapping(meta.get("annotations") or {}, "metadata.annotations")
    raw_action = annotations.get(ACTION_ANNOTATION)
    request: ActionRequest | None = None
    bad: InvalidRequest | None = None
    if raw_action is not None:
        try:
            request = parse_action(raw_action)
        except SpecError as err:
            bad = InvalidRequest(str(raw_action), str(err))
    return ModelDeployment(
        name=name,
        namespace=_text(meta, "namespace", "default"),
        generation=generation,
        spec=parse_spec(obj.get("spec"), "spec"),
        request=request,
        invalid_request=bad,
    )

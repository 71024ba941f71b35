"""Wiring drift and feedback into ``serinus serve``: load and check the profile against the
loaded model, build the monitor and the feedback store, and serve the feedback endpoint."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from serinus_serving.drift.columns import is_categorical_type
from serinus_serving.drift.config import DriftSettings
from serinus_serving.drift.feedback import FeedbackStore, parse_feedback
from serinus_serving.drift.monitor import DEFAULT_FOLD_ROWS, DriftMonitor
from serinus_serving.drift.outcomes import choose_target
from serinus_serving.drift.profile import Profile, ProfileError, Reference, Target, read_profile
from serinus_serving.errors import InferenceError, ModelLoadError, PayloadTooLarge
from serinus_serving.loading import fetch_model
from serinus_serving.runtime.base import ModelRuntime, TensorSpec

log = logging.getLogger(__name__)

MAX_PROFILE_BYTES = 64 << 20
#: Pending request elements (rows x values per row) before a fold: bounds the memory that
#: pending requests hold when rows are large (images), at no cost for tabular rows.
_FOLD_ELEMENTS = 1 << 18


@dataclass(frozen=True, slots=True)
class DriftParts:
    monitor: DriftMonitor | None
    feedback: FeedbackStore | None


def load_profile(uri: str, *, dest_dir: Path | None) -> Profile:
    """Fetch (path, file://, http(s)://) and validate a profile."""
    try:
        fetched = fetch_model(uri, dest_dir=dest_dir, max_bytes=MAX_PROFILE_BYTES)
    except ModelLoadError as exc:
        raise ProfileError(f"cannot fetch the drift profile {uri}: {exc}") from None
    return read_profile(fetched.path, source=uri)


def check_profile(profile: Profile, runtime: ModelRuntime) -> None:
    """Refuse a profile built for another model or naming tensors this model lacks."""
    if runtime.sha256 and profile.model_sha256 != runtime.sha256:
        raise ProfileError(
            f"the drift profile was built for the model with sha256 {profile.model_sha256}, "
            f"this server loaded {runtime.sha256}; rebuild it with `serinus profile`"
        )
    _check_refs(profile.features, runtime.inputs, "features", "input")
    _check_refs(profile.outputs, runtime.outputs, "outputs", "output")
    if profile.target is not None and profile.target.output not in {
        s.name for s in runtime.outputs
    }:
        raise ProfileError(f"target.output {profile.target.output!r} is not an output of the model")


def _check_refs(
    refs: Sequence[Reference], specs: Sequence[TensorSpec], where: str, what: str
) -> None:
    by_name = {spec.name: spec for spec in specs}
    for ref in refs:
        spec = by_name.get(ref.selector.tensor)
        here = f"{where} {ref.name!r}"
        if spec is None:
            raise ProfileError(
                f"{here} reads {what} {ref.selector.tensor!r}, which the model does not have "
                f"(it has {', '.join(by_name) or 'none'})"
            )
        rank = len(spec.shape)
        index, reduce = ref.selector.index, ref.selector.reduce
        if reduce is not None and rank < 3:
            raise ProfileError(f"{here}: 'reduce' needs a tensor of rank 3 or more, not {rank}")
        if index is not None and (rank != 2 or (spec.shape[1] >= 0 and index >= spec.shape[1])):
            raise ProfileError(f"{here}: column {index} does not exist in shape {list(spec.shape)}")
        if index is None and reduce is None and (rank > 2 or (rank == 2 and spec.shape[1] > 1)):
            raise ProfileError(
                f"{here}: {what} {spec.name!r} has shape {list(spec.shape)}; name a column"
            )
        if ref.kind == "numeric" and is_categorical_type(spec.datatype):
            raise ProfileError(f"{here}: a {spec.datatype} {what} cannot be numeric")


def feedback_target(runtime: ModelRuntime, profile: Profile | None) -> Target | None:
    """The output labels are compared with: the profile's, else the first 1-D label output
    (classification), else the first 1-D float output (regression)."""
    if profile is not None and profile.target is not None:
        return profile.target
    chosen = choose_target((s.name, s.datatype, s.shape) for s in runtime.outputs)
    return None if chosen is None else Target(*chosen)


def _fold_rows(runtime: ModelRuntime) -> int:
    per_row = 0
    for spec in runtime.inputs:
        per_row += math.prod(d if d > 0 else 16 for d in spec.shape[1:])
    return max(1, min(DEFAULT_FOLD_ROWS, _FOLD_ELEMENTS // max(1, per_row)))


async def prefetch_profile(
    settings: DriftSettings, *, model_dir: Path | None
) -> Profile | ProfileError | None:
    """The profile (fetched in a worker thread while nothing else needs it), the error that
    will make the server unready once the model is loaded, or None without ``--profile``."""
    if not settings.profile:
        return None
    try:
        return await asyncio.to_thread(load_profile, settings.profile, dest_dir=model_dir)
    except ProfileError as exc:
        return exc


def build_drift(
    settings: DriftSettings, runtime: ModelRuntime, profile: Profile | ProfileError | None
) -> DriftParts:
    """The monitor and the feedback store for a loaded model; fast, no I/O."""
    if isinstance(profile, ProfileError):
        raise profile
    monitor = None
    if profile is not None:
        check_profile(profile, runtime)
        monitor = DriftMonitor(
            profile,
            capacity=settings.window,
            max_age=settings.window_seconds,
            min_samples=settings.min_samples,
            threshold=settings.threshold,
            fold_rows=_fold_rows(runtime),
        )
        log.info(
            "drift: profile %s (%d features, %d outputs, %d training rows); window %d rows / %gs",
            settings.profile,
            len(profile.features),
            len(profile.outputs),
            profile.rows,
            settings.window,
            settings.window_seconds,
        )
    feedback = None
    target = feedback_target(runtime, profile)
    if settings.feedback_max_ids > 0 and target is not None:
        feedback = FeedbackStore(
            output=target.output,
            task=target.task,
            max_ids=settings.feedback_max_ids,
            ttl=settings.feedback_ttl_seconds,
            window=settings.feedback_window,
        )
    return DriftParts(monitor, feedback)


# ---------------------------------------------------------------------------- HTTP
def _json(content: object, status: int) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def add_feedback_routes(
    app: FastAPI,
    *,
    check_target: Callable[[str, str | None], None],
    store: Callable[[], FeedbackStore | None],
    max_body_bytes: int,
) -> None:
    """``POST /v2/models/{m}[/versions/{v}]/feedback``: ground-truth labels by request id."""

    async def handle(request: Request, model: str, version: str | None) -> Response:
        try:
            check_target(model, version)
            feedback = store()
            if feedback is None:
                raise InferenceError(
                    "feedback is off for this model: it has no single label or value output "
                    "to compare labels with, or --feedback-max-ids is 0"
                )
            labels = parse_feedback(await _read_limited(request, max_body_bytes))
            return _json(feedback.apply(labels), 200)
        except InferenceError as exc:
            return _json({"error": exc.message}, exc.status)

    @app.post("/v2/models/{model_name}/feedback", tags=["feedback"])
    async def feedback(request: Request, model_name: str) -> Response:
        """Labels for earlier requests: {"labels": [{"id": "…", "label": …}]}; answers the
        count of labels per result (matched, unknown_id, expired, duplicate)."""
        return await handle(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{model_version}/feedback", tags=["feedback"])
    async def version_feedback(request: Request, model_name: str, model_version: str) -> Response:
        return await handle(request, model_name, model_version)

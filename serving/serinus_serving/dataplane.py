"""The model server's data plane: the one model, its health, metadata and inference.

Nothing here knows HTTP. The endpoints (the raw ASGI inference path in app.py, the FastAPI
routes in routes.py) read and decode a request, call one method here and encode what it
returns or raises (:class:`~serinus_serving.errors.InferenceError` carries the status), as
MLServer's REST and gRPC servers are shells over its ``DataPlane``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from serinus_serving import __version__
from serinus_serving.batching import AdaptiveBatcher, RunFn
from serinus_serving.codec import InferRequest
from serinus_serving.drift.feedback import FeedbackStore
from serinus_serving.drift.metrics import DriftCollector
from serinus_serving.drift.monitor import DriftMonitor
from serinus_serving.drift.profile import Profile, ProfileError
from serinus_serving.drift.serving import build_drift, prefetch_profile
from serinus_serving.errors import ModelNotFound, ModelNotReady
from serinus_serving.fastcodec import FastV2Decoder
from serinus_serving.metrics import ModelLabels, ServingMetrics
from serinus_serving.runtime.base import Array, ModelRuntime, ModelState, TensorSpec
from serinus_serving.settings import ServeSettings

log = logging.getLogger(__name__)

#: Models whose warm-up inference is faster than this run on the event loop: a hop to a
#: worker thread costs more than they do. Slower ones run in a thread so the server stays
#: responsive (health checks, metrics) while they compute.
INLINE_THRESHOLD_SECONDS = 0.002


class DataPlane:
    """One model: load it, say whether it is ready and what it is, run inference on it."""

    def __init__(self, settings: ServeSettings, runtime: ModelRuntime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics = ServingMetrics(
            ModelLabels(settings.name, settings.version, settings.effective_revision)
        )
        self.metrics.ready = lambda: self.ready
        self.draining = False
        self.inline = True
        self.batcher: AdaptiveBatcher | None = None
        self.drift_monitor: DriftMonitor | None = None
        self.feedback: FeedbackStore | None = None
        #: Inputs by name, for decoding requests; filled once the model is loaded.
        self.input_specs: dict[str, TensorSpec] = {}
        #: The direct decoder of the common OIP v2 request, when the model's input allows.
        self.fast_v2: FastV2Decoder | None = None
        self._batches_recorded = False
        #: Requests the server has begun receiving (``http1.HttpServer.arriving``): company
        #: a batch may wait for.
        self.arriving_elsewhere: Callable[[], int] | None = None

    # ----------------------------------------------------------------- health
    @property
    def ready(self) -> bool:
        return self.runtime.ready and not self.draining

    def begin_drain(self) -> None:
        """Stop reporting ready but keep serving, so endpoints drop us before we stop."""
        if not self.draining:
            log.info("draining: readiness is now false; still serving in-flight traffic")
        self.draining = True

    def unready_reason(self) -> str | None:
        """None when ready, else why not (``draining``, or the model's state and reason)."""
        if self.ready:
            return None
        return "draining" if self.draining else f"{self.runtime.state.value}: {self.runtime.reason}"

    def check_target(self, model: str, version: str | None) -> None:
        """Raise ModelNotFound for another model or version, ModelNotReady until loaded."""
        if model != self.settings.name:
            raise ModelNotFound(
                f"unknown model {model!r}; this server serves {self.settings.name!r}"
            )
        if version is not None and version != self.settings.version:
            raise ModelNotFound(
                f"model {model!r} has no version {version!r}; it serves version "
                f"{self.settings.version!r}"
            )
        if not self.runtime.ready:
            raise ModelNotReady(
                f"model {model!r} is {self.runtime.state.value}: {self.runtime.reason}"
            )

    # ----------------------------------------------------------------- metadata
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "serinus", "version": __version__, "extensions": ["binary_tensor_data"]}

    def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        """OIP v2 model metadata; raises as :meth:`check_target` does."""
        self.check_target(model, version)
        runtime = self.runtime
        return {
            "name": self.settings.name,
            "versions": [self.settings.version],
            "platform": runtime.platform,
            "inputs": [spec.as_metadata() for spec in runtime.inputs],
            "outputs": [spec.as_metadata() for spec in runtime.outputs],
            "parameters": {
                "revision": self.settings.effective_revision,
                "sha256": runtime.sha256,
                "state": runtime.state.value,
            },
        }

    def model_state(self) -> dict[str, Any]:
        """What metadata says of a model that is not ready: its state and why."""
        return {
            "name": self.settings.name,
            "versions": [self.settings.version],
            "platform": self.runtime.platform,
            "state": self.runtime.state.value,
            "reason": self.runtime.reason,
        }

    # ----------------------------------------------------------------- lifecycle
    async def load(self) -> None:
        """Fetch the drift profile and the model, then set up drift, feedback and batching."""
        profile = await prefetch_profile(self.settings.drift, model_dir=self.settings.model_dir)
        await self.runtime.load()
        runtime = self.runtime
        if runtime.ready:  # no await since the runtime turned ready: readiness never flips
            self._attach_drift(profile)
        if runtime.ready:
            self.input_specs = {spec.name: spec for spec in runtime.inputs}
            self.fast_v2 = FastV2Decoder.for_model(
                self.input_specs, max_rows=self.settings.max_request_rows
            )
            self.inline = runtime.warmup_seconds < INLINE_THRESHOLD_SECONDS
            self._start_batching()
        # Everything alive now (FastAPI, pydantic, ONNX Runtime bindings: ~65k objects)
        # lives as long as the process. Freezing it keeps full collections, which stop the
        # event loop, from rescanning it (one took ~65 ms on the development machine).
        gc.collect()
        gc.freeze()
        self.metrics.model_loaded(
            seconds=getattr(runtime, "load_seconds", 0.0),
            sha256=runtime.sha256,
            platform=runtime.platform,
        )

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        await self.runtime.unload()

    def _start_batching(self) -> None:
        if self.settings.max_batch_size <= 0:
            return
        if not self.runtime.batchable:
            log.warning(
                "adaptive batching is off: the model's inputs and outputs do not all "
                "have a dynamic first (batch) dimension"
            )
            return
        self.batcher = AdaptiveBatcher(
            self._batch_runner(),
            max_batch_size=self.settings.max_batch_size,
            max_latency=self.settings.max_batch_latency_ms / 1000,
            inline=self.inline,
            observe=self.metrics.observe_inference,
            arriving=self.arriving_elsewhere,
        )

    def _batch_runner(self) -> RunFn:
        """The batcher's runtime call. With drift on and the model run on the event loop, it
        records each merged batch into the drift window once, rather than each request."""
        monitor, predict = self.drift_monitor, self.runtime.predict
        if monitor is None or not self.inline:
            return predict

        def run_and_record(inputs: dict[str, Array]) -> dict[str, Array]:
            outputs = predict(inputs)
            monitor.record(inputs, outputs, next(iter(inputs.values())).shape[0])
            return outputs

        self._batches_recorded = True
        return run_and_record

    def _attach_drift(self, profile: Profile | ProfileError | None) -> None:
        try:
            parts = build_drift(self.settings.drift, self.runtime, profile)
        except ProfileError as exc:
            self.runtime.state = ModelState.FAILED
            self.runtime.reason = f"drift profile: {exc}"
            log.error("model unready: %s", self.runtime.reason)
            return
        self.drift_monitor, self.feedback = parts.monitor, parts.feedback
        if parts.monitor is not None or parts.feedback is not None:
            collector = DriftCollector(
                self.metrics.labels, monitor=parts.monitor, feedback=parts.feedback
            )
            self.metrics.registry.register(collector)

    # ----------------------------------------------------------------- inference
    async def infer(self, request: InferRequest) -> dict[str, Array]:
        """Run a decoded request (after :meth:`check_target`): through the batcher when it
        is on, else inline or in a worker thread; then into the drift window and the
        feedback store. Only ``request.outputs`` are returned when it names some."""
        inputs, rows, names = request.inputs, request.rows, request.outputs
        batcher = self.batcher
        if batcher is not None:
            # Alone, it runs without the batcher's coroutine: one fewer per request.
            outputs = batcher.run_alone(inputs, rows)
            if outputs is None:
                outputs = await batcher.submit(inputs, rows)
            if self.drift_monitor is not None or self.feedback is not None:
                self._observe(inputs, outputs, rows, request.id, record=not self._batches_recorded)
            return outputs if not names else {n: outputs[n] for n in names}
        started = time.perf_counter()
        if self.inline:
            outputs = self.runtime.predict(inputs, names)
        else:
            outputs = await asyncio.to_thread(self.runtime.predict, inputs, names)
        self.metrics.observe_inference(rows, time.perf_counter() - started)
        self._observe(inputs, outputs, rows, request.id)
        return outputs

    def _observe(
        self,
        inputs: dict[str, Array],
        outputs: dict[str, Array],
        rows: int,
        request_id: str | None,
        *,
        record: bool = True,
    ) -> None:
        """Drift window and feedback ids: appends only; the statistics run at scrape time."""
        if record and self.drift_monitor is not None:
            self.drift_monitor.record(inputs, outputs, rows)
        if request_id is not None and self.feedback is not None:
            self.feedback.remember(request_id, outputs)

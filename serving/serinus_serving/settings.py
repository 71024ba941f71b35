"""Settings of one ``serinus serve`` process (flags and environment map onto this)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serinus_serving.drift.config import DriftSettings
from serinus_serving.loading import DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class ServeSettings:
    model_uri: str
    name: str
    version: str = "1"
    #: The rollout revision this process serves (the operator's hash); defaults to version.
    revision: str | None = None
    sha256: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    #: Rows per merged runtime call; 0 turns adaptive batching off.
    max_batch_size: int = 32
    max_batch_latency_ms: float = 2.0
    #: Largest first dimension one request may carry (a larger request runs alone).
    max_request_rows: int = 10_000
    max_body_bytes: int = 32 << 20
    model_dir: Path | None = None
    max_model_bytes: int = DEFAULT_MAX_BYTES
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    #: On SIGTERM: seconds to keep serving while unready, so load balancers stop sending.
    drain_seconds: float = 5.0
    #: Then: seconds to let in-flight requests finish before they are cancelled.
    shutdown_timeout: float = 30.0
    access_log: bool = False
    log_level: str = "info"
    #: Reference profile, drift window and feedback (docs/drift.md).
    drift: DriftSettings = field(default_factory=DriftSettings)

    @property
    def effective_revision(self) -> str:
        return self.revision or self.version

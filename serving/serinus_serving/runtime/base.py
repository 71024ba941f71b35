"""The runtime contract every model backend implements."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]


class ModelState(enum.Enum):
    """Where a model is in its life; only READY takes traffic."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADED = "UNLOADED"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as the protocol's metadata describes it; -1 is a dynamic dim."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class ModelRuntime(ABC):
    """A loaded model. ``load`` is async (it may download and compile); ``predict`` is sync
    so the server can decide per model whether to call it inline or in a worker thread."""

    platform: str = "unknown"

    def __init__(self) -> None:
        self.state = ModelState.LOADING
        self.reason = "loading"
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        #: Seconds the warm-up inference took; small models are then run on the event loop.
        self.warmup_seconds = 0.0
        #: True when requests may be concatenated on the first axis and split back.
        self.batchable = False
        self.sha256 = ""

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @abstractmethod
    async def load(self) -> None:
        """Fetch, verify, load and warm up; set ``state`` to READY or FAILED with a reason."""

    @abstractmethod
    def predict(
        self, inputs: Mapping[str, Array], output_names: Sequence[str] | None = None
    ) -> dict[str, Array]:
        """Run the model; every returned array has the batch on its first axis."""

    async def unload(self) -> None:
        self.state = ModelState.UNLOADED
        self.reason = "unloaded"

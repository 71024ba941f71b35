"""Model runtimes: the part of the server that turns tensors into predictions."""

from serinus_serving.runtime.base import ModelRuntime, ModelState, TensorSpec

__all__ = ["ModelRuntime", "ModelState", "TensorSpec"]

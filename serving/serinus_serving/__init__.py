"""Serinus serving: the ONNX Runtime prediction server and the traffic router."""

__version__ = "0.1.0.dev0"
